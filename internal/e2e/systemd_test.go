package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
	"github.com/lifeline-dev/lifeline/wire"
)

// The systemd path of the revert timer: on a host whose PID 1 is systemd
// (a systemd-nspawn container of the lab) the helper arms a transient
// systemd timer outside the SSH session's cgroup, so neither the
// workstation, nor sshd, nor a reboot can leave the host with the change.

// systemdDeadline is the confirm timeout of the systemd scenarios.
const systemdDeadline = 10 * time.Second

// TestSystemdHost runs the three systemd scenarios in order on one systemd
// host (each boot costs seconds): a lockout reverted by the transient unit,
// ssh.service restarted while armed, and a reboot while armed.
func TestSystemdHost(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", Systemd: 1, InitExe: lifelineBin})
	h := l.Hosts[len(l.Hosts)-1]
	if h.Init != lab.InitSystemd {
		t.Fatalf("last lab host %s is not a systemd host: %+v", h.Name, h)
	}
	if out := execOn(t, l, h.Name, "cat", "/proc/1/comm"); strings.TrimSpace(out) != "systemd" {
		t.Fatalf("%s: PID 1 is %q, want systemd", h.Name, out)
	}
	timeout := "--confirm-timeout=" + systemdDeadline.String()

	t.Run("revert-by-transient-unit", func(t *testing.T) {
		before := liveRuleset(t, l, h.Name)
		cmd, sc := streamUntil(t, l.SSHConfig, h.Name, "dropall.nft", "apply", "done", timeout, "--force")
		// Armed: the host's own timer is a transient systemd unit.
		timers := execOn(t, l, h.Name, "systemctl", "list-timers", "--all", "--no-pager", "--no-legend", "lifeline-revert-*")
		if !strings.Contains(timers, "lifeline-revert-") {
			t.Errorf("no lifeline-revert-*.timer while armed; systemctl list-timers:\n%s", timers)
		}
		r := finalResult(t, sc)
		_ = cmd.Wait()
		if r.Outcome != "reverted" {
			t.Fatalf("outcome %s, want reverted: %s %s", r.Outcome, r.Error, r.Hint)
		}
		rec := txRecord(t, l, h.Name, r.TxID)
		if rec.Timer.Kind != "systemd" || !strings.HasPrefix(rec.Timer.Unit, "lifeline-revert-") {
			t.Errorf("tx %s: timer %+v, want a systemd lifeline-revert-* unit", r.TxID, rec.Timer)
		}
		if rec.State != "reverted" {
			t.Errorf("tx %s: record state %s, want reverted", r.TxID, rec.State)
		}
		unit := "lifeline-revert-" + r.TxID + ".service"
		journal := journalOf(t, l, h.Name, unit)
		if !strings.Contains(journal, "Finished "+unit) || !strings.Contains(journal, "revert --tx "+r.TxID) {
			t.Errorf("journal of %s does not show the revert:\n%s", unit, journal)
		}
		if after := liveRuleset(t, l, h.Name); after != before {
			t.Fatalf("live ruleset differs from the snapshot after revert:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
			t.Fatalf("after revert: %v", err)
		}
	})

	t.Run("ssh-restart-while-armed", func(t *testing.T) {
		before := liveRuleset(t, l, h.Name)
		cmd, _ := streamUntil(t, l.SSHConfig, h.Name, "dropall.nft", "apply", "done", timeout, "--force")
		applied := time.Now()
		// Only the host's timer can revert now.
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		execOn(t, l, h.Name, "systemctl", "restart", "ssh.service")
		if state := strings.TrimSpace(execOn(t, l, h.Name, "sh", "-c", "systemctl is-active ssh.service || true")); state != "active" {
			t.Fatalf("ssh.service is %q after the restart, want active", state)
		}
		if time.Since(applied) < systemdDeadline {
			timers := execOn(t, l, h.Name, "systemctl", "list-timers", "--no-pager", "--no-legend", "lifeline-revert-*")
			if !strings.Contains(timers, "lifeline-revert-") {
				t.Errorf("the revert timer is gone after ssh.service was restarted, before the deadline; list-timers:\n%s", timers)
			}
		}
		if err := waitFor(systemdDeadline+5*time.Second-time.Since(applied), func() bool { return liveRuleset(t, l, h.Name) == before }); err != nil {
			t.Fatalf("not reverted by the deadline + 5s after ssh.service was restarted: %v\nlive:\n%s\njournal:\n%s", err, liveRuleset(t, l, h.Name), journalOf(t, l, h.Name, "lifeline-revert-*"))
		}
		if err := waitFor(10*time.Second, func() bool { return armed(t, l, h.Name) == "" }); err != nil {
			t.Fatalf("still armed after the revert: %s", armed(t, l, h.Name))
		}
		if j := journalOf(t, l, h.Name, "lifeline-revert-*"); strings.Count(j, "Finished lifeline-revert-") < 2 {
			t.Errorf("the journal does not show this transaction's revert unit finishing:\n%s", j)
		}
		if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
			t.Fatalf("after revert: %v", err)
		}
	})

	t.Run("reboot-while-armed", func(t *testing.T) {
		before := liveRuleset(t, l, h.Name)
		bootBefore := strings.TrimSpace(execOn(t, l, h.Name, "cat", "/proc/sys/kernel/random/boot_id"))
		// A long deadline: the reboot, not the timer, must end it.
		cmd, _ := streamUntil(t, l.SSHConfig, h.Name, "good.nft", "apply", "done", "--confirm-timeout=60s")
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if live := liveRuleset(t, l, h.Name); !strings.Contains(live, "8080") {
			t.Fatalf("the applied ruleset is not live before the reboot:\n%s", live)
		}
		txID := strings.TrimSpace(execOn(t, l, h.Name, "sh", "-c", `python3 -c '
import glob, json
for p in glob.glob("/var/lib/lifeline/tx/*/record.json"):
    r = json.load(open(p))
    if r.get("state") in ("armed", "applied"):
        print(r["id"])
'`))
		if txID == "" || strings.Contains(txID, "\n") {
			t.Fatalf("want one armed transaction before the reboot, got %q", txID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := time.Now()
		err := l.Reboot(ctx, h.Name)
		cancel()
		if err != nil {
			t.Fatalf("reboot: %v", err)
		}
		t.Logf("%s rebooted in %v", h.Name, time.Since(start).Round(time.Millisecond))
		if boot := strings.TrimSpace(execOn(t, l, h.Name, "cat", "/proc/sys/kernel/random/boot_id")); boot == bootBefore {
			t.Fatalf("boot id %s unchanged by the reboot", boot)
		}
		if after := liveRuleset(t, l, h.Name); after != before {
			t.Fatalf("after the reboot the live ruleset is not the pre-apply one:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// The next contact reports the transaction as reverted: ask the
		// uploaded helper directly, as lifeline's next session does.
		out := execOn(t, l, h.Name, "sh", "-c", `set -e; cd /var/lib/lifeline/bin; for b in *; do echo '{"version":`+strconv.Itoa(wire.ProtocolVersion)+`,"tx_id":"`+txID+`"}' | ./"$b" status; exit; done`)
		var rep struct {
			State string `json:"state"`
			TxID  string `json:"tx_id"`
			Error any    `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("helper status: unreadable report %q: %v", out, err)
		}
		if rep.State != "reverted" || rep.TxID != txID {
			t.Fatalf("helper status after the reboot: tx %s state %s (error %v), want %s reverted\n%s", rep.TxID, rep.State, rep.Error, txID, out)
		}
		if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
			t.Fatalf("after the reboot: %v", err)
		}
	})
}

// execOn runs argv on the host's console and fails the test on error.
func execOn(t *testing.T, l *lab.Lab, host string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, host, argv...)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	return string(out)
}

// journalOf is the host's journal of the units matching pattern.
func journalOf(t *testing.T, l *lab.Lab, host, pattern string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.Journal(ctx, host, pattern)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	return out
}

// hostTxRecord mirrors the fields of the host's record.json the tests read.
type hostTxRecord struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Timer struct {
		Kind string `json:"kind"`
		Unit string `json:"unit"`
	} `json:"timer"`
}

func txRecord(t *testing.T, l *lab.Lab, host, txID string) hostTxRecord {
	t.Helper()
	if txID == "" {
		t.Fatalf("%s: the apply result has no tx id", host)
	}
	out := execOn(t, l, host, "cat", fmt.Sprintf("/var/lib/lifeline/tx/%s/record.json", txID))
	var r hostTxRecord
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%s: record.json of %s: %v\n%s", host, txID, err, out)
	}
	return r
}
