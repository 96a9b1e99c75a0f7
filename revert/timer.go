package revert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timer identifies an armed revert timer in record.json.
type Timer struct {
	Kind       string `json:"kind"`                  // "systemd" | "watchdog" | anything a test Armer uses
	Unit       string `json:"unit,omitempty"`        // systemd: the .timer unit
	PID        int    `json:"pid,omitempty"`         // watchdog: its pid
	StartTicks uint64 `json:"start_ticks,omitempty"` // watchdog: /proc/PID/stat field 22, so a recycled pid is not mistaken for it
}

// String is the form shown in Report.Timer: "systemd:UNIT" or "watchdog:PID".
func (t Timer) String() string {
	switch {
	case t.Kind == "":
		return ""
	case t.Unit != "":
		return t.Kind + ":" + t.Unit
	case t.PID != 0:
		return t.Kind + ":" + strconv.Itoa(t.PID)
	}
	return t.Kind
}

// Armer starts and stops the host's revert timer: something outside the
// SSH session that runs `lifeline-helper revert --tx ID` once a duration
// has passed on the monotonic clock. Methods are safe to call from separate
// helper processes; the engine calls them under the host lock.
type Armer interface {
	// Arm starts a timer for txID that fires after d. It must survive the
	// caller's process, session and sshd.
	// gen is the timer's generation (0 at begin, +1 per extend): timers
	// of one tx never share a name, and each runs the revert with its gen.
	Arm(ctx context.Context, txID string, gen int, d time.Duration) (Timer, error)
	// Alive reports whether t will still fire (or is firing right now).
	Alive(ctx context.Context, t Timer) (bool, error)
	// Disarm stops t so that it never fires. Idempotent: a timer that is
	// already gone is not an error. Disarming the calling process's own
	// timer (the watchdog reverting) does nothing.
	Disarm(ctx context.Context, t Timer) error
}

// ArmerOptions configure NewArmer.
type ArmerOptions struct {
	Exe      string   // the helper binary to run when the timer fires
	StateDir string   // passed on as --state-dir
	Env      []string // environment of the watchdog (nil: this process's)
}

// NewArmer returns the systemd Armer when systemd is PID 1 and systemd-run
// exists, else the detached-watchdog Armer.
func NewArmer(o ArmerOptions) Armer {
	if SystemdIsPID1() {
		if run, err := exec.LookPath("systemd-run"); err == nil {
			return &systemdArmer{opts: o, run: runArmerCommand, systemdRun: run}
		}
	}
	return &watchdogArmer{opts: o}
}

// SystemdIsPID1 reports whether systemd runs this host (sd_booted(3): the
// /run/systemd/system folder exists) and is PID 1 of our pid namespace.
func SystemdIsPID1() bool {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return false
	}
	comm, err := os.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "systemd"
}

// commandFunc runs a local command and returns its combined output.
type commandFunc func(ctx context.Context, name string, args ...string) (string, error)

func runArmerCommand(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := runCounted(cmd)
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// systemdArmer uses a transient systemd timer: it lives in systemd's own
// cgroup, outside the SSH session's, so it survives sshd and logind.
type systemdArmer struct {
	opts       ArmerOptions
	run        commandFunc
	systemdRun string
}

var _ Armer = (*systemdArmer)(nil)

func unitName(txID string, gen int) string {
	if gen == 0 {
		return "lifeline-revert-" + txID
	}
	return "lifeline-revert-" + txID + "-e" + strconv.Itoa(gen)
}

func (a *systemdArmer) Arm(ctx context.Context, txID string, gen int, d time.Duration) (Timer, error) {
	unit := unitName(txID, gen)
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	_, err := a.run(ctx, a.systemdRun,
		"--unit="+unit,
		"--on-active="+strconv.FormatInt(ms, 10)+"ms",
		"--timer-property=AccuracySec=100ms",
		"--property=Type=oneshot",
		a.opts.Exe, VerbRevert, "--tx", txID, "--gen", strconv.Itoa(gen), "--state-dir", a.opts.StateDir)
	if err != nil {
		return Timer{}, fmt.Errorf("arm systemd timer %s: %w", unit, err)
	}
	return Timer{Kind: "systemd", Unit: unit + ".timer"}, nil
}

func (a *systemdArmer) Alive(ctx context.Context, t Timer) (bool, error) {
	if t.Kind != "systemd" {
		return false, nil
	}
	service := strings.TrimSuffix(t.Unit, ".timer") + ".service"
	// is-active prints one state per unit and exits non-zero when not all
	// are active; read the words, not the status.
	out, _ := a.run(ctx, "systemctl", "is-active", t.Unit, service)
	states := strings.Fields(out)
	if len(states) != 2 {
		return false, fmt.Errorf("check systemd timer %s: unexpected systemctl output %q", t.Unit, out)
	}
	// a pending timer is active; a firing revert is an activating service
	timerActive := states[0] == "active"
	serviceRunning := states[1] == "activating" || states[1] == "active"
	return timerActive || serviceRunning, nil
}

func (a *systemdArmer) Disarm(ctx context.Context, t Timer) error {
	if t.Kind != "systemd" || t.Unit == "" {
		return nil
	}
	// Stop only the timer: stopping it never stops its service, so this is
	// safe from inside the revert service itself; a revert already waiting
	// for the host lock then finds a terminal state and does nothing.
	if _, err := a.run(ctx, "systemctl", "stop", t.Unit); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 5 { // unit not loaded: already gone
			return nil
		}
		return fmt.Errorf("disarm systemd timer %s: %w", t.Unit, err)
	}
	return nil
}

