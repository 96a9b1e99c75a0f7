package revert

import "testing"

// TestRestoreLastGood: a confirm keeps the confirmed state; after a change
// made outside lifeline, a restore change puts it back under the guard
// and keeps it only when confirmed; a named tx that did not confirm, or a
// host with no confirmed state, is refused with nothing changed.
func TestRestoreLastGood(t *testing.T) {
	h := newHarness(t)
	restoreReq := func(id, to string) *Request {
		req := beginReq(id)
		req.Begin.Change = Change{Kind: ChangeRestore, Restore: &RestoreChange{To: to}}
		return req
	}
	if rep := h.do(VerbBegin, restoreReq("r0", RestoreLastGood)); code(rep) != CodeSnapshot || h.armer.armed() != 0 {
		t.Fatalf("restore with nothing confirmed: %v, want %s, nothing armed", rep.Error, CodeSnapshot)
	}
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
	good := h.live()

	const broken = "table inet filter { chain input { type filter hook input priority 0; policy drop; } }\n"
	h.fw.S.Live[FormatNft] = broken // by hand, outside lifeline

	if rep := h.do(VerbBegin, restoreReq("r1", "r0")); code(rep) != CodeBadRequest {
		t.Fatalf("restore to a refused tx: %v, want %s", rep.Error, CodeBadRequest)
	}
	rb := h.mustOK(h.do(VerbBegin, restoreReq("r2", RestoreLastGood)), StateArmed)
	st := h.mustOK(h.do(VerbStage, &Request{TxID: "r2"}), StateApplied)
	if h.live() != good || st.Verified == nil || !*st.Verified {
		t.Fatalf("after the restore stage: live %q (want %q) verified %v", h.live(), good, *st.Verified)
	}
	if g := h.fw.S.Guard; g == nil || g.TxID != "r2" {
		t.Fatalf("the restored ruleset is not guarded: %+v", g)
	}
	h.mustOK(h.do(VerbConfirm, &Request{TxID: "r2", Token: rb.Begin.Token}), StateConfirmed)
	if h.live() != good || h.fw.S.Guard != nil {
		t.Fatalf("after confirm: live %q guard %+v", h.live(), h.fw.S.Guard)
	}

	// a restore that is not confirmed goes back to the broken state
	h.fw.S.Live[FormatNft] = broken
	h.mustOK(h.do(VerbBegin, restoreReq("r3", "tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "r3"}), StateApplied)
	h.armer.kill("r3")
	h.mustOK(h.do(VerbRevert, &Request{TxID: "r3"}), StateReverted)
	if h.live() != broken {
		t.Fatalf("an unconfirmed restore left %q, want the state it found", h.live())
	}
}
