package runstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Run is one run folder.
type Run struct {
	ID    string    `json:"id"`
	Dir   string    `json:"dir"`
	Start time.Time `json:"start"`
	// Hosts: host results; Snapshots: snapshots (refs and old files).
	Hosts     int `json:"hosts"`
	Snapshots int `json:"snapshots"`
	// Bytes: the folder's own files (an old run's snapshots included,
	// objects not).
	Bytes int64 `json:"bytes"`
	// Open says why the run must stay, when it keeps an armed
	// transaction's token ("" when it keeps none).
	Open string `json:"open,omitempty"`
	// Busy: another process holds the run's lock (it is being written).
	Busy bool `json:"busy,omitempty"`
	// Outcomes counts its hosts' outcomes (List with outcomes only).
	Outcomes map[string]int `json:"outcomes,omitempty"`
}

// ListRuns lists the run folders under root, newest first, with no detail
// (ID, Dir, Start): cheap, one directory read. Folders whose name is not a
// run id are not runs, and are never removed.
func ListRuns(root string) ([]Run, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	var out []Run
	mtime := map[string]time.Time{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if t, ok := runTime(e.Name()); ok {
			out = append(out, Run{ID: e.Name(), Dir: filepath.Join(root, e.Name()), Start: t})
			if info, err := e.Info(); err == nil {
				mtime[e.Name()] = info.ModTime()
			}
		}
	}
	// The id has the start to the second, then a random part: runs of one
	// second are ordered by their folder's mtime (set at their start).
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Start.Equal(b.Start) {
			return a.Start.After(b.Start)
		}
		if ma, mb := mtime[a.ID], mtime[b.ID]; !ma.Equal(mb) {
			return ma.After(mb)
		}
		return a.ID > b.ID
	})
	return out, nil
}

// Inspect fills r's detail: sizes and counts, whether it is open (a kept
// token, until its deadline + OpenGrace) and busy (its lock held by
// another process; not checked when busy is false), and, with outcomes,
// its hosts' outcomes.
func Inspect(r *Run, now time.Time, busy, outcomes bool) error {
	r.Hosts, r.Snapshots, r.Bytes, r.Open = 0, 0, 0, ""
	if outcomes {
		r.Outcomes = map[string]int{}
	}
	err := filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			r.Bytes += info.Size()
		}
		if filepath.Base(filepath.Dir(p)) != "hosts" {
			return nil
		}
		name := d.Name()
		switch {
		case strings.HasSuffix(name, txSuffix):
			if why := openWhy(p, now); why != "" && r.Open == "" {
				r.Open = why
			}
		case strings.HasSuffix(name, refSuffix) || strings.HasSuffix(name, oldSuffix):
			r.Snapshots++
		case strings.HasSuffix(name, ".json"):
			r.Hosts++
			if outcomes {
				var res struct {
					Outcome string `json:"outcome"`
				}
				if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &res) == nil && res.Outcome != "" {
					r.Outcomes[res.Outcome]++
				} else {
					r.Outcomes["unreadable"]++
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("runs: %s: %w", r.ID, err)
	}
	if busy {
		r.Busy = isBusy(r.Dir)
	}
	return nil
}

// openWhy says why a kept token keeps its run ("" once it is past use).
func openWhy(txFile string, now time.Time) string {
	host := strings.TrimSuffix(filepath.Base(txFile), txSuffix)
	b, err := os.ReadFile(txFile)
	if err != nil {
		return host + ": transaction token unreadable (" + err.Error() + ")"
	}
	var k struct {
		TxID          string    `json:"tx_id"`
		LocalDeadline time.Time `json:"local_deadline"`
	}
	if err := json.Unmarshal(b, &k); err != nil || k.LocalDeadline.IsZero() {
		return host + ": transaction token without a deadline"
	}
	if now.After(k.LocalDeadline.Add(OpenGrace)) {
		return ""
	}
	return fmt.Sprintf("%s: transaction %s armed until %s", host, k.TxID, k.LocalDeadline.UTC().Format(time.RFC3339))
}

