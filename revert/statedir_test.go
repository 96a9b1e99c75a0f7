package revert

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failWrites makes every record write fail with ENOSPC while *on, and
// counts the attempts.
func failWrites(t *testing.T, on *bool) *int {
	t.Helper()
	n := new(int)
	testHookWrite = func(*txRecord) error {
		if *on {
			*n++
			return syscall.ENOSPC
		}
		return nil
	}
	t.Cleanup(func() { testHookWrite = nil })
	return n
}

// The disk fills up after the apply: the reserve the begin kept lets the
// confirm record its steps, and the next begin refuses (changing nothing)
// until there is space again.
func TestStateDirReserve(t *testing.T) {
	h := newHarness(t)
	full := false
	failWrites(t, &full)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	reserve := filepath.Join(h.dir, reserveFile)
	if fi, err := os.Stat(reserve); err != nil || fi.Size() != reserveSize {
		t.Fatalf("no %d-byte reserve after begin: %v", reserveSize, err)
	}
	// the first write of each step fails; the reserve's space lets the
	// retry through
	first := true
	testHookWrite = func(*txRecord) error {
		if first {
			first = false
			return syscall.ENOSPC
		}
		return nil
	}
	h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
	if _, err := os.Stat(reserve); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the reserve was not released to record the confirm: %v", err)
	}
	if !strings.Contains(h.sys.String(), "released the 1024 KiB reserve") {
		t.Fatalf("the release was not logged:\n%s", h.sys.String())
	}
	st := h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateConfirmed)
	_ = st
	// no space for a new reserve: begin refuses before anything
	if err := os.Mkdir(reserve, 0o700); err != nil { // makes the reserve unwritable
		t.Fatal(err)
	}
	rep := h.do(VerbBegin, beginReq("tx2"))
	if code(rep) != CodeStateWrite || !strings.Contains(rep.Error.Message, "nothing was changed") {
		t.Fatalf("begin without room for the reserve: %+v", rep.Error)
	}
	if h.armer.armed() != 0 || h.live() != newRules {
		t.Fatalf("a refused begin armed or changed something")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "tx", "tx2")); err == nil {
		t.Fatalf("a refused begin created a tx folder")
	}
}

// The disk is full for good (reserve used up): no step is announced that
// the record cannot hold, the timer is never disarmed while the record
// says applied, and what the helper reports is what the record says.
func TestStateDirFull(t *testing.T) {
	h := newHarness(t)
	full := false
	n := failWrites(t, &full)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	_ = os.Remove(filepath.Join(h.dir, reserveFile))
	full = true

	// confirm cannot record "confirming": it changes nothing
	rep := h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token})
	if code(rep) != CodeStateWrite || rep.State != StateApplied {
		t.Fatalf("confirm on a full disk: code %q state %s, want state-write, applied", code(rep), rep.State)
	}
	if h.live() != newRules || h.fw.S.Guard == nil || h.armer.armed() != 1 {
		t.Fatalf("a confirm that could not be recorded changed something: guard %v armed %d", h.fw.S.Guard, h.armer.armed())
	}
	// abort restores access (what matters most) but cannot record it: the
	// timer stays armed and the report says what the record says
	rep = h.do(VerbAbort, &Request{TxID: "tx1", Origin: "alice@ws"})
	if code(rep) != CodeStateWrite || rep.State != StateApplied || !strings.Contains(rep.Error.Message, "stays armed") {
		t.Fatalf("abort on a full disk: code %q state %s (%v)", code(rep), rep.State, rep.Error)
	}
	if h.live() != oldRules {
		t.Fatalf("abort on a full disk did not restore the snapshot")
	}
	if h.armer.armed() != 1 {
		t.Fatalf("a revert that could not be recorded disarmed the timer")
	}
	if *n == 0 {
		t.Fatalf("no write was attempted")
	}
	// space again: the timer fires, restores the same snapshot, records it
	full = false
	h.clock.advance(61 * time.Second)
	h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1"}), StateReverted)
	if h.armer.armed() != 0 || h.live() != oldRules {
		t.Fatalf("after the timer: armed %d live %q", h.armer.armed(), h.live())
	}
}

// apply cannot record that it finished: it undoes the swap.
func TestApplyUnrecordedIsUndone(t *testing.T) {
	h := newHarness(t)
	full := false
	failWrites(t, &full)
	h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	_ = os.Remove(filepath.Join(h.dir, reserveFile))
	testHookWrite = func(r *txRecord) error {
		if r.Step == stepApplied {
			return syscall.ENOSPC
		}
		return nil
	}
	rep := h.do(VerbStage, &Request{TxID: "tx1"})
	if code(rep) != CodeStateWrite || rep.State != StateReverted {
		t.Fatalf("apply that cannot be recorded: code %q state %s, want state-write, reverted", code(rep), rep.State)
	}
	if h.live() != oldRules || h.armer.armed() != 0 {
		t.Fatalf("not undone: live %q armed %d", h.live(), h.armer.armed())
	}
}

