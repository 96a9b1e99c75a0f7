package revert

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is the host's clock: wall time for records and reports, and
// CLOCK_MONOTONIC (the clock systemd's OnActiveSec= and Go's timers use),
// which deadlines are checked against so that a wall-clock step neither
// shortens nor stretches a transaction.
type Clock interface {
	Now() time.Time
	// Monotonic is CLOCK_MONOTONIC: the same value in every process of
	// the boot, never stepped.
	Monotonic() time.Duration
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) Monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

// Syslogger is where loud messages go besides the tx log (a *syslog.Writer
// satisfies it). Nil means no syslog.
type Syslogger interface {
	Info(m string) error
	Warning(m string) error
	Crit(m string) error
}

// Env is everything Handle needs from its host. Zero fields get defaults.
type Env struct {
	StateDir string   // default DefaultStateDir
	Firewall Firewall // required
	Armer    Armer    // required for begin/apply/confirm/abort/revert/status
	Clock    Clock    // default: the real clock
	// BootID returns the kernel's boot id (default: read
	// /proc/sys/kernel/random/boot_id).
	BootID   func() (string, error)
	Hostname string    // default os.Hostname
	Syslog   Syslogger // optional
	Rand     io.Reader // token source, default crypto/rand
	// LockWait bounds waiting for the host lock held by another helper
	// process (default 30s); RevertLockWait does for the timer's revert
	// (default 60s), which then proceeds without the lock: reverting late
	// is worse than racing a hung helper.
	LockWait       time.Duration
	RevertLockWait time.Duration
	// RestoreRetries is how many times a failed Restore is retried
	// (default 2), RestoreRetryDelay apart (default 500ms).
	RestoreRetries    int
	RestoreRetryDelay time.Duration
	// ProcDir is where the state verb reads the host's facts (default
	// /proc).
	ProcDir string
	// Conntrack is where the conntrack verb reads (zero: this host).
	Conntrack ConntrackProbe
}

func (env Env) withDefaults() Env {
	if env.StateDir == "" {
		env.StateDir = DefaultStateDir
	}
	if env.ProcDir == "" {
		env.ProcDir = "/proc"
	}
	if env.Clock == nil {
		env.Clock = realClock{}
	}
	if env.BootID == nil {
		env.BootID = ReadBootID
	}
	if env.Hostname == "" {
		env.Hostname, _ = os.Hostname()
	}
	if env.Rand == nil {
		env.Rand = rand.Reader
	}
	if env.LockWait == 0 {
		env.LockWait = 30 * time.Second
	}
	if env.RevertLockWait == 0 {
		env.RevertLockWait = 60 * time.Second
	}
	if env.RestoreRetries == 0 {
		env.RestoreRetries = 2
	}
	if env.RestoreRetryDelay == 0 {
		env.RestoreRetryDelay = 500 * time.Millisecond
	}
	return env
}

// ReadBootID identifies the running boot: the kernel's boot id plus the
// start time of PID 1 (clock ticks since boot, /proc/1/stat field 22). The
// kernel's id changes on every boot of a machine; PID 1's start time also
// changes when a container or a pid namespace (a lab host) is restarted
// on a kernel that keeps running, which is a reboot for that host too.
func ReadBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if st, err := os.ReadFile("/proc/1/stat"); err == nil {
		// the command name (field 2) may hold spaces: count from its ')'
		if i := bytes.LastIndexByte(st, ')'); i >= 0 {
			if f := strings.Fields(string(st[i+1:])); len(f) > 19 {
				id += "/" + f[19]
			}
		}
	}
	return id, nil
}