// isBusy: another process holds the run's lock.
func isBusy(runDir string) bool {
	l, err := lockFileAt(filepath.Join(runDir, lockFile), syscall.LOCK_EX|syscall.LOCK_NB, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false // nobody ever held it (a run of an older lifeline)
	}
	if err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	l.Close()
	return false
}

// Policy says which runs a prune removes: a run goes when it is not among
// the newest Keep, or started more than OlderThan ago, unless it is
// protected (Except, open, busy, younger than MinAge).
type Policy struct {
	Keep      int           // the newest Keep runs stay (0: no count limit)
	OlderThan time.Duration // runs that started longer ago go (0: no age limit)
	MinAge    time.Duration // runs that started less than this ago stay
	Except    string        // the run being written: stays
	Now       time.Time
	// Sweep: sweep the objects even when no run was removed (orphans of
	// a crashed writer). Without it a prune that removed nothing reads
	// no refs: the automatic prune is one directory read then.
	Sweep bool
}

// AutoPolicy is the retention applied after every run: DefaultKeep and
// DefaultOlderThan, unless LIFELINE_RUNS_KEEP / LIFELINE_RUNS_OLDER_THAN
// say otherwise ("0": no limit on that side; both 0: no automatic prune),
// sparing runs of the last AutoMinAge and except.
func AutoPolicy(except string, now time.Time) (Policy, error) {
	p := Policy{Keep: DefaultKeep, OlderThan: DefaultOlderThan, MinAge: AutoMinAge, Except: except, Now: now}
	if v := os.Getenv("LIFELINE_RUNS_KEEP"); v != "" {
		n, err := ParseKeep(v)
		if err != nil {
			return p, fmt.Errorf("LIFELINE_RUNS_KEEP: %w", err)
		}
		p.Keep = n
	}
	if v := os.Getenv("LIFELINE_RUNS_OLDER_THAN"); v != "" {
		d, err := ParseAge(v)
		if err != nil {
			return p, fmt.Errorf("LIFELINE_RUNS_OLDER_THAN: %w", err)
		}
		p.OlderThan = d
	}
	return p, nil
}

// ParseKeep parses a run count (0 or more).
func ParseKeep(s string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != strings.TrimSpace(s) {
		return 0, fmt.Errorf("%q is not a count of runs (0 or more)", s)
	}
	return n, nil
}

// ParseAge parses an age: a Go duration (12h, 90m) or days (30d); "0" is
// no limit.
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 && fmt.Sprint(n) == d {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not an age: want days (30d) or a duration (12h, 90m), 0 for no limit", s)
}

// Decision is what a prune does with one run.
type Decision struct {
	Run
	Remove bool   `json:"remove"`
	Why    string `json:"why"`
}

// Select decides, for runs newest first (as ListRuns gives them, with Open
// and Busy filled in for the runs that matter), which a prune removes and
// why. Pure.
func Select(runs []Run, p Policy) []Decision {
	out := make([]Decision, len(runs))
	for i, r := range runs {
		d := Decision{Run: r}
		var why []string
		if p.Keep > 0 && i >= p.Keep {
			why = append(why, fmt.Sprintf("not among the newest %d", p.Keep))
		}
		if p.OlderThan > 0 && p.Now.Sub(r.Start) > p.OlderThan {
			why = append(why, "older than "+FormatAge(p.OlderThan))
		}
		switch {
		case len(why) == 0:
			d.Why = "within the retention"
		case r.ID == p.Except:
			d.Why = "the run being written"
		case r.Open != "":
			d.Why = "open: " + r.Open
		case r.Busy:
			d.Why = "in use by another lifeline process"
		case p.MinAge > 0 && p.Now.Sub(r.Start) < p.MinAge:
			d.Why = "started less than " + FormatAge(p.MinAge) + " ago"
		default:
			d.Remove, d.Why = true, strings.Join(why, ", ")
		}
		out[i] = d
	}
	return out
}

