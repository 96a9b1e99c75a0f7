package revert

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// updateGolden reads the package's shared -update flag (defined once per
// test binary; another file of this package owns it).
func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// recordingRun records command lines and answers from a table.
type recordingRun struct {
	lines   []string
	answers map[string]string
}

func (r *recordingRun) run(_ context.Context, name string, args ...string) (string, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	r.lines = append(r.lines, line)
	for prefix, out := range r.answers {
		if strings.HasPrefix(line, prefix) {
			return out, nil
		}
	}
	return "", nil
}

// TestSystemdArmerCommands pins the exact command lines of the systemd
// timer (the brief's contract with systemd-run) in a golden file.
func TestSystemdArmerCommands(t *testing.T) {
	rr := &recordingRun{answers: map[string]string{
		"systemctl is-active lifeline-revert-tx1.timer": "active\ninactive\n",
		"systemctl is-active lifeline-revert-tx2.timer": "inactive\nactivating\n",
		"systemctl is-active lifeline-revert-tx3.timer": "inactive\ninactive\n",
	}}
	a := &systemdArmer{opts: ArmerOptions{Exe: "/var/lib/lifeline/bin/abc", StateDir: "/var/lib/lifeline"}, run: rr.run, systemdRun: "/usr/bin/systemd-run"}
	ctx := context.Background()
	tm, err := a.Arm(ctx, "tx1", 0, 90*time.Second+250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if tm.String() != "systemd:lifeline-revert-tx1.timer" {
		t.Fatalf("timer %q", tm)
	}
	for _, c := range []struct {
		id   string
		want bool
	}{{"tx1", true}, {"tx2", true}, {"tx3", false}} {
		alive, err := a.Alive(ctx, Timer{Kind: "systemd", Unit: unitName(c.id, 0) + ".timer"})
		if err != nil || alive != c.want {
			t.Fatalf("alive %s: %v %v, want %v", c.id, alive, err, c.want)
		}
	}
	if err := a.Disarm(ctx, tm); err != nil {
		t.Fatal(err)
	}
	// extend arms the next generation under its own unit name
	tm1, err := a.Arm(ctx, "tx1", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if tm1.String() != "systemd:lifeline-revert-tx1-e1.timer" {
		t.Fatalf("extended timer %q", tm1)
	}
	got := strings.Join(rr.lines, "\n") + "\n"
	golden := filepath.Join("testdata", "systemd_armer.golden")
	if updateGolden() {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestSystemdArmerCommands ./revert -update)", err)
	}
	if got != string(want) {
		t.Fatalf("command lines differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// TestWatchdogArmerLiveness arms a real detached process (sleep stands in
// for the helper: Arm only needs an executable) and checks that Alive
// follows it by pid and start time, and that Disarm ends it.
func TestWatchdogArmerLiveness(t *testing.T) {
	a := sleepArmer(t)
	ctx := context.Background()
	tm, err := a.Arm(ctx, "tx1", 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Disarm(ctx, tm) })
	if alive, _ := a.Alive(ctx, tm); !alive {
		t.Fatalf("watchdog %s not alive after Arm", tm)
	}
	sid, err := procSession(tm.PID)
	if err != nil || sid != tm.PID {
		t.Fatalf("watchdog session %d (%v), want its own (%d)", sid, err, tm.PID)
	}
	recycled := tm
	recycled.StartTicks++
	if alive, _ := a.Alive(ctx, recycled); alive {
		t.Fatalf("a pid with another start time counted as the watchdog")
	}
	if err := a.Disarm(ctx, recycled); err != nil {
		t.Fatal(err)
	}
	if alive, _ := a.Alive(ctx, tm); !alive {
		t.Fatalf("Disarm of a recycled pid killed the real watchdog")
	}
	if err := a.Disarm(ctx, tm); err != nil {
		t.Fatal(err)
	}
	if alive, _ := a.Alive(ctx, tm); alive {
		t.Fatalf("watchdog alive after Disarm")
	}
}

// procSession returns field 6 (session id) of /proc/PID/stat.
func procSession(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return strconv.Atoi(f[3])
}

// A SIGSTOPped watchdog cannot act on SIGTERM: Disarm kills it.
func TestDisarmStoppedWatchdog(t *testing.T) {
	a := sleepArmer(t)
	ctx := context.Background()
	tm, err := a.Arm(ctx, "tx1", 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(tm.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := a.Disarm(ctx, tm); err != nil {
		t.Fatalf("Disarm of a stopped watchdog: %v", err)
	}
	if alive, _ := a.Alive(ctx, tm); alive {
		t.Fatalf("stopped watchdog alive after Disarm")
	}
}

// sleepArmer is a watchdog armer whose "helper" sleeps 30s ("sleep
// watchdog --tx ..." would fail: a wrapper script).
func sleepArmer(t *testing.T) *watchdogArmer {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("sleep(1) not found: install coreutils")
	}
	script := filepath.Join(t.TempDir(), "fake-helper")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec "+sleep+" 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &watchdogArmer{opts: ArmerOptions{Exe: script, StateDir: t.TempDir()}}
}
