package revert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPartialApply means an iptables ruleset with several tables failed
// after its first COMMIT: iptables-restore is atomic per table block only,
// so the tables before the failing one are live. Not worth retrying: the
// engine restores the snapshot at once.
var ErrPartialApply = errors.New("ruleset applied only in part")

// FirewallExec runs one host tool with stdin and returns its output. A
// tool that runs but fails returns a *ToolError.
type FirewallExec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout, stderr []byte, err error)

// ToolError is a host tool that exited non-zero.
type ToolError struct {
	Tool     string
	Args     []string
	ExitCode int
	Stderr   string
}

func (e *ToolError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Sprintf("%s exited %d: %s", e.Tool, e.ExitCode, msg)
}

// FirewallOptions configures NewFirewall. The zero value drives the local
// host's tools.
type FirewallOptions struct {
	// Exec runs the tools; nil runs them locally (os/exec, WaitDelay set).
	// Tests point it at a network namespace (ip netns exec NS ...).
	Exec FirewallExec
	// LookPath finds a tool; nil is exec.LookPath.
	LookPath func(string) (string, error)
	// NetNS is the network namespace (a path like /run/netns/NAME) that the
	// netlink reads go to; "" is the helper's own. Tests set it with Exec.
	NetNS string
	// Tools overrides a tool's path by name ("nft", "iptables-nft-save", ...).
	Tools map[string]string
	// Root prefixes the paths Persist writes ("" is "/").
	Root string
	// Foreign adds chain/table name prefixes of other owners whose chains
	// survive Apply and Restore (besides DOCKER*, KUBE-*, cali-*).
	Foreign []string
	// Log receives diagnostics; nil discards them.
	Log func(format string, args ...any)
	// Timeout bounds each tool run (0: 30s).
	Timeout time.Duration
	// ProofDir keeps proofs that a snapshot's load file trial-loaded (see
	// fw_proof.go); "" keeps none and trial-loads every snapshot.
	ProofDir string
}

// NewFirewall returns the Firewall that drives the host's nft and iptables
// tools. See buildNft and buildIPTables for the rules about foreign chains.
func NewFirewall(opts FirewallOptions) Firewall {
	f := &hostFirewall{opts: opts}
	if f.opts.LookPath == nil {
		f.opts.LookPath = exec.LookPath
	}
	if f.opts.Log == nil {
		f.opts.Log = func(string, ...any) {}
	}
	if f.opts.Timeout == 0 {
		f.opts.Timeout = 30 * time.Second
	}
	if f.opts.Exec == nil {
		f.opts.Exec = localExec
		// the tools run here, on the kernel whose /proc and netlink the
		// helper reads: read-only shortcuts may stand in for them
		f.local = f.opts.NetNS == ""
	}
	return f
}

var _ Firewall = (*hostFirewall)(nil)

type hostFirewall struct {
	opts FirewallOptions
	// local: the tools run in the helper's own network namespace (no Exec
	// or NetNS of a test), so /proc/net and symlinks describe what they see.
	local bool
	// lastTrial: how long the last listed trial load took (TrialTook)
	lastTrial time.Duration

	// reads caches the output of read-only tool runs (saves, nft list,
	// ip link show, --version) for readTTL: one begin reads the same tables
	// for detect, build, snapshot and the foreign-chain merge, and every
	// process spawned costs tens of milliseconds on a busy host. Any other
	// run (a load, a trial load) may change what they read and empties it.
	mu    sync.Mutex
	reads map[string]cachedRead

	hostFactsCache // detected once: see facts
}

type cachedRead struct {
	out string
	at  time.Time
}

// readTTL bounds how old a cached read may be; the host lock keeps other
// lifeline helpers out meanwhile.
const readTTL = 2 * time.Second

// readOnly reports whether a tool run only reads state.
func readOnly(name string, args []string) bool {
	switch {
	case strings.HasSuffix(name, "-save"):
		return true
	case len(args) == 1 && args[0] == "--version":
		return true
	case nftReadOnly(name, args):
		return true
	case name == "ipset" && len(args) == 1 && args[0] == "save":
		return true
	case name == "ip" && len(args) == 3 && args[0] == "-o" && args[1] == "link" && args[2] == "show":
		return true
	}
	return false
}

