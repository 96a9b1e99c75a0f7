package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

type statusDoc []struct {
	Host          string   `json:"host"`
	TxID          string   `json:"tx_id"`
	State         string   `json:"state"`
	TimerAlive    *bool    `json:"timer_alive"`
	Verified      *bool    `json:"verified"`
	Aborted       bool     `json:"aborted"`
	GuardChains   []string `json:"guard_chains"`
	Error         string   `json:"error"`
	Origin        string   `json:"origin"`
	NeedsRecovery bool     `json:"needs_recovery"`
	Overdue       bool     `json:"overdue"`
	Reboot        bool     `json:"reboot"`
	Warnings      []string `json:"warnings"`
	Exit          int      `json:"-"` // status's exit code (every element)
}

func status(t *testing.T, cfg, host string, extra ...string) statusDoc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, append([]string{"-F", cfg, "--json", "status", host}, extra...)...)
	var doc statusDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc) != 1 {
		t.Fatalf("status %s: exit %d: %v\n%s\n%s", host, code, err, stdout, stderr)
	}
	for i := range doc {
		doc[i].Exit = code
	}
	return doc
}

// TestDryRunPersistReboot: --dry-run shows the diff and changes nothing;
// --persist writes the boot config only after the confirm, so a reboot
// keeps a confirmed change; a reboot while armed boots the old config and
// the next contact reports the transaction as reverted.
func TestDryRunPersistReboot(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	for _, h := range l.Hosts {
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			good := rulesetFor(h, "good", false)
			before := liveRuleset(t, l, h.Name)
			r, stderr, code := apply(t, l, l.SSHConfig, h.Name, good, "--dry-run")
			if r.Outcome != "planned" || code != 0 {
				t.Fatalf("dry run: %s exit %d: %s\n%s", r.Outcome, code, r.Error, stderr)
			}
			if !strings.Contains(r.Diff, "+") || !strings.Contains(r.Diff, "8080") {
				t.Fatalf("dry run: the diff does not show the new rules:\n%s", r.Diff)
			}
			if after := liveRuleset(t, l, h.Name); after != before {
				t.Fatalf("dry run changed the ruleset:\n%s", after)
			}

			r, stderr, code = apply(t, l, l.SSHConfig, h.Name, good, goodTimeout, "--persist")
			if r.Outcome != "confirmed" || code != 0 {
				t.Fatalf("persist: %s exit %d: %s\n%s", r.Outcome, code, r.Error, stderr)
			}
			confirmed := liveRuleset(t, l, h.Name)
			reboot(t, l, h.Name)
			if got := liveRuleset(t, l, h.Name); got != confirmed {
				t.Fatalf("after a reboot the persisted ruleset is not live:\nwant:\n%s\ngot:\n%s", confirmed, got)
			}

			// Armed, then the host reboots before anything confirms.
			cmd, _ := streamUntil(t, l.SSHConfig, h.Name, rulesetFor(h, "dropnew", false), "apply", "done", "--confirm-timeout=60s", "--persist", "--force")
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			reboot(t, l, h.Name)
			if got := liveRuleset(t, l, h.Name); got != confirmed {
				t.Fatalf("a reboot while armed did not boot the old config:\n%s", got)
			}
			st := status(t, l.SSHConfig, h.Name)[0]
			if st.State != "reverted" || !st.Reboot {
				t.Fatalf("after a reboot while armed: state %s reboot %v, want reverted (reboot) (%s)", st.State, st.Reboot, st.Error)
			}
			// the persisted boot config came up: verified against it, not
			// against the snapshot, and nothing needs attention
			if st.Verified == nil || !*st.Verified || st.Exit != 0 {
				t.Fatalf("after a reboot while armed: verified %v exit %d, want verified against the boot config, exit 0 (%s)", st.Verified, st.Exit, st.Error)
			}
			if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStatusAbortRecovers: a host whose revert timer died reports
// needs-recovery; `status --abort` reverts it from a fresh connection.
func TestStatusAbortRecovers(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "iptables-nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	before := liveRuleset(t, l, h.Name)
	// good.v4 keeps ssh open, so the host stays reachable while applied.
	cmd, _ := streamUntil(t, l.SSHConfig, h.Name, "good.v4", "apply", "done", "--confirm-timeout=20s")
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	signalWatchdogs(t, l, h.Name, "KILL")
	st := status(t, l.SSHConfig, h.Name)[0]
	if st.State != "applied" || st.TimerAlive == nil || *st.TimerAlive || !st.NeedsRecovery || st.Exit != 1 {
		t.Fatalf("status: %+v, want applied with a dead timer, needs-recovery, exit 1", st)
	}
	if !strings.Contains(st.Origin, "@") || !strings.Contains(st.Origin, " run ") {
		t.Fatalf("status does not say who armed the tx: origin %q", st.Origin)
	}
	st = status(t, l.SSHConfig, h.Name, "--abort")[0]
	if !st.Aborted || st.State != "reverted" || st.Verified == nil || !*st.Verified || st.Exit != 0 {
		t.Fatalf("status --abort: %+v, want aborted, reverted, verified, exit 0", st)
	}
	if got := liveRuleset(t, l, h.Name); got != before {
		t.Fatalf("after abort the live ruleset is not the snapshot:\n%s", got)
	}
}

// reboot crashes a lab host and boots it again.
func reboot(t *testing.T, l interface {
	Crash(context.Context, string) error
	Boot(context.Context, string) error
}, host string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.Crash(ctx, host); err != nil {
		t.Fatalf("crash %s: %v", host, err)
	}
	if err := l.Boot(ctx, host); err != nil {
		t.Fatalf("boot %s: %v", host, err)
	}
}

// TestCheckProbe: a --check probe that fails from the workstation keeps the
// change from being confirmed even though SSH still works: the host reverts.
// One that answers lets it confirm.
func TestCheckProbe(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	before := liveRuleset(t, l, h.Name)
	// good.nft opens 8080, but nothing listens there: the probe fails.
	r, stderr, code := apply(t, l, l.SSHConfig, h.Name, "good.nft", goodTimeout, "--check", "tcp://"+h.Address+":8080")
	if r.Outcome != "reverted" || code != 1 || !strings.Contains(r.Error, "check tcp://") {
		t.Fatalf("failing check: outcome %s exit %d: %s\n%s", r.Outcome, code, r.Error, stderr)
	}
	if got := liveRuleset(t, l, h.Name); got != before {
		t.Fatalf("after a failed check the ruleset is not the snapshot:\n%s", got)
	}
	// the SSH port answers: the probe passes and the change confirms.
	r, stderr, code = apply(t, l, l.SSHConfig, h.Name, "good.nft", goodTimeout, "--check", fmt.Sprintf("tcp://%s:%d", h.Address, h.Port))
	if r.Outcome != "confirmed" || code != 0 {
		t.Fatalf("passing check: outcome %s exit %d: %s\n%s", r.Outcome, code, r.Error, stderr)
	}
}
