package revert

import (
	"testing"
	"time"
)

// TestExtend: a new deadline re-arms the timer (the new one is armed before
// the old one goes) and refreshes the guard; a timer of an older
// generation that still fires does nothing; refusals change nothing.
func TestExtend(t *testing.T) {
	h := newHarness(t)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	ext := func(token string, d time.Duration) *Report {
		return h.do(VerbExtend, &Request{TxID: "tx1", Token: token, Origin: "alice@ws", Extend: &ExtendArgs{ConfirmTimeout: Duration(d)}})
	}
	for _, tc := range []struct {
		name string
		rep  *Report
		code string
	}{
		{"wrong token", ext("00", time.Hour), CodeBadToken},
		{"no payload", h.do(VerbExtend, &Request{TxID: "tx1", Token: b.Begin.Token}), CodeBadRequest},
		{"zero timeout", ext(b.Begin.Token, 0), CodeBadRequest},
		{"above 24h", ext(b.Begin.Token, 25*time.Hour), CodeBadRequest},
	} {
		if code(tc.rep) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, tc.rep.Error, tc.code)
		}
		if !tc.rep.Deadline.IsZero() && !tc.rep.Deadline.Equal(b.Deadline) {
			t.Errorf("%s: deadline moved to %s", tc.name, tc.rep.Deadline)
		}
	}
	e := h.mustOK(ext(b.Begin.Token, time.Hour), StateApplied)
	if !e.Deadline.After(b.Deadline.Add(50 * time.Minute)) {
		t.Fatalf("deadline %s after extend, was %s", e.Deadline, b.Deadline)
	}
	if e.Timer == b.Timer || h.armer.armed() != 1 {
		t.Fatalf("timer %s (was %s), %d armed: want one new timer", e.Timer, b.Timer, h.armer.armed())
	}
	if g := h.fw.S.Guard; g == nil || !g.Deadline.Equal(e.Deadline) {
		t.Fatalf("guard %+v, want it moved to %s", g, e.Deadline)
	}
	// the old timer fires anyway (its disarm was lost): nothing happens
	h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1", TimerGen: 0}), StateApplied)
	if h.live() != newRules {
		t.Fatalf("a stale timer changed the live ruleset")
	}
	// the current one reverts
	h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1", TimerGen: 1}), StateReverted)
	if h.live() != oldRules || h.fw.S.Guard != nil {
		t.Fatalf("after the revert: live %s, guard %+v", name(h.live()), h.fw.S.Guard)
	}
	if rep := ext(b.Begin.Token, time.Hour); code(rep) != CodeTooLate {
		t.Errorf("extend after the revert: %v, want %s", rep.Error, CodeTooLate)
	}
}

// TestGuardedChange: the host side of a change that is not a ruleset: stage
// installs only the guard (no Apply), confirm removes it and keeps what
// the operator changed meanwhile; a revert restores the snapshot.
func TestGuardedChange(t *testing.T) {
	for _, confirm := range []bool{true, false} {
		h := newHarness(t)
		req := beginReq("tx1")
		req.Begin.Change = Change{Kind: ChangeGuarded}
		b := h.mustOK(h.do(VerbBegin, req), StateArmed)
		h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
		if g := h.fw.S.Guard; g == nil || g.TxID != "tx1" || h.live() != oldRules {
			t.Fatalf("after stage: guard %+v, live %s: want only the guard", g, name(h.live()))
		}
		h.fw.S.Live[FormatNft] = newRules // the operator's command
		if confirm {
			h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
			if h.live() != newRules || h.fw.S.Guard != nil {
				t.Fatalf("after confirm: live %s, guard %+v: want the operator's change, no guard", name(h.live()), h.fw.S.Guard)
			}
		} else {
			h.armer.kill("tx1")
			h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1"}), StateReverted)
			if h.live() != oldRules || h.fw.S.Guard != nil {
				t.Fatalf("after revert: live %s, guard %+v: want the snapshot", name(h.live()), h.fw.S.Guard)
			}
		}
		if n := h.fw.S.Calls["Apply"] + h.fw.S.Calls["Validate"] + h.fw.S.Calls["Persist"]; n != 0 {
			t.Errorf("a guarded change ran Apply/Validate/Persist: %v", h.fw.S.Calls)
		}
	}
}