// watchdogArmer re-executes the helper as a detached watchdog: its own
// session (no controlling tty), stdio on /dev/null, cwd /, not waited for.
// The watchdog ignores SIGHUP and sleeps on the monotonic clock.
type watchdogArmer struct{ opts ArmerOptions }

var _ Armer = (*watchdogArmer)(nil)

func (a *watchdogArmer) Arm(ctx context.Context, txID string, gen int, d time.Duration) (Timer, error) {
	// The watchdog reads its deadline from record.json; d is implied there.
	cmd := exec.Command(a.opts.Exe, VerbWatchdog, "--tx", txID, "--gen", strconv.Itoa(gen), "--state-dir", a.opts.StateDir)
	cmd.Dir = "/"
	cmd.Env = a.opts.Env
	// nil Stdin/Stdout/Stderr: os/exec connects them to /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startCounted(cmd); err != nil {
		return Timer{}, fmt.Errorf("start watchdog for tx %s: %w", txID, err)
	}
	pid := cmd.Process.Pid
	ticks, _, err := procStat(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		return Timer{}, fmt.Errorf("start watchdog for tx %s: read its start time: %w", txID, err)
	}
	if err := cmd.Process.Release(); err != nil {
		return Timer{}, fmt.Errorf("start watchdog for tx %s: release: %w", txID, err)
	}
	return Timer{Kind: "watchdog", PID: pid, StartTicks: ticks}, nil
}

func (a *watchdogArmer) Alive(_ context.Context, t Timer) (bool, error) {
	return watchdogAlive(t), nil
}

func watchdogAlive(t Timer) bool {
	if t.Kind != "watchdog" || t.PID <= 0 {
		return false
	}
	ticks, state, err := procStat(t.PID)
	if err != nil {
		return false
	}
	return ticks == t.StartTicks && state != "Z" && state != "X"
}

func (a *watchdogArmer) Disarm(ctx context.Context, t Timer) error {
	if t.Kind != "watchdog" || t.PID == os.Getpid() || !watchdogAlive(t) {
		return nil
	}
	if err := syscall.Kill(t.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("disarm watchdog %d: %w", t.PID, err)
	}
	// bounded wait so the caller can report "disarmed" truthfully; a
	// watchdog that ignores SIGTERM for a second (stopped, hung) is killed
	for i := range 100 {
		if !watchdogAlive(t) {
			return nil
		}
		if i == 50 {
			if err := syscall.Kill(t.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("disarm watchdog %d: %w", t.PID, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("disarm watchdog %d: %w", t.PID, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("disarm watchdog %d: still running 2s after SIGTERM and SIGKILL", t.PID)
}

// procStat returns field 22 (starttime, clock ticks since boot) and field 3
// (state) of /proc/PID/stat.
func procStat(pid int) (uint64, string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", err
	}
	// comm (field 2) may hold spaces and parens: split after the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("parse /proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19]
	if len(f) < 20 {
		return 0, "", fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("parse /proc/%d/stat starttime: %w", pid, err)
	}
	return ticks, f[0], nil
}
