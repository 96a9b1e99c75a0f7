package e2e

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// smallStateDir mounts a 12 MiB tmpfs on the host's /var/lib/lifeline (in
// the host's own mount namespace), so a test can fill it without touching
// the machine's disk.
func smallStateDir(t *testing.T, l *lab.Lab, host string) {
	t.Helper()
	execOn(t, l, host, "mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "lifeline-e2e", "/var/lib/lifeline")
}

// fill writes zeros into the state dir until it is full.
func fill(t *testing.T, l *lab.Lab, host string) {
	t.Helper()
	execOn(t, l, host, "sh", "-c", "dd if=/dev/zero of=/var/lib/lifeline/fill bs=64k 2>/dev/null; df -k /var/lib/lifeline | tail -1")
}

// armedAndLeft applies good.nft and kills lifeline right after the apply:
// the host is left applied with its watchdog armed. It returns the tx id.
func armedAndLeft(t *testing.T, l *lab.Lab, host string, timeout string) string {
	t.Helper()
	cmd, _ := streamUntil(t, l.SSHConfig, host, "good.nft", "apply", "done", "--confirm-timeout="+timeout)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	st := status(t, l.SSHConfig, host)[0]
	if st.State != "applied" {
		t.Fatalf("%s: %+v, want applied", host, st)
	}
	return st.TxID
}

// TestFullStateDir: the host's /var/lib/lifeline fills up while a change
// is applied.
//
// reserve: the watchdog's revert at the deadline still records its
// outcome (the reserve begin kept), so the record, status and the live
// ruleset agree; the next begin is refused, changing nothing, until there
// is space again.
//
// no-space-at-all: abort restores the snapshot but cannot record it: it
// says so, the record stays applied and the watchdog stays armed (never
// disarmed behind an unwritten record). The watchdog then dies and a
// table is added by hand: the next begin refuses (needs-recovery) instead
// of restoring the snapshot over it.
func TestFullStateDir(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, Backend: "nft", InitExe: lifelineBin})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		t.Run("reserve", func(t *testing.T) {
			h := l.Hosts[0]
			smallStateDir(t, l, h.Name)
			before := liveRuleset(t, l, h.Name)
			tx := armedAndLeft(t, l, h.Name, "10s")
			fill(t, l, h.Name)
			if err := waitFor(30*time.Second, func() bool { return status(t, l.SSHConfig, h.Name)[0].State != "applied" }); err != nil {
				t.Fatalf("the watchdog did not record its revert on a full disk: %v", err)
			}
			st := status(t, l.SSHConfig, h.Name)[0]
			if st.TxID != tx || st.State != "reverted" || st.Verified == nil || !*st.Verified || st.Exit != 0 {
				t.Fatalf("status after the revert on a full disk: %+v", st)
			}
			if rec := txRecord(t, l, h.Name, tx); rec.State != "reverted" {
				t.Fatalf("record.json says %s, status says reverted", rec.State)
			}
			if got := liveRuleset(t, l, h.Name); got != before {
				t.Fatalf("not reverted:\n%s", got)
			}
			// no room for a new reserve: refused, nothing changed
			// (--force: past the preflight, which refuses this lockout
			// before it looks at the disk)
			r, _, code := apply(t, l, l.SSHConfig, h.Name, "dropnew.nft", "--force")
			if r.Outcome != "refused" || code == 0 || !strings.Contains(r.Error, "state-write") || !strings.Contains(r.Error, "full") {
				t.Fatalf("apply on a full state dir: %s (exit %d): %s", r.Outcome, code, r.Error)
			}
			if got := liveRuleset(t, l, h.Name); got != before {
				t.Fatalf("a refused apply changed the live ruleset:\n%s", got)
			}
			execOn(t, l, h.Name, "rm", "/var/lib/lifeline/fill")
			if r, _, _ := apply(t, l, l.SSHConfig, h.Name, "good.nft"); r.Outcome != "confirmed" {
				t.Fatalf("apply once there is space: %s: %s", r.Outcome, r.Error)
			}
		})
	}()
	go func() {
		defer wg.Done()
		t.Run("no-space-at-all", func(t *testing.T) {
			h := l.Hosts[1]
			smallStateDir(t, l, h.Name)
			tx := armedAndLeft(t, l, h.Name, "60s")
			execOn(t, l, h.Name, "rm", "-f", "/var/lib/lifeline/reserve")
			fill(t, l, h.Name)
			st := status(t, l.SSHConfig, h.Name, "--abort")[0]
			if st.Exit == 0 || !strings.Contains(st.Error, "state-write") || !strings.Contains(st.Error, "stays armed") {
				t.Fatalf("abort on a full disk: %+v, want a state-write error saying the timer stays armed", st)
			}
			if rec := txRecord(t, l, h.Name, tx); rec.State != "applied" {
				t.Fatalf("record.json says %s after an unrecorded abort", rec.State)
			}
			if !watchdogRunning(t, l, h.Name) {
				t.Fatalf("an abort that could not be recorded disarmed the watchdog")
			}
			if st := status(t, l.SSHConfig, h.Name)[0]; st.State != "applied" || st.TxID != tx {
				t.Fatalf("status after the unrecorded abort: %+v, want what the record says (applied)", st)
			}
			// the watchdog dies, someone fixes things by hand, space is freed
			signalWatchdogs(t, l, h.Name, "KILL")
			execOn(t, l, h.Name, "sh", "-c", "rm /var/lib/lifeline/fill && nft add table inet byhand")
			handEdited := liveRuleset(t, l, h.Name)
			r, _, code := apply(t, l, l.SSHConfig, h.Name, "good.nft")
			if r.Outcome != "refused" || code == 0 || !strings.Contains(r.Error, "needs-recovery") || !strings.Contains(r.Hint, "--abort") {
				t.Fatalf("apply over a tx left applied: %s (exit %d): %s (hint %s)", r.Outcome, code, r.Error, r.Hint)
			}
			if got := liveRuleset(t, l, h.Name); got != handEdited || !strings.Contains(got, "byhand") {
				t.Fatalf("the refused begin touched the hand-edited ruleset:\n%s", got)
			}
			st = status(t, l.SSHConfig, h.Name)[0]
			if !st.NeedsRecovery || st.Exit != 1 {
				t.Fatalf("status: %+v, want needs-recovery and exit 1", st)
			}
		})
	}()
	wg.Wait()
}