// FormatAge prints an age as ParseAge reads it.
func FormatAge(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// Report is what a prune did (or, dry, would do).
type Report struct {
	DryRun bool `json:"dry_run"`
	// Removed: the runs removed; Protected: runs the policy would remove
	// but that stay, with why.
	Removed   []Decision `json:"removed"`
	Protected []Decision `json:"protected"`
	// Objects, ObjectBytes: unreferenced snapshot objects removed.
	Objects     int   `json:"objects_removed"`
	ObjectBytes int64 `json:"object_bytes_removed"`
	// Freed: every byte removed (runs, objects, leftovers of an
	// interrupted prune).
	Freed int64 `json:"bytes_freed"`
	// SweepSkipped says why unreferenced objects were not swept (another
	// process held the objects lock): the next prune sweeps them.
	SweepSkipped string `json:"sweep_skipped,omitempty"`
}

// testHook, when set, is called at each step of a prune; an error stops
// the prune there, as a crash would.
var testHook func(step, name string) error

func hook(step, name string) error {
	if testHook == nil {
		return nil
	}
	return testHook(step, name)
}

// Prune applies p to the runs under root, then sweeps the objects that no
// remaining run refers to. dry: decide and count, remove nothing. wait:
// how long to wait for the objects lock (writers hold it while they store
// a snapshot); past it the sweep is skipped (Report.SweepSkipped).
func Prune(root string, p Policy, dry bool, wait time.Duration) (*Report, error) {
	rep := &Report{DryRun: dry, Removed: []Decision{}, Protected: []Decision{}}
	runs, err := ListRuns(root)
	if err != nil {
		return rep, err
	}
	// Detail only for the runs the policy would remove.
	pre := Select(runs, Policy{Keep: p.Keep, OlderThan: p.OlderThan, Now: p.Now})
	for i := range runs {
		if pre[i].Remove {
			if err := Inspect(&runs[i], p.Now, true, false); err != nil {
				return rep, err
			}
		}
	}
	removing := map[string]bool{}
	for i, d := range Select(runs, p) { // in the order of runs, as pre
		switch {
		case d.Remove:
			rep.Removed = append(rep.Removed, d)
			removing[d.ID] = true
		case pre[i].Remove:
			rep.Protected = append(rep.Protected, d)
		}
	}
	trash, _ := filepath.Glob(filepath.Join(root, trashPrefix+"*"))
	if dry {
		for _, d := range rep.Removed {
			rep.Freed += d.Bytes
		}
		for _, t := range trash {
			rep.Freed += dirBytes(t)
		}
		n, b, err := sweep(root, removing, true, wait)
		rep.Objects, rep.ObjectBytes, rep.Freed = n, b, rep.Freed+b
		if errors.Is(err, errObjectsBusy) {
			rep.SweepSkipped = err.Error()
			err = nil
		}
		return rep, err
	}
	// Leftovers of an interrupted prune first: they are already removed
	// runs.
	for _, t := range trash {
		rep.Freed += dirBytes(t)
		if err := os.RemoveAll(t); err != nil {
			return rep, fmt.Errorf("runs: remove %s: %w", t, err)
		}
	}
	kept := rep.Removed[:0]
	for _, d := range rep.Removed {
		ok, err := remove(root, &d)
		if err != nil {
			rep.Removed = kept
			return rep, err
		}
		if !ok {
			rep.Protected = append(rep.Protected, d)
			continue
		}
		rep.Freed += d.Bytes
		kept = append(kept, d)
	}
	rep.Removed = kept
	if len(rep.Removed) == 0 && len(trash) == 0 && !p.Sweep {
		return rep, nil
	}
	n, b, err := sweep(root, nil, false, wait)
	rep.Objects, rep.ObjectBytes, rep.Freed = n, b, rep.Freed+b
	if errors.Is(err, errObjectsBusy) {
		rep.SweepSkipped, err = err.Error(), nil
	}
	return rep, err
}

// remove takes the run's lock alone (false: another process holds it),
// renames the run to trash, then removes the trash.
func remove(root string, d *Decision) (bool, error) {
	l, err := flock(filepath.Join(d.Dir, lockFile), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		d.Why, d.Busy = "in use by another lifeline process", true
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("runs: lock %s: %w", d.Dir, err)
	}
	trash := filepath.Join(root, trashPrefix+d.ID)
	err = os.Rename(d.Dir, trash)
	l.Close()
	if err != nil {
		return false, fmt.Errorf("runs: remove %s: %w", d.Dir, err)
	}
	if err := hook("renamed", d.ID); err != nil {
		return false, err
	}
	if err := os.RemoveAll(trash); err != nil {
		return false, fmt.Errorf("runs: remove %s: %w", trash, err)
	}
	return true, hook("removed", d.ID)
}

var errObjectsBusy = errors.New("another lifeline process is storing snapshots: unreferenced objects are left for the next prune")

// sweep removes (dry: counts) the objects that no run under root refers
// to, the runs in skip aside (dry: the runs a prune would remove). It
// reads every ref before it removes anything, under the objects lock
// (exclusive), and stops without removing anything when a ref cannot be
// read: it cannot know what that one refers to.
func sweep(root string, skip map[string]bool, dry bool, wait time.Duration) (int, int64, error) {
	objs := filepath.Join(root, ObjectsDir)
	if _, err := os.Stat(objs); errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	var l *Lock
	deadline := time.Now().Add(wait)
	for {
		var err error
		l, err = flock(filepath.Join(objs, lockFile), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return 0, 0, fmt.Errorf("runs: lock %s: %w", objs, err)
		}
		if time.Now().After(deadline) {
			return 0, 0, errObjectsBusy
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer l.Close()
	marked, err := mark(root, skip)
	if err != nil {
		return 0, 0, err
	}
	ents, err := os.ReadDir(objs)
	if err != nil {
		return 0, 0, fmt.Errorf("runs: %w", err)
	}
	n, bytes := 0, int64(0)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			// No writer holds the lock now: a crashed writer's leftover.
			if info, err := e.Info(); err == nil && !dry && os.Remove(filepath.Join(objs, name)) == nil {
				bytes += info.Size()
			}
			continue
		}
		sha, ok := strings.CutSuffix(name, ".json")
		if !ok || len(sha) != 64 || marked[sha] {
			continue // the lock, or referenced
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if !dry {
			if err := os.Remove(filepath.Join(objs, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, bytes, fmt.Errorf("runs: remove %s: %w", name, err)
			}
			if err := hook("swept", sha); err != nil {
				return n + 1, bytes + info.Size(), err
			}
		}
		n++
		bytes += info.Size()
	}
	return n, bytes, nil
}

// mark reads every ref of every folder under root (any folder but objects
// and trash, run id or not, so that nothing a folder refers to is swept).
func mark(root string, skip map[string]bool) (map[string]bool, error) {
	marked := map[string]bool{}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == ObjectsDir || strings.HasPrefix(e.Name(), trashPrefix) || skip[e.Name()] {
			continue
		}
		refs, err := filepath.Glob(filepath.Join(root, e.Name(), "hosts", "*"+refSuffix))
		if err != nil {
			return nil, err
		}
		for _, p := range refs {
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // its run was removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("runs: read %s: %w; nothing swept", p, err)
			}
			r, err := parseRef(bytes.TrimSpace(b))
			if err != nil {
				return nil, fmt.Errorf("runs: %s: %w; nothing swept", p, err)
			}
			marked[r.SHA] = true
		}
	}
	return marked, nil
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// Usage is the size of the run store.
type Usage struct {
	Dir         string `json:"dir"`
	Runs        int    `json:"runs"`
	RunBytes    int64  `json:"run_bytes"`
	Objects     int    `json:"objects"`
	ObjectBytes int64  `json:"object_bytes"`
	Bytes       int64  `json:"bytes"` // everything under Dir
}

// Measure sums the runs' and the objects' sizes.
func Measure(root string, runs []Run) Usage {
	u := Usage{Dir: root, Runs: len(runs)}
	for _, r := range runs {
		u.RunBytes += r.Bytes
	}
	if ents, err := os.ReadDir(filepath.Join(root, ObjectsDir)); err == nil {
		for _, e := range ents {
			if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".json") {
				u.Objects++
				u.ObjectBytes += info.Size()
			}
		}
	}
	u.Bytes = dirBytes(root)
	return u
}

// FormatBytes prints a size for a person (1.2 MiB).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
