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
