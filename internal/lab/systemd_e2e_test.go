//go:build linux

package lab_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestSystemdHostLifecycle boots a systemd host next to a lab host and
// checks what the e2e tests rely on: systemd is PID 1 with a running system,
// SSH as root with the lab's known_hosts, the console, sshd control, crash
// and boot (a reboot keeps the overlay: same host keys), and that Down
// leaves no systemd-nspawn behind.
func TestSystemdHostLifecycle(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: lab.BackendNft, Systemd: 2})
	s := l.Host("s01")
	if s == nil || s.Init != lab.InitSystemd || s.NspawnPID == 0 {
		t.Fatalf("no systemd host s01 in %+v", l.Hosts)
	}
	ctx := ctxT(t, 3*time.Minute)

	if got := strings.TrimSpace(labtest.SSH(t, l, "s01", "hostname; cat /proc/1/comm; id -u")); strings.Join(strings.Fields(got), " ") != "s01 systemd 0" {
		t.Errorf("ssh s01: got %q, want hostname s01, PID 1 systemd, uid 0", got)
	}
	if got := strings.TrimSpace(labtest.SSH(t, l, "h01", "cat /proc/1/comm")); got == "systemd" {
		t.Errorf("h01 runs systemd: the lab host kinds are mixed up")
	}
	// Two containers sharing one cgroup tree failed units at random
	// ("Failed to attach to cgroup"): each must boot clean.
	for _, name := range []string{"s01", "s02"} {
		out, err := l.Exec(ctx, name, "systemctl", "is-system-running", "--wait")
		if state := strings.TrimSpace(string(out)); state != "running" {
			failed, _ := l.Exec(ctx, name, "systemctl", "--failed", "--no-legend")
			t.Errorf("%s: systemctl is-system-running: %q, %v; failed units:\n%s", name, state, err, failed)
		}
	}
	if out, err := l.Exec(ctx, "s01", "nft", "list", "ruleset"); err != nil || !strings.Contains(string(out), "tcp dport 22 accept") {
		t.Errorf("s01 did not load its persisted baseline at boot: %q, %v", out, err)
	}
	inv, err := os.ReadFile(l.Inventory)
	if err != nil || !strings.Contains(string(inv), `s01: {labels: {lab: "`+l.ID+`", backend: nft, init: systemd}}`) {
		t.Errorf("inventory lacks s01 with init: systemd: %s %v", inv, err)
	}

	if err := l.StopSSHD(ctx, "s01"); err != nil {
		t.Fatal(err)
	}
	if _, err := labtest.TrySSH(l, "s01", "true"); err == nil {
		t.Error("ssh s01 works with sshd stopped")
	}
	// Stopping ssh.service in s01 does not touch s02's sshd.
	labtest.SSH(t, l, "s02", "true")
	if err := l.StartSSHD(ctx, "s01"); err != nil {
		t.Fatal(err)
	}
	labtest.SSH(t, l, "s01", "true")

	oldInit, oldNspawn := s.InitPID, s.NspawnPID
	if err := l.Crash(ctx, "s01"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{oldInit, oldNspawn} {
		if alive(pid) {
			t.Errorf("pid %d still runs after Crash", pid)
		}
	}
	if _, err := l.Exec(ctx, "s01", "true"); err == nil {
		t.Error("console works on a crashed host")
	}
	start := time.Now()
	if err := l.Boot(ctx, "s01"); err != nil {
		t.Fatal(err)
	}
	t.Logf("s01 booted (crash + boot) in %v", time.Since(start).Round(time.Millisecond))
	labtest.SSH(t, l, "s01", "true") // same host keys: known_hosts still matches

	start = time.Now()
	if err := l.Reboot(ctx, "s01"); err != nil {
		t.Fatal(err)
	}
	t.Logf("s01 rebooted (systemctl reboot) in %v", time.Since(start).Round(time.Millisecond))
	labtest.SSH(t, l, "s01", "true")

	nspawn := l.Host("s01").NspawnPID
	if err := lab.Down(ctx, l.Dir); err != nil {
		t.Fatal(err)
	}
	if alive(nspawn) {
		t.Errorf("systemd-nspawn %d still runs after Down", nspawn)
	}
	if left := leftovers(t, l.ID, []int{l.Host("s01").InitPID}); len(left) > 0 {
		t.Errorf("down left behind: %v", left)
	}
	for _, pattern := range []string{
		"/run/systemd/nspawn/propagate/ll" + l.ID + "-*",
		"/sys/fs/cgroup/*/lifeline-lab/ll" + l.ID + "-*",
		"/sys/fs/cgroup/lifeline-lab/ll" + l.ID + "-*",
	} {
		if left, _ := filepath.Glob(pattern); len(left) > 0 {
			t.Errorf("down left behind: %v", left)
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(b), ") Z")
}
