package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// tmuxShell drives `lifeline shell` on a real terminal: a tmux server of
// its own (its own socket), one session, the lifeline process in it.
type tmuxShell struct {
	t      *testing.T
	socket string
	name   string
}

func startTmuxShell(t *testing.T, args ...string) *tmuxShell {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is needed to drive `lifeline shell` on a terminal: apt-get install tmux")
	}
	ts := &tmuxShell{t: t, socket: fmt.Sprintf("lle2e-%d-%d", os.Getpid(), time.Now().UnixNano()), name: "s"}
	cmdline := lifelineBin
	for _, a := range args {
		cmdline += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmdline += "; echo LIFELINE-EXIT=$?; sleep 600"
	ts.tmux("new-session", "-d", "-s", ts.name, "-x", "160", "-y", "50",
		"-e", "LIFELINE_HELPER_"+strings.ToUpper(runtime.GOARCH)+"="+helperBin,
		"-e", "XDG_STATE_HOME="+stateDir(t), "-e", "TERM=xterm", "sh", "-c", cmdline)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", ts.socket, "kill-server").Run() })
	return ts
}

func (ts *tmuxShell) tmux(args ...string) string {
	ts.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", ts.socket}, args...)...).CombinedOutput()
	if err != nil {
		ts.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (ts *tmuxShell) send(line string) { ts.tmux("send-keys", "-t", ts.name, "-l", line+"\r") }

func (ts *tmuxShell) screen() string {
	return ts.tmux("capture-pane", "-p", "-J", "-t", ts.name, "-S", "-500")
}

// waitScreen waits until the terminal shows want.
func (ts *tmuxShell) waitScreen(limit time.Duration, want string) {
	ts.t.Helper()
	if err := waitFor(limit, func() bool { return strings.Contains(ts.screen(), want) }); err != nil {
		ts.t.Fatalf("the terminal does not show %q within %s:\n%s", want, limit, ts.screen())
	}
}

// TestShellGuarded: an interactive shell whose operator locks everyone out
// and is then cut off (the lifeline process killed with its terminal) is
// reverted by the host at the end of its window, exactly to the snapshot,
// after the heartbeat warning showed in the session; a harmless change
// kept with --yes is confirmed, named at exit, and leaves nothing armed.
func TestShellGuarded(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	for _, h := range l.Hosts {
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			t.Parallel()
			sudo := ""
			if h.User != "root" {
				sudo = "sudo "
			}
			before := liveRuleset(t, l, h.Name)

			// 1. locked out, then cut off
			ts := startTmuxShell(t, "-F", l.SSHConfig, "shell", h.Name, "--window", "15s", "--heartbeat", "5s")
			ts.send("echo READY-$((40+2))")
			ts.waitScreen(30*time.Second, "READY-42")
			lockout := sudo + "iptables -I INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j DROP"
			if h.Backend == "nft" {
				lockout = "nft add table inet t5 && nft 'add chain inet t5 c { type filter hook input priority 0; policy accept; }' && nft add rule inet t5 c tcp dport 22 ct state new drop"
			}
			ts.send(lockout + " && echo LOCKED-$((1+1))")
			ts.waitScreen(10*time.Second, "LOCKED-2")
			ts.waitScreen(12*time.Second, "new SSH connections to "+h.Name+" are failing")
			ts.waitScreen(6*time.Second, "changed on "+h.Name+" since the shell began: the firewall: +")
			// a confirm from elsewhere is refused while new connections fail
			if _, stderr, code := lifelineJSON(t, l.SSHConfig, "confirm", h.Name); code == 0 {
				t.Fatalf("confirm succeeded while the heartbeats fail\n%s", stderr)
			}
			cut := time.Now()
			ts.tmux("kill-server") // the terminal and lifeline with it: the operator is gone
			if err := waitFor(20*time.Second, func() bool { return sshWorks(t, l.SSHConfig, h.Name) == nil }); err != nil {
				t.Fatalf("no fresh ssh within the window + 5 s after the operator was cut off: %v", err)
			}
			t.Logf("reachable again %s after the cut", time.Since(cut).Round(time.Second))
			if got := liveRuleset(t, l, h.Name); got != before {
				t.Fatalf("after the revert the ruleset is not the snapshot:\nbefore:\n%s\nafter:\n%s", before, got)
			}
			if st := status(t, l.SSHConfig, h.Name); st[0].State != "reverted" {
				t.Fatalf("host says %s, want reverted", st[0].State)
			}

			// 2. a harmless change, kept with --yes
			mark, check := sudo+"iptables -N SHELLKEEP", "chain SHELLKEEP"
			if h.Backend == "nft" {
				mark, check = "nft add table inet shellkeep", "table inet shellkeep"
			}
			ts = startTmuxShell(t, "-F", l.SSHConfig, "shell", h.Name, "--window", "20s", "--heartbeat", "5s", "--yes")
			ts.send("echo READY-$((40+3))")
			ts.waitScreen(30*time.Second, "READY-43")
			ts.send(mark + " && exit")
			ts.waitScreen(40*time.Second, "LIFELINE-EXIT=")
			scr := ts.screen()
			if !strings.Contains(scr, "LIFELINE-EXIT=0") || !strings.Contains(scr, ": confirmed (tx") || !strings.Contains(scr, map[bool]string{true: "table inet shellkeep", false: "+:SHELLKEEP"}[h.Backend == "nft"]) {
				t.Fatalf("want the change named, confirmed, exit 0:\n%s", scr)
			}
			if !strings.Contains(liveRuleset(t, l, h.Name), check) {
				t.Fatalf("the kept change is not live")
			}
			if st := status(t, l.SSHConfig, h.Name); st[0].State != "confirmed" {
				t.Fatalf("host says %s after --yes, want confirmed (nothing armed)", st[0].State)
			}

			// 3. sshd moved to another port, protected: cut off, it comes back
			cfgBefore := execOn(t, l, h.Name, "cat", "/etc/ssh/sshd_config")
			const restart = "kill -USR1 1 && sleep 0.5 && kill -USR2 1"
			ts = startTmuxShell(t, "-F", l.SSHConfig, "shell", h.Name, "--window", "15s", "--heartbeat", "5s",
				"--protect", "/etc/ssh/sshd_config", "--on-revert", restart)
			ts.send("echo READY-$((40+4))")
			ts.waitScreen(30*time.Second, "READY-44")
			ts.send(sudo + "sh -c \"sed -i 's/^Port .*/Port 2200/' /etc/ssh/sshd_config && " + restart + "\" && echo MOVED-$((1+1))")
			ts.waitScreen(10*time.Second, "MOVED-2")
			ts.waitScreen(11*time.Second, "new SSH connections to "+h.Name+" are failing") // within 2 heartbeats
			ts.tmux("kill-server")
			if err := waitFor(30*time.Second, func() bool { return sshWorks(t, l.SSHConfig, h.Name) == nil }); err != nil {
				t.Fatalf("sshd not back on its port within the window + 15 s: %v", err)
			}
			if got := execOn(t, l, h.Name, "cat", "/etc/ssh/sshd_config"); got != cfgBefore {
				t.Fatalf("sshd_config not restored:\n%s", got)
			}
		})
	}
}