func localExec(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	err := runCounted(cmd)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = &ToolError{Tool: name, Args: args, ExitCode: ee.ExitCode(), Stderr: errb.String()}
	}
	return out.Bytes(), errb.Bytes(), err
}

func (f *hostFirewall) tool(name string) string {
	if p, ok := f.opts.Tools[name]; ok {
		return p
	}
	return name
}

func (f *hostFirewall) has(name string) bool {
	if _, ok := f.opts.Tools[name]; ok {
		return true
	}
	_, err := f.opts.LookPath(name)
	return err == nil
}

func (f *hostFirewall) run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	key := ""
	if len(stdin) == 0 && readOnly(name, args) {
		key = name + "\x00" + strings.Join(args, "\x00")
		f.mu.Lock()
		c, ok := f.reads[key]
		f.mu.Unlock()
		if ok && time.Since(c.at) < readTTL {
			return c.out, nil
		}
	} else if name != "unshare" || len(args) == 0 || args[0] != "--net" {
		// a trial load in a private netns changes nothing live: keep the cache
		f.mu.Lock()
		f.reads = nil
		f.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	at := time.Now()
	out, _, err := f.opts.Exec(ctx, stdin, f.tool(name), args...)
	if err != nil {
		return string(out), fmt.Errorf("run %s: %w", name, err)
	}
	if key != "" {
		f.mu.Lock()
		if f.reads == nil {
			f.reads = map[string]cachedRead{}
		}
		f.reads[key] = cachedRead{out: string(out), at: at}
		f.mu.Unlock()
	}
	return string(out), nil
}

// ---- foreign owners ----

var defaultForeign = []string{"DOCKER-", "KUBE-", "cali-", "docker", "kube-", "calico"}

// banTables are the tables and chains of the tools that keep bans in
// sets, filled at run time: lifeline's own (block.go), fail2ban's nft
// table and CrowdSec's. They are carried over like foreign ones, so a ban
// added while a transaction is armed survives its revert, and an apply
// never empties them. (Their ipsets are never part of a snapshot anyway.)
var banTables = map[string]bool{blockTable: true, blockChain: true, "f2b-table": true, "crowdsec": true, "crowdsec6": true}

func (f *hostFirewall) isForeign(name string) bool {
	if name == "DOCKER" || banTables[name] {
		return true
	}
	for _, p := range slices.Concat(defaultForeign, f.opts.Foreign) {
		if p != "" && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ---- the Firewall methods: each picks a backend and delegates ----

func (f *hostFirewall) Detect(ctx context.Context) (*Detect, error) {
	d := &Detect{UID: os.Getuid(), Arch: runtime.GOARCH, Backends: []string{}, Active: []string{}}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		d.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if exe, err := os.Readlink("/proc/1/exe"); err == nil && filepath.Base(exe) == "systemd" {
		d.Systemd = true
	} else if comm, err := os.ReadFile("/proc/1/comm"); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
		d.Systemd = true
	}
	d.BootID, _ = ReadBootID()
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	d.Backends = append(d.Backends, hf.names...)
	d.Active = append(d.Active, hf.active...)
	return d, nil
}

// Snapshot captures every installed backend's part (see backend.snapshot).
func (f *hostFirewall) Snapshot(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{Taken: time.Now().UTC()}
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	for _, b := range hf.all {
		p, keep, err := b.snapshot(ctx)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", b.name(), err)
		}
		if keep {
			s.Parts = append(s.Parts, p)
		}
	}
	if len(s.Parts) == 0 {
		return nil, &Error{Code: CodeBackend, Message: "no firewall tool on this host: install nftables or iptables"}
	}
	return s, nil
}