// TestExtendRacingTheDeadline: found by the model (model/lifeline.pml).
// The old guard opens the operator's path at the old deadline; if an extend
// let the transaction live on past it with that guard open, a fresh
// connection let in by the guard would "prove" a ruleset that locks
// everyone out, and its confirm would remove the guard. So: an extend
// whose guard cannot be moved is undone; one whose old deadline passes
// while it moves the guard leaves a transaction that can no longer be
// confirmed (the confirm reverts it).
func TestExtendRacingTheDeadline(t *testing.T) {
	t.Run("guard cannot be moved", func(t *testing.T) {
		h := newHarness(t)
		b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
		h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
		h.fw.S.FailGuards = 1
		rep := h.do(VerbExtend, &Request{TxID: "tx1", Token: b.Begin.Token, Extend: &ExtendArgs{ConfirmTimeout: Duration(time.Hour)}})
		if rep.Error == nil || !rep.Deadline.Equal(b.Deadline) || h.armer.armed() != 1 {
			t.Fatalf("extend with a failing guard move: %v, deadline %s (was %s), %d timers: want refused, unchanged, one timer", rep.Error, rep.Deadline, b.Deadline, h.armer.armed())
		}
		st := h.do(VerbStatus, &Request{TxID: "tx1"})
		if !st.Deadline.Equal(b.Deadline) {
			t.Fatalf("the record says %s, want the old deadline %s", st.Deadline, b.Deadline)
		}
	})
	t.Run("old deadline passes while the guard moves", func(t *testing.T) {
		h := newHarness(t)
		b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
		h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
		h.fw.Hook = func(m string) {
			if m == "RefreshGuard" {
				h.clock.advance(61 * time.Second) // past the old 60 s deadline
			}
		}
		e := h.mustOK(h.do(VerbExtend, &Request{TxID: "tx1", Token: b.Begin.Token, Extend: &ExtendArgs{ConfirmTimeout: Duration(time.Hour)}}), StateApplied)
		h.fw.Hook = nil
		if len(e.Warnings) == 0 {
			t.Errorf("no warning that the tx can no longer be confirmed")
		}
		rep := h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token})
		if code(rep) != CodeTooLate || rep.State != StateReverted || h.live() != oldRules {
			t.Fatalf("confirm after the guard was open: %v %s, live %s: want too-late, reverted to the snapshot", rep.Error, rep.State, name(h.live()))
		}
	})
}

// TestExtendCrashBeforeTheGuardMoved: the helper dies after recording the
// later deadline and before moving the guard (found by the model): the
// old guard will open at the old deadline, so confirm is refused and
// reverts, and the timer still reverts at the new deadline.
func TestExtendCrashBeforeTheGuardMoved(t *testing.T) {
	h := newHarness(t)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	h.fw.Hook = func(m string) {
		if m == "RefreshGuard" {
			panic(crashSignal{m})
		}
	}
	if died := runCrashing(func() {
		h.do(VerbExtend, &Request{TxID: "tx1", Token: b.Begin.Token, Extend: &ExtendArgs{ConfirmTimeout: Duration(time.Hour)}})
	}); !died {
		t.Fatal("the crash point was not reached")
	}
	h.fw.Hook = nil
	rep := h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token})
	if code(rep) != CodeTooLate || rep.State != StateReverted || h.live() != oldRules {
		t.Fatalf("confirm after a crashed extend: %v %s, live %s: want too-late, reverted", rep.Error, rep.State, name(h.live()))
	}
}
