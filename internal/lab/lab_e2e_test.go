//go:build linux

package lab_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

func TestMain(m *testing.M) {
	labtest.MaybeRunInit()
	os.Exit(m.Run())
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestLabHosts brings up three hosts and checks every promise a test relies
// on: SSH as root, as ops with sudo and through the jump host, backends,
// /etc isolation, console, sshd control, key rotation, crash and boot.
func TestLabHosts(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3})
	ctx := ctxT(t, 60*time.Second)

	t.Run("ssh", func(t *testing.T) {
		want := map[string]string{"h01": "h01 0", "h02": "h02 0", "h03": "h03 0"}
		seen := map[string]bool{}
		for _, h := range l.Hosts {
			got := strings.Join(strings.Fields(labtest.SSH(t, l, h.Name, "hostname; sudo -n id -u")), " ")
			if got != want[h.Name] {
				t.Errorf("ssh %s: got %q, want %q", h.Name, got, want[h.Name])
			}
			seen[strings.Fields(got)[0]] = true
		}
		if len(seen) != 3 {
			t.Errorf("hostnames not distinct: %v", seen)
		}
		if u := strings.TrimSpace(labtest.SSH(t, l, "h02", "id -un")); u != "ops" {
			t.Errorf("h02 logs in as %q, want ops", u)
		}
		if h := l.Host("h03"); h.Jump != "h01" || h.Port != 2222 {
			t.Errorf("h03: jump %q port %d, want h01 2222", h.Jump, h.Port)
		}
	})

	t.Run("backends", func(t *testing.T) {
		for _, tc := range []struct{ host, want string }{
			{"h01", "table inet filter"},
			{"h02", "(nf_tables)"},
			{"h03", "(legacy)"},
		} {
			cmd := "iptables -V"
			if tc.host == "h01" {
				cmd = "nft list ruleset"
			}
			out, err := l.Exec(ctx, tc.host, "sh", "-c", cmd)
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s: %s: got %q, %v; want %q", tc.host, cmd, out, err, tc.want)
			}
		}
		out, err := l.Exec(ctx, "h03", "iptables-save")
		if err != nil || !strings.Contains(string(out), "--dport 2222 -j ACCEPT") {
			t.Errorf("h03 baseline ruleset: %q, %v", out, err)
		}
	})

	t.Run("etc isolated", func(t *testing.T) {
		before, err := os.ReadFile("/etc/ssh/sshd_config")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Exec(ctx, "h01", "sh", "-c", "echo '# edited in lab' >> /etc/ssh/sshd_config && grep -c 'edited in lab' /etc/ssh/sshd_config"); err != nil {
			t.Fatal(err)
		}
		after, _ := os.ReadFile("/etc/ssh/sshd_config")
		if !bytes.Equal(before, after) {
			t.Fatal("writing /etc/ssh/sshd_config inside h01 changed the machine's file")
		}
		// the machine's host keys are not visible inside
		out, _ := l.Exec(ctx, "h01", "sh", "-c", "cat /etc/ssh/ssh_host_rsa_key 2>&1; true")
		if bytes.Contains(out, []byte("PRIVATE KEY")) {
			t.Error("h01 can read the machine's rsa host key")
		}
		mine, _ := os.ReadFile("/etc/ssh/ssh_host_ed25519_key.pub")
		theirs, _ := l.Exec(ctx, "h01", "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
		if len(mine) > 0 && bytes.Equal(bytes.Fields(mine)[1], bytes.Fields(theirs)[1]) {
			t.Error("h01 uses the machine's ed25519 host key")
		}
	})

	t.Run("stop start sshd", func(t *testing.T) {
		if err := l.StopSSHD(ctx, "h02"); err != nil {
			t.Fatal(err)
		}
		if _, err := labtest.TrySSH(l, "h02", "true"); err == nil {
			t.Fatal("ssh h02 worked with sshd stopped")
		}
		st, err := l.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st[1].SSHDAlive || st[1].Reachable || !st[1].InitAlive {
			t.Errorf("status of h02 with sshd stopped: %+v", st[1])
		}
		// a broken config: StartSSHD reports it fast instead of timing out
		if _, err := l.Exec(ctx, "h02", "sh", "-c", "cp /etc/ssh/sshd_config /tmp/good && echo 'NoSuchOption yes' >> /etc/ssh/sshd_config"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := l.StartSSHD(ctx, "h02"); !errors.Is(err, lab.ErrSSHDExited) || time.Since(start) > 10*time.Second {
			t.Fatalf("StartSSHD with a broken sshd_config: %v after %v, want ErrSSHDExited soon", err, time.Since(start))
		}
		if _, err := l.Exec(ctx, "h02", "cp", "/tmp/good", "/etc/ssh/sshd_config"); err != nil {
			t.Fatal(err)
		}
		if err := l.StartSSHD(ctx, "h02"); err != nil {
			t.Fatal(err)
		}
		labtest.SSH(t, l, "h02", "true")
	})

	t.Run("crash boot keeps host keys", func(t *testing.T) {
		h := l.Host("h03")
		old := h.InitPID
		before, err := l.Exec(ctx, "h03", "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Exec(ctx, "h03", "sh", "-c", "echo kept > /var/lib/lifeline/marker; iptables -A INPUT -p tcp --dport 9 -j DROP"); err != nil {
			t.Fatal(err)
		}
		if err := l.Crash(ctx, "h03"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(old)); err == nil {
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(old) + "/stat"); !bytes.Contains(b, []byte(") Z")) {
				t.Fatalf("init %d still runs after Crash", old)
			}
		}
		st, _ := l.Status(ctx)
		if st[2].InitAlive || st[2].Reachable {
			t.Errorf("status after crash: %+v", st[2])
		}
		if err := l.Boot(ctx, "h03"); err != nil {
			t.Fatal(err)
		}
		if h.InitPID == old {
			t.Error("Boot did not record a new init pid")
		}
		after, _ := l.Exec(ctx, "h03", "cat", "/etc/ssh/ssh_host_ed25519_key.pub", "/var/lib/lifeline/marker")
		if !bytes.HasPrefix(after, before) || !bytes.HasSuffix(after, []byte("kept\n")) {
			t.Errorf("after boot: %q, want host key %q and marker", after, before)
		}
		rules, _ := l.Exec(ctx, "h03", "iptables-save")
		if bytes.Contains(rules, []byte("--dport 9 ")) || !bytes.Contains(rules, []byte("--dport 2222")) {
			t.Errorf("after boot the ruleset is not the persisted one:\n%s", rules)
		}
		labtest.SSH(t, l, "h03", "true") // strict known_hosts: same keys
		reloaded, err := lab.Load(l.Dir)
		if err != nil || reloaded.Host("h03").InitPID != h.InitPID {
			t.Errorf("lab.json does not record the new init pid: %v", err)
		}
	})

	t.Run("rotate host keys", func(t *testing.T) {
		if err := l.RotateHostKeys(ctx, "h01"); err != nil {
			t.Fatal(err)
		}
		_, err := labtest.TrySSH(l, "h01", "true")
		var se *labtest.SSHError
		if !errors.As(err, &se) || !strings.Contains(se.Stderr, "HOST IDENTIFICATION HAS CHANGED") {
			t.Fatalf("ssh after key rotation: %v, want a host key mismatch", err)
		}
	})

	t.Run("exec error", func(t *testing.T) {
		_, err := l.Exec(ctx, "h02", "sh", "-c", "echo oops >&2; exit 3")
		var ee *lab.ExecError
		if !errors.As(err, &ee) || !strings.Contains(string(ee.Stderr), "oops") {
			t.Fatalf("Exec failure: %v, want *ExecError with stderr", err)
		}
		var xe *exec.ExitError
		if !errors.As(err, &xe) || xe.ExitCode() != 3 {
			t.Errorf("exit code: %v", err)
		}
		if _, err := l.Exec(ctx, "h99", "true"); !errors.Is(err, lab.ErrUnknownHost) {
			t.Errorf("unknown host: %v", err)
		}
	})
}

