package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// execDoc is exec's (and confirm/abort/extend's) --json document.
type execDoc struct {
	OK      bool `json:"ok"`
	Results []struct {
		result
		Command *struct {
			Command string `json:"command"`
			Exit    int    `json:"exit"`
			Stdout  string `json:"stdout"`
			Stderr  string `json:"stderr"`
			Kept    bool   `json:"kept_on_error"`
		} `json:"command"`
	} `json:"results"`
}

func lifelineJSON(t *testing.T, cfg string, args ...string) (execDoc, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, append([]string{"-F", cfg, "--json"}, args...)...)
	var doc execDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Results) != 1 {
		t.Fatalf("lifeline %v: exit %d: %v\nstdout:\n%s\nstderr:\n%s", args, code, err, stdout, stderr)
	}
	return doc, stderr, code
}

// execCommands are, per backend, a command that drops every new SSH
// connection (the current one survives) and harmless changes named by tag.
func execCommands(h *lab.Host) (lockout string, harmless func(tag string) (cmd, mark string)) {
	if h.Backend == "nft" {
		return "nft add table inet t8 && nft 'add chain inet t8 c { type filter hook input priority 0; policy accept; }' && nft add rule inet t8 c tcp dport 22 ct state new drop",
			func(tag string) (string, string) { return "nft add table inet " + tag, "table inet " + tag }
	}
	return "iptables -I INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j DROP",
		func(tag string) (string, string) {
			return "iptables -N " + strings.ToUpper(tag), "chain " + strings.ToUpper(tag) + " {"
		}
}

// TestExecGuarded: a command typed over SSH is a guarded change: one that
// locks out new connections is reverted to the exact snapshot, a non-zero
// exit reverts (unless --keep-on-error), and --no-confirm leaves the host
// armed for `lifeline extend`, `confirm` or `abort` from a later process.
func TestExecGuarded(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	for _, h := range l.Hosts {
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			t.Parallel()
			lockout, harmless := execCommands(h)
			before := liveRuleset(t, l, h.Name)

			doc, stderr, code := lifelineJSON(t, l.SSHConfig, "exec", h.Name, "--window", "12s", "--", lockout)
			r := doc.Results[0]
			if r.Outcome != "reverted" || code != 1 || r.Command == nil || r.Command.Exit != 0 {
				t.Fatalf("lockout: %s exit %d command %+v: %s\n%s", r.Outcome, code, r.Command, r.Error, stderr)
			}
			if got := liveRuleset(t, l, h.Name); got != before {
				t.Fatalf("after the lockout's revert the ruleset is not the snapshot:\nbefore:\n%s\nafter:\n%s", before, got)
			}
			if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
				t.Fatalf("ssh after the revert: %v", err)
			}

			doc, _, code = lifelineJSON(t, l.SSHConfig, "exec", h.Name, "--", "echo out; echo err >&2; exit 3")
			r = doc.Results[0]
			if r.Outcome != "reverted" || code != 1 || r.Command.Exit != 3 || r.Command.Stdout != "out\n" || r.Command.Stderr != "err\n" || !strings.Contains(r.Error, "exited 3") {
				t.Fatalf("exit 3: %s exit %d %+v: %s", r.Outcome, code, r.Command, r.Error)
			}

			cmd, mark := harmless("keep1")
			doc, _, code = lifelineJSON(t, l.SSHConfig, "exec", h.Name, "--keep-on-error", "--", cmd+"; exit 3")
			r = doc.Results[0]
			if r.Outcome != "confirmed" || code != 0 || r.Command.Exit != 3 || !r.Command.Kept {
				t.Fatalf("--keep-on-error: %s exit %d %+v: %s", r.Outcome, code, r.Command, r.Error)
			}
			if !strings.Contains(liveRuleset(t, l, h.Name), mark) {
				t.Fatalf("the kept change %q is not live (command %+v):\n%s", mark, r.Command, liveRuleset(t, l, h.Name))
			}

			// --no-confirm, then extend and confirm from other processes
			cmd, mark = harmless("keep2")
			doc, _, code = lifelineJSON(t, l.SSHConfig, "exec", h.Name, "--no-confirm", "--window", "30s", "--", cmd)
			r = doc.Results[0]
			if r.Outcome != "armed" || code != 0 {
				t.Fatalf("--no-confirm: %s exit %d: %s", r.Outcome, code, r.Error)
			}
			armedTx, firstDeadline := r.TxID, r.Deadline
			if _, _, code := lifelineJSON(t, l.SSHConfig, "confirm", h.Name, "--tx", "not-"+armedTx); code == 0 {
				t.Fatalf("confirm with a wrong tx id succeeded")
			}
			doc, _, code = lifelineJSON(t, l.SSHConfig, "extend", h.Name, "--by", "3m")
			if r = doc.Results[0]; r.Outcome != "armed" || code != 0 || !r.Deadline.After(firstDeadline.Add(2*time.Minute)) {
				t.Fatalf("extend: %s exit %d deadline %s (was %s): %s", r.Outcome, code, r.Deadline, firstDeadline, r.Error)
			}
			if st := statusDeadline(t, l.SSHConfig, h.Name); !st.Equal(r.Deadline) {
				t.Fatalf("status deadline %s, want the extended %s", st, r.Deadline)
			}
			time.Sleep(31 * time.Second) // past the first deadline: the old timer must do nothing
			if !strings.Contains(liveRuleset(t, l, h.Name), mark) {
				t.Fatalf("reverted at the old deadline although extended")
			}
			doc, _, code = lifelineJSON(t, l.SSHConfig, "confirm", h.Name)
			if r = doc.Results[0]; r.Outcome != "confirmed" || code != 0 || r.TxID != armedTx {
				t.Fatalf("confirm: %s exit %d tx %s: %s", r.Outcome, code, r.TxID, r.Error)
			}
			if st := status(t, l.SSHConfig, h.Name); st[0].State != "confirmed" || !strings.Contains(liveRuleset(t, l, h.Name), mark) {
				t.Fatalf("after confirm: %s", st[0].State)
			}
			if _, _, code := lifelineJSON(t, l.SSHConfig, "confirm", h.Name); code == 0 {
				t.Fatalf("a second confirm (nothing kept) succeeded")
			}

			// --no-confirm, then abort
			mid := liveRuleset(t, l, h.Name)
			cmd, mark = harmless("gone3")
			if doc, _, _ = lifelineJSON(t, l.SSHConfig, "exec", h.Name, "--no-confirm", "--", cmd); doc.Results[0].Outcome != "armed" {
				t.Fatalf("--no-confirm: %+v", doc.Results[0])
			}
			doc, _, code = lifelineJSON(t, l.SSHConfig, "abort", h.Name)
			if r = doc.Results[0]; r.Outcome != "reverted" || code != 0 {
				t.Fatalf("abort: %s exit %d: %s", r.Outcome, code, r.Error)
			}
			if got := liveRuleset(t, l, h.Name); got != mid || strings.Contains(got, mark) {
				t.Fatalf("after abort the ruleset is not the snapshot:\nwant:\n%s\ngot:\n%s", mid, got)
			}
		})
	}
}