// Handle runs one helper verb and always returns a Report: refusals and
// failures are in Report.Error. req may be nil for verbs without input
// (revert, watchdog take only req.TxID). Handle never panics on its own;
// it blocks for the watchdog verb until the deadline.
func Handle(ctx context.Context, verb string, req *Request, env Env) *Report {
	env = env.withDefaults()
	if req == nil {
		req = &Request{}
	}
	e := &engine{env: env, st: store{dir: env.StateDir}, fw: env.Firewall, armer: env.Armer, clock: env.Clock}
	spawned0 := spawned.Load()
	rep := &Report{Version: ProtocolVersion, Verb: verb, Hostname: env.Hostname, TxID: req.TxID, State: StateNone}
	var err error
	fixed, serr := e.st.secure() // before anything in it is read
	rep.Warnings = append(rep.Warnings, fixed...)
	switch {
	case serr != nil:
		err = serr
	case req.Version != 0 && req.Version != ProtocolVersion:
		err = &Error{Code: CodeBadRequest, Message: fmt.Sprintf("protocol version %d, this helper speaks %d: upload the helper that matches the workstation", req.Version, ProtocolVersion)}
	case verb == VerbConntrack:
		err = e.conntrack(ctx, req, rep) // read-only: needs neither firewall nor timer
	case env.Firewall == nil:
		err = &Error{Code: CodeInternal, Message: "no firewall backend configured"}
	case env.Armer == nil && verb != VerbDetect && verb != VerbDiff && verb != VerbState && verb != VerbBlock && verb != VerbPreflight:
		err = &Error{Code: CodeInternal, Message: "no revert timer configured"}
	default:
		err = e.run(ctx, verb, req, rep)
	}
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: CodeInternal, Message: err.Error()}
		}
		rep.Error = pe
	}
	rep.Now = env.Clock.Now().UTC().Round(0)
	rep.Spawned = int(spawned.Load() - spawned0)
	return rep
}

func (e *engine) run(ctx context.Context, verb string, req *Request, rep *Report) error {
	switch verb {
	case VerbDetect:
		return e.detect(ctx, rep)
	case VerbDiff:
		return e.diff(ctx, req, rep)
	case VerbBegin:
		return e.begin(ctx, req, rep)
	case VerbStage:
		return e.stage(ctx, req, rep)
	case VerbExtend:
		return e.extend(ctx, req, rep)
	case VerbConfirm:
		return e.confirm(ctx, req, rep)
	case VerbStatus:
		return e.status(ctx, req, rep)
	case VerbAbort:
		return e.abort(ctx, req, rep)
	case VerbRevert:
		return e.revert(ctx, req, rep)
	case VerbWatchdog:
		return e.watchdog(ctx, req, rep)
	case VerbState:
		return e.state(ctx, req, rep)
	case VerbBlock:
		return e.block(ctx, req, rep)
	case VerbPreflight:
		return e.preflight(ctx, req, rep)
	}
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown verb %q", verb)}
}

func (e *engine) detect(ctx context.Context, rep *Report) error {
	var det *Detect
	err := e.phase(rep, "detect", func() (err error) {
		det, err = e.detectHost(ctx)
		return err
	})
	rep.Detect = det
	return err
}

func (e *engine) diff(ctx context.Context, req *Request, rep *Report) error {
	c := req.Diff
	if c == nil || c.Kind != ChangeRuleset {
		return &Error{Code: CodeBadRequest, Message: "diff needs a ruleset change"}
	}
	if err := c.Check(); err != nil {
		return err
	}
	return e.phase(rep, "diff", func() error {
		d, err := e.fw.Diff(ctx, c.Ruleset.Format, c.Ruleset.Text)
		if err != nil {
			return fmt.Errorf("diff live ruleset against request: %w", err)
		}
		rep.Diff = &DiffReport{Diff: d}
		return nil
	})
}

// phase times fn into rep.Phases.
func (e *engine) phase(rep *Report, name string, fn func() error) error {
	start := e.clock.Now()
	err := fn()
	rep.Phases = append(rep.Phases, Phase{Name: name, Took: e.clock.Now().Sub(start)})
	return err
}

// spawned counts every process the helper starts (see startCounted): the
// report of each verb says how many it took (#12).
var spawned atomic.Int64

// startCounted starts cmd and counts it.
func startCounted(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	spawned.Add(1)
	return nil
}

// runCounted runs cmd (Start then Wait) and counts it.
func runCounted(cmd *exec.Cmd) error {
	if err := startCounted(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}
