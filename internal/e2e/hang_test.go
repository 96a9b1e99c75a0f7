package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestBoundedWhenTheLinkGoesSilent: right after the apply, the host's link
// goes silent for 40s (a cut cable: no RST, no ICMP). The fresh confirm
// fails, the abort over the first connection gets no answer, and the host
// reverts by its own timer at the 8s deadline. lifeline must not hang on
// the dead first connection until the link comes back (or TCP gives up):
// it keeps looking with fresh connections until the deadline plus
// --revert-grace, then reports unknown, naming the host's own revert; once
// the link is back, status shows the host reverted.
//
// In parallel, on another host: the link is out for 6s just as the confirm
// connects (an sshd restart, a flapping uplink). The failed fresh
// connection must be retried, and the good change confirmed.
func TestBoundedWhenTheLinkGoesSilent(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, Backend: "nft", InitExe: lifelineBin})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		t.Run("silent-link", func(t *testing.T) {
			h := l.Hosts[0]
			before := liveRuleset(t, l, h.Name)
			cmd, sc := streamUntil(t, l.SSHConfig, h.Name, "good.nft", "apply", "done", "--confirm-timeout=8s", "--revert-grace=10s")
			cut := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := l.SetLink(ctx, h.Name, false); err != nil {
				t.Fatal(err)
			}
			up := make(chan struct{})
			restore := time.AfterFunc(40*time.Second, func() {
				defer close(up)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := l.SetLink(ctx, h.Name, true); err != nil {
					t.Errorf("link up: %v", err)
				}
			})
			defer func() {
				if restore.Stop() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = l.SetLink(ctx, h.Name, true)
				}
			}()
			r := finalResult(t, sc)
			_ = cmd.Wait()
			took := time.Since(cut)
			// bound: the 8s deadline + 10s grace + one look in flight
			// (5s connect timeout); blocking on the first connection
			// lasted until the link came back at 40s
			if took > 30*time.Second {
				t.Fatalf("reported %s after %s: it waited on a dead connection", r.Outcome, took.Round(time.Second))
			}
			if r.Outcome != "unknown" || !strings.Contains(r.Hint, "restores its snapshot by itself") {
				t.Fatalf("outcome %s (hint %q), want unknown naming the host's own revert: %s", r.Outcome, r.Hint, r.Error)
			}
			<-up
			if err := waitFor(20*time.Second, func() bool { return sshWorks(t, l.SSHConfig, h.Name) == nil }); err != nil {
				t.Fatalf("ssh after the link came back: %v", err)
			}
			st := status(t, l.SSHConfig, h.Name)[0]
			if st.TxID != r.TxID || st.State != "reverted" || st.Verified == nil || !*st.Verified {
				t.Fatalf("status after the link came back: %+v, want tx %s reverted and verified", st, r.TxID)
			}
			if got := liveRuleset(t, l, h.Name); got != before {
				t.Fatalf("the host did not revert to its snapshot:\n%s", got)
			}
		})
	}()
	go func() {
		defer wg.Done()
		t.Run("brief-outage", func(t *testing.T) {
			h := l.Hosts[1]
			cmd, sc := streamUntil(t, l.SSHConfig, h.Name, "good.nft", "apply", "done", "--confirm-timeout=20s")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := l.SetLink(ctx, h.Name, false); err != nil {
				t.Fatal(err)
			}
			time.Sleep(6 * time.Second) // longer than the 5s ConnectTimeout
			if err := l.SetLink(ctx, h.Name, true); err != nil {
				t.Fatal(err)
			}
			r := finalResult(t, sc)
			_ = cmd.Wait()
			if r.Outcome != "confirmed" {
				t.Fatalf("outcome %s, want confirmed after one failed fresh connection: %s", r.Outcome, r.Error)
			}
			if r.Connections < 3 {
				t.Fatalf("%d ssh connections: the failed fresh connection was not retried", r.Connections)
			}
		})
	}()
	wg.Wait()
}

// TestHungWatchdog: the watchdog is SIGSTOPped after a lock-out apply. It is
// alive but does nothing: the kernel guard lets the operator back in after
// the deadline, the apply reports needs-recovery, status says so (exit 1)
// once the deadline is overdue, a new apply is refused needs-recovery
// naming the recovery (not lock-held forever), and status --abort recovers.
func TestHungWatchdog(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	host := l.Hosts[0].Name
	before := liveRuleset(t, l, host)
	cmd, sc := streamUntil(t, l.SSHConfig, host, "dropall.nft", "begin", "done", "--confirm-timeout=8s", "--revert-grace=20s", "--force")
	signalWatchdogs(t, l, host, "STOP")
	r := finalResult(t, sc)
	_ = cmd.Wait()
	if r.Outcome != "needs-recovery" || !strings.Contains(r.Error, "hung") {
		t.Fatalf("outcome %s, want needs-recovery: %s", r.Outcome, r.Error)
	}
	var st statusDoc
	if err := waitFor(40*time.Second, func() bool { st = status(t, l.SSHConfig, host); return st[0].NeedsRecovery }); err != nil {
		t.Fatalf("status never said needs-recovery for a hung watchdog: %+v", st)
	}
	if st[0].Exit != 1 || !st[0].Overdue || st[0].State != "applied" {
		t.Fatalf("status of a hung watchdog: %+v, want applied, overdue, exit 1", st[0])
	}
	r2, _, code := apply(t, l, l.SSHConfig, host, "good.nft")
	if r2.Outcome != "refused" || code == 0 || !strings.Contains(r2.Error, "needs-recovery") || !strings.Contains(r2.Hint, "status HOST --abort") {
		t.Fatalf("apply over a hung watchdog: %s: %s (hint %s)", r2.Outcome, r2.Error, r2.Hint)
	}
	ab := status(t, l.SSHConfig, host, "--abort")[0]
	if !ab.Aborted || ab.State != "reverted" || ab.Verified == nil || !*ab.Verified {
		t.Fatalf("status --abort of a hung watchdog: %+v", ab)
	}
	if got := liveRuleset(t, l, host); got != before {
		t.Fatalf("abort did not restore the snapshot:\n%s", got)
	}
	if watchdogRunning(t, l, host) {
		t.Fatalf("the hung watchdog survived the abort")
	}
	if r3, _, _ := apply(t, l, l.SSHConfig, host, "good.nft"); r3.Outcome != "confirmed" {
		t.Fatalf("apply after the recovery: %s: %s", r3.Outcome, r3.Error)
	}
}