// The next begin settles an applied tx whose timer is dead or hung: when
// the live ruleset is the snapshot it marks it reverted; otherwise it
// refuses (needs-recovery) and changes nothing; a hung timer counts as dead
// once the deadline is overdueAfter past.
func TestSettleNeverRestoresUnasked(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		code  string
		live  string
	}{
		{"timer dead, live differs (a table added by hand)", func(h *harness) {
			h.armer.kill("tx1")
			h.fw.S.Live[FormatNft] = newRules + "table inet byhand {\n}\n"
		}, CodeNeedsRecovery, newRules + "table inet byhand {\n}\n"},
		{"timer hung past the deadline", func(h *harness) {
			h.clock.advance(60*time.Second + overdueAfter + time.Second)
		}, CodeNeedsRecovery, newRules},
		{"timer alive, deadline just passed: still its job", func(h *harness) {
			h.clock.advance(61 * time.Second)
		}, CodeLockHeld, newRules},
		{"timer dead, live already the snapshot", func(h *harness) {
			h.armer.kill("tx1")
			h.fw.S.Live[FormatNft] = oldRules
			h.fw.S.Guard = nil
		}, "", oldRules},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			tt.setup(h)
			rep := h.do(VerbBegin, beginReq("tx2"))
			if code(rep) != tt.code {
				t.Fatalf("begin: code %q (%v), want %q", code(rep), rep.Error, tt.code)
			}
			if h.live() != tt.live {
				t.Fatalf("live ruleset after begin:\n%s\nwant:\n%s", h.live(), tt.live)
			}
			if tt.code == CodeNeedsRecovery {
				if !strings.Contains(rep.Error.Message, "--abort") || rep.Error.Holder == nil || rep.Error.Holder.TxID != "tx1" {
					t.Fatalf("needs-recovery does not name the tx and the recovery: %+v", rep.Error)
				}
				// abort is the recovery, also of a hung timer
				ab := h.mustOK(h.do(VerbAbort, &Request{TxID: "tx1", Origin: "bob@ws run 2"}), StateReverted)
				if len(ab.Warnings) != 1 || !strings.Contains(ab.Warnings[0], "alice@ws") {
					t.Fatalf("aborting another operator's tx did not warn: %q", ab.Warnings)
				}
				if !strings.Contains(h.sys.String(), "aborted by bob@ws run 2") {
					t.Fatalf("who aborted is not recorded:\n%s", h.sys.String())
				}
				if h.live() != oldRules || h.armer.armed() != 0 {
					t.Fatalf("abort: live %q armed %d", h.live(), h.armer.armed())
				}
			}
			if tt.code == "" {
				h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateReverted)
			}
		})
	}
}

// An upload killed half-way leaves bin/SHA.tmp-*: begin removes the stale
// ones and leaves a fresh one (an upload in flight) alone.
func TestBeginCleansStaleUploads(t *testing.T) {
	h := newHarness(t)
	bin := filepath.Join(h.dir, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(bin, "abc.tmp-1"), filepath.Join(bin, "abc.tmp-2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// the fake clock is the harness's "now"
	if err := os.Chtimes(stale, time.Time{}, h.clock.Now().Add(-uploadStale-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fresh, time.Time{}, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale upload temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("an upload in flight was removed: %v", err)
	}
}

// What the host keeps is bounded by bytes too, not only by count.
func TestPruneByBytes(t *testing.T) {
	dir := t.TempDir()
	st := store{dir}
	if err := st.init(); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 20<<20)
	for i := range 5 {
		id := fmt.Sprintf("tx%d", i)
		if err := st.createTx(id); err != nil {
			t.Fatal(err)
		}
		r := &txRecord{ID: id, State: StateRefused, Created: fakeEpoch.Add(time.Duration(i) * time.Minute)}
		if err := st.save(r); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(st.path(id, rulesetFile), big, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.prune(keepTx, "tx4"); err != nil {
		t.Fatal(err)
	}
	var left []string
	ents, _ := os.ReadDir(st.txRoot())
	for _, e := range ents {
		left = append(left, e.Name())
	}
	// 5 x 20 MiB: the oldest go until at most 64 MiB are left
	if strings.Join(left, ",") != "tx2,tx3,tx4" {
		t.Fatalf("left %v, want tx2,tx3,tx4", left)
	}
}

// A ruleset whose trial load eats more than a third of the confirm
// timeout is refused before anything is armed.
func TestSlowLoadRefused(t *testing.T) {
	h := newHarness(t)
	h.fw.S.ValidateDelay = 300 * time.Millisecond
	req := beginReq("tx1")
	req.Begin.ConfirmTimeout = Duration(600 * time.Millisecond)
	rep := h.do(VerbBegin, req)
	if code(rep) != CodeBadRequest || !strings.Contains(rep.Error.Message, "raise --confirm-timeout") {
		t.Fatalf("begin of a slow ruleset: %+v", rep.Error)
	}
	if h.armer.armed() != 0 {
		t.Fatalf("a refused begin armed a timer")
	}
}