// statusDeadline is the deadline `lifeline status` reports for host.
func statusDeadline(t *testing.T, cfg, host string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, "-F", cfg, "--json", "status", host)
	var doc []struct {
		Deadline time.Time `json:"deadline"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc) != 1 {
		t.Fatalf("status: exit %d %v\n%s\n%s", code, err, stdout, stderr)
	}
	return doc[0].Deadline
}

// TestExecProtectedSSHDConfig: the classic lockout that is not a firewall
// rule: sshd moved to another port. With --protect sshd_config and an
// --on-revert that restarts sshd, the host puts the file back and sshd on
// its port, both when the fresh confirm fails (lifeline aborts over the
// first connection) and when nobody confirms at all (the timer reverts).
func TestExecProtectedSSHDConfig(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	// the lab's init restarts sshd on SIGUSR1 (stop) + SIGUSR2 (start)
	const restart = "kill -USR1 1 && sleep 0.5 && kill -USR2 1"
	const moveSSHD = "sed -i 's/^Port .*/Port 2200/' /etc/ssh/sshd_config && " + restart
	for i, h := range l.Hosts {
		noConfirm := i == 1
		t.Run(h.Name+map[bool]string{false: "-confirm-fails", true: "-nobody-confirms"}[noConfirm], func(t *testing.T) {
			t.Parallel()
			cfgBefore := execOn(t, l, h.Name, "cat", "/etc/ssh/sshd_config")
			fwBefore := liveRuleset(t, l, h.Name)
			_, harmless := execCommands(h)
			tag, _ := harmless("t9")
			args := []string{"exec", h.Name, "--window", "15s", "--protect", "/etc/ssh/sshd_config", "--protect", "/etc/lifeline-e2e.new",
				"--on-revert", restart, "--on-revert", "echo reverted > /etc/lifeline-e2e.onrevert"}
			if noConfirm {
				args = append(args, "--no-confirm")
			}
			args = append(args, "--", moveSSHD+" && echo new > /etc/lifeline-e2e.new && "+tag)
			doc, stderr, _ := lifelineJSON(t, l.SSHConfig, args...)
			r := doc.Results[0]
			want := map[bool]string{false: "reverted", true: "armed"}[noConfirm]
			if r.Outcome != want {
				t.Fatalf("exec: %s, want %s: %s\n%s", r.Outcome, want, r.Error, stderr)
			}
			if noConfirm {
				if err := sshWorks(t, l.SSHConfig, h.Name); err == nil {
					t.Fatalf("sshd moved to port 2200, yet a fresh ssh to its port works: the test proves nothing")
				}
			}
			if err := waitFor(40*time.Second, func() bool { return sshWorks(t, l.SSHConfig, h.Name) == nil }); err != nil {
				t.Fatalf("no fresh ssh within the window + 25 s: %v", err)
			}
			if got := execOn(t, l, h.Name, "cat", "/etc/ssh/sshd_config"); got != cfgBefore {
				t.Fatalf("sshd_config not restored:\n%s", got)
			}
			if out := execOn(t, l, h.Name, "sh", "-c", "test ! -e /etc/lifeline-e2e.new && cat /etc/lifeline-e2e.onrevert"); out != "reverted\n" {
				t.Fatalf("the new file survived, or the on-revert command did not run: %q", out)
			}
			if got := liveRuleset(t, l, h.Name); got != fwBefore {
				t.Fatalf("firewall not restored:\n%s", got)
			}
		})
	}
}

// TestExecFleet: exec over 10 hosts where the command locks out 2 of them:
// 8 confirmed, 2 reverted, a failing exit and the JSON says which; with a
// canary batch and --max-fail 0, a locked-out canary stops the rollout and
// the other 9 are skipped and untouched.
func TestExecFleet(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 10, Backend: "nft", InitExe: lifelineBin})
	// iptables-nft's own table drops new SSH even on an nft host
	const lockout = "iptables -I INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j DROP"
	run := func(args ...string) (execDoc, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		stdout, stderr, code := cli(t, ctx, append([]string{"-i", l.Inventory, "--json", "exec", "all"}, args...)...)
		var doc execDoc
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Results) != len(l.Hosts) {
			t.Fatalf("exec all: exit %d: %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
		}
		return doc, stderr, code
	}
	bad := map[string]bool{"h03": true, "h07": true}
	doc, stderr, code := run("--window", "12s", "--", `case "$(hostname)" in h03|h07) `+lockout+`;; esac`)
	if code != 1 || doc.OK {
		t.Fatalf("exit %d ok=%v, want a failure\n%s", code, doc.OK, stderr)
	}
	for _, r := range doc.Results {
		want := "confirmed"
		if bad[r.Host] {
			want = "reverted"
		}
		if r.Outcome != want || r.Command == nil || r.Command.Exit != 0 {
			t.Errorf("%s: %s (command %+v), want %s: %s", r.Host, r.Outcome, r.Command, want, r.Error)
		}
		if bad[r.Host] && !strings.Contains(r.Error, "fresh connection") {
			t.Errorf("%s: the error does not say why: %s", r.Host, r.Error)
		}
	}
	before := map[string]string{}
	for _, h := range l.Hosts[1:] {
		before[h.Name] = liveRuleset(t, l, h.Name)
	}
	doc, stderr, code = run("--window", "12s", "--serial", "1,100%", "--max-fail", "0", "--",
		`case "$(hostname)" in h01) `+lockout+`;; esac; iptables -N TOUCHED`)
	if code != 1 {
		t.Fatalf("canary locked out: exit %d, want 1\n%s", code, stderr)
	}
	for _, r := range doc.Results {
		want := "skipped"
		if r.Host == "h01" {
			want = "reverted"
		}
		if r.Outcome != want {
			t.Errorf("canary run: %s: %s, want %s (%s)", r.Host, r.Outcome, want, r.Error)
		}
	}
	for _, h := range l.Hosts[1:] {
		if got := liveRuleset(t, l, h.Name); got != before[h.Name] {
			t.Errorf("skipped host %s was changed:\n%s", h.Name, got)
		}
	}
}