func (f *hostFirewall) Validate(ctx context.Context, format Format, ruleset string) error {
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return err
	}
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return err
	}
	klog := kernelLog()
	trial := func() error { return b.trialLoad(ctx, lf) }
	if load, list := f.trialCmds(b); f.opts.ProofDir != "" && load != nil {
		// list too: the listing memo spares stage's verify a trial load
		trial = func() error { _, err := f.scratch(ctx, []byte(lf.String()), load, list); return err }
	}
	if err := trial(); err != nil {
		return b.explain(ctx, CodeInvalidRuleset, lf, err, klog())
	}
	klog()
	return nil
}

func (f *hostFirewall) ValidateSnapshot(ctx context.Context, s *Snapshot) error {
	for _, p := range s.Parts {
		b, err := f.backendNamed(ctx, p)
		if err != nil {
			return err
		}
		lf, err := b.restoreFile(ctx, p)
		if err != nil {
			return err
		}
		if err := f.trialLoadProven(ctx, b, lf); err != nil {
			e := loadError(CodeSnapshot, p.Format, lf, err)
			e.Message = p.Backend + " snapshot does not load: " + e.Message
			return e
		}
	}
	return nil
}

func (f *hostFirewall) Apply(ctx context.Context, format Format, ruleset string, guard *Guard) error {
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return fmt.Errorf("apply %s: %w", format, err)
	}
	lf, err := b.build(ctx, ruleset, guard)
	if err != nil {
		return fmt.Errorf("apply %s: %w", format, err)
	}
	return b.load(ctx, lf, CodeApplyFailed)
}

func (f *hostFirewall) Restore(ctx context.Context, s *Snapshot) error {
	var errs []error
	for _, p := range s.Parts {
		b, err := f.backendNamed(ctx, p)
		var lf *loadFile
		if err == nil {
			lf, err = b.restoreFile(ctx, p)
		}
		if err == nil {
			err = b.load(ctx, lf, CodeRevertFailed)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s snapshot: %w", p.Backend, err))
		}
	}
	return errors.Join(errs...)
}

func (f *hostFirewall) Equal(ctx context.Context, s *Snapshot) (bool, string, error) {
	var diffs strings.Builder
	for _, p := range s.Parts {
		b, err := f.backendNamed(ctx, p)
		if err != nil {
			return false, "", fmt.Errorf("compare %s: %w", p.Backend, err)
		}
		live, err := b.liveNorm(ctx)
		if err != nil {
			return false, "", fmt.Errorf("compare %s: %w", p.Backend, err)
		}
		want, err := b.partNorm(p)
		if err != nil {
			return false, "", fmt.Errorf("compare %s: %w", p.Backend, err)
		}
		diffs.WriteString(unifiedDiff("live "+p.Backend, "snapshot "+p.Backend, live, want))
	}
	return diffs.Len() == 0, diffs.String(), nil
}

// applied is the backend's applied for format.
func (f *hostFirewall) applied(ctx context.Context, format Format, ruleset string, onTop bool) (got, live map[string]string, order []string, err error) {
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return nil, nil, nil, err
	}
	return b.applied(ctx, ruleset, onTop)
}

func (f *hostFirewall) Contains(ctx context.Context, format Format, ruleset string) (bool, string, error) {
	got, live, order, err := f.applied(ctx, format, ruleset, false)
	if err != nil {
		return false, "", fmt.Errorf("compare %s ruleset with live: %w", format, err)
	}
	var a, b strings.Builder
	for _, k := range order {
		if w, ok := got[k]; ok {
			a.WriteString(live[k])
			b.WriteString(w)
		}
	}
	d := unifiedDiff("live", "ruleset", a.String(), b.String())
	return d == "", d, nil
}

func (f *hostFirewall) Diff(ctx context.Context, format Format, ruleset string) (string, error) {
	got, live, order, err := f.applied(ctx, format, ruleset, true)
	if err != nil {
		return "", fmt.Errorf("diff %s ruleset with live: %w", format, err)
	}
	var a, b strings.Builder
	for _, k := range order {
		a.WriteString(live[k])
		b.WriteString(got[k])
	}
	return unifiedDiff("live", "after apply", a.String(), b.String()), nil
}