// leftovers lists what of lab id is still on the machine.
func leftovers(t *testing.T, id string, pids []int) []string {
	t.Helper()
	var out []string
	ns, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ns), "\n") {
		if strings.HasPrefix(line, "ll"+id+"-") {
			out = append(out, "netns "+line)
		}
	}
	for _, line := range strings.Split(string(links), "\n") {
		if f := strings.Fields(line); len(f) > 1 && (strings.HasPrefix(f[1], "llv"+id) || strings.HasPrefix(f[1], "llb"+id)) {
			out = append(out, "link "+f[1])
		}
	}
	for _, pid := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !bytes.Contains(b, []byte(") Z")) {
			out = append(out, "pid "+strconv.Itoa(pid))
		}
	}
	return out
}

func initPIDs(l *lab.Lab) []int {
	var pids []int
	for _, h := range l.Hosts {
		pids = append(pids, h.InitPID)
	}
	return pids
}

// TestDownLeavesNothing also covers stale pieces: killed inits and a
// deleted lab.json are cleaned by the next Up and by Down.
func TestDownLeavesNothing(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), dir); os.RemoveAll(dir) })

	l1, err := lab.Up(ctx, lab.Options{Dir: dir, Hosts: 3, Backend: lab.BackendNft})
	if err != nil {
		t.Fatal(err)
	}
	// half-dead lab: one init killed, lab.json gone
	_ = syscall.Kill(l1.Hosts[0].InitPID, syscall.SIGKILL)
	if err := os.Remove(filepath.Join(dir, "lab.json")); err != nil {
		t.Fatal(err)
	}
	l2, err := lab.Up(ctx, lab.Options{Dir: dir, Hosts: 2, Backend: lab.BackendIptablesLegacy})
	if err != nil {
		t.Fatalf("up over a stale lab: %v", err)
	}
	// exactly the new lab's 2 netns, 2 veths and bridge: no switch, no h03
	if left := leftovers(t, l1.ID, nil); len(left) != 5 || strings.Contains(strings.Join(left, " "), "-sw") {
		t.Errorf("after re-up with 2 hosts: %v, want 2 netns, 2 veths, 1 bridge", left)
	}
	for _, pid := range initPIDs(l1) {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !bytes.Contains(b, []byte(") Z")) {
			t.Errorf("init %d of the stale lab still runs", pid)
		}
	}
	labtest.SSH(t, l2, "h02", "sudo -n true")

	// Down without lab.json must still find everything by name.
	if err := os.Remove(filepath.Join(dir, "lab.json")); err != nil {
		t.Fatal(err)
	}
	if err := lab.Down(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, l2.ID, initPIDs(l2)); len(left) > 0 {
		t.Errorf("down left behind: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("down left the lab folder: %v", err)
	}
	if err := lab.Down(ctx, dir); err != nil {
		t.Errorf("second down: %v", err)
	}
}

func TestTwoLabsCoexist(t *testing.T) {
	var (
		wg   sync.WaitGroup
		labs [2]*lab.Lab
	)
	// concurrent Up: the subnet choice must not collide
	for i := range labs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			labs[i] = labtest.Start(t, labtest.Options{Hosts: 1})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a, b := labs[0], labs[1]
	if a.ID == b.ID || a.Subnet4 == b.Subnet4 || a.Bridge == b.Bridge {
		t.Fatalf("labs collide: %s %s %s / %s %s %s", a.ID, a.Subnet4, a.Bridge, b.ID, b.Subnet4, b.Bridge)
	}
	for _, l := range labs {
		if got := strings.TrimSpace(labtest.SSH(t, l, "h01", "hostname")); got != "h01" {
			t.Errorf("lab %s: hostname %q", l.ID, got)
		}
	}
	ctx := ctxT(t, 30*time.Second)
	if err := lab.Down(ctx, a.Dir); err != nil {
		t.Fatal(err)
	}
	labtest.SSH(t, b, "h01", "true")
	if left := leftovers(t, a.ID, initPIDs(a)); len(left) > 0 {
		t.Errorf("down of lab %s left: %v", a.ID, left)
	}
}
