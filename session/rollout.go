package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/internal/runstore"
)

// Plan shapes a rollout over many hosts (Ansible's serial/max_fail_percentage).
type Plan struct {
	Forks   int      // hosts in flight at once; default 20
	Serial  []string // batch sizes: "1", "10%", "100%"; the last one repeats; empty = one batch
	MaxFail string   // per batch: "N" hosts or "P%" of the batch may fail; "" = no limit
}

// ParseSerial splits "1,10%,100%".
func ParseSerial(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if _, err := parseCount(f); err != nil {
			return nil, fmt.Errorf("--serial %q: %w", s, err)
		}
		out = append(out, f)
	}
	return out, nil
}

type count struct {
	n       int
	percent bool
}

func parseCount(s string) (count, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 100 {
			return count{}, fmt.Errorf("%q is not a percentage from 0%% to 100%%", s)
		}
		return count{v, true}, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return count{}, fmt.Errorf("%q is not a count or a percentage", s)
	}
	return count{v, false}, nil
}

// Batches splits n hosts into batch sizes.
func (p Plan) Batches(n int) ([]int, error) {
	if len(p.Serial) == 0 {
		return []int{n}, nil
	}
	var out []int
	left, i := n, 0
	for left > 0 {
		c, err := parseCount(p.Serial[min(i, len(p.Serial)-1)])
		if err != nil {
			return nil, err
		}
		size := c.n
		if c.percent {
			size = int(math.Floor(float64(n) * float64(c.n) / 100))
		}
		size = max(1, min(size, left))
		out = append(out, size)
		left -= size
		i++
	}
	return out, nil
}

// maxFail is how many failures a batch of size tolerates; -1 = unlimited.
func (p Plan) maxFail(size int) (int, error) {
	if p.MaxFail == "" {
		return -1, nil
	}
	c, err := parseCount(p.MaxFail)
	if err != nil {
		return 0, fmt.Errorf("--max-fail: %w", err)
	}
	if c.percent {
		return int(math.Floor(float64(size) * float64(c.n) / 100)), nil
	}
	return c.n, nil
}

// Rollout runs Apply over targets batch by batch: the next batch starts only
// when every host of the current batch has ended; when a batch's failures
// exceed MaxFail, the rollout stops and the untouched hosts end Skipped.
// Cancelling ctx stops scheduling new hosts; hosts in flight finish their
// protocol. Results are in the order of targets.
func (s *Session) Rollout(ctx context.Context, p Plan, targets []Target) ([]*Result, error) {
	batches, err := p.Batches(len(targets))
	if err != nil {
		return nil, err
	}
	forks := p.Forks
	if forks <= 0 {
		forks = 20
	}
	results := make([]*Result, len(targets))
	stopped := ""
	idx := 0
	for b, size := range batches {
		limit, err := p.maxFail(size)
		if err != nil {
			return nil, err
		}
		batch := targets[idx : idx+size]
		if stopped == "" && ctx.Err() != nil {
			stopped = "interrupted"
		}
		if stopped != "" {
			for i := range batch {
				results[idx+i] = s.skip(batch[i], stopped)
			}
			idx += size
			continue
		}
		out := fanout.Run(ctx, len(batch), forks, func(ctx context.Context, i int) *Result {
			return s.Apply(ctx, batch[i])
		}, func(i int) *Result {
			return s.skip(batch[i], "interrupted before it started")
		})
		copy(results[idx:], out)
		failed := 0
		for _, r := range results[idx : idx+size] {
			if !r.Outcome.OK() && r.Outcome != Skipped {
				failed++
			}
		}
		idx += size
		if limit >= 0 && failed > limit {
			stopped = fmt.Sprintf("rollout stopped: batch %d of %d had %d failed hosts (--max-fail %s)", b+1, len(batches), failed, p.MaxFail)
		}
	}
	return results, nil
}

func (s *Session) skip(t Target, why string) *Result {
	r := &Result{Host: t.Name, Outcome: Skipped, Error: why, Timings: []Timing{}}
	if s.opts.Events != nil {
		s.opts.Events(Event{Host: t.Name, Phase: "", Status: "end", Msg: string(Skipped), At: s.opts.Now()})
	}
	s.save(r)
	return r
}

// save writes a host's result (and a ref to the snapshot it took) into the
// run folder.
// The files are named after the host through [hostFile], so that no name
// can write outside the folder.
func (s *Session) save(r *Result) {
	if s.opts.RunDir == "" {
		return
	}
	dir := filepath.Join(s.opts.RunDir, "hosts")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	base := HostFile(r.Host)
	write := func(name string, v any) {
		p := filepath.Join(dir, name)
		if filepath.Dir(p) != dir {
			return // cannot happen with hostFile; never write elsewhere
		}
		if b, err := json.MarshalIndent(v, "", "  "); err == nil {
			_ = os.WriteFile(p, b, 0o600)
		}
	}
	write(base+".json", r)
	if r.Snapshot != nil {
		// Stored by content under runs/objects (runstore): a host whose
		// firewall did not change since an earlier run is kept once.
		_, _ = runstore.PutSnapshot(s.opts.RunDir, base, r.Snapshot)
	}
}

// maxHostFile bounds a host's file name so that NAME.snapshot.json stays
// under the file system's 255 bytes.
const maxHostFile = 200

// HostFile returns the host name as one component of a file name. Names
// from an inventory are already safe (inventory.CheckHostName) and are kept
// as they are. Any other name is escaped: every byte but letters, digits,
// '-' and '_' becomes %XX, so the result holds no '/', is never "." or
// "..", and cannot collide with a safe name, which never holds '%'. A name
// still too long keeps its start and gets a hash of the whole.
func HostFile(name string) string {
	if safeComponent(name) {
		return name
	}
	var b strings.Builder
	b.WriteByte('%') // even "" becomes a name
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	out := b.String()
	if len(out) > maxHostFile {
		sum := sha256.Sum256([]byte(name))
		out = out[:maxHostFile-17] + "~" + hex.EncodeToString(sum[:8])
	}
	return out
}

// safeComponent is inventory.CheckHostName's rule, restated here because
// the run store must not trust its callers.
func safeComponent(name string) bool {
	if name == "" || len(name) > maxHostFile || name[0] == '.' || name[0] == '-' || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
