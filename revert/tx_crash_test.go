package revert

import (
	"strings"
	"testing"
	"time"
)

// crashSignal is panicked by a hook to model the helper dying right there:
// the deferred unlock runs like the kernel dropping a dead process's flock.
type crashSignal struct{ point string }

// TestCrashPoints kills the helper at each point of begin → apply →
// confirm (and of the timer's revert), then lets the world go on in two
// ways — the revert timer fires if it is still alive, or the host reboots —
// and checks that the next status/begin end the tx in a terminal state
// with the live ruleset that state promises. It is the executable form of
// the crash table in tx.go.
func TestCrashPoints(t *testing.T) {
	const (
		none      = StateNone
		reverted  = StateReverted
		confirmed = StateConfirmed
	)
	tests := []struct {
		verb, point string
		timerState  State // after the timer fires (if alive) and a new begin
		timerLive   string
		rebootState State // after a reboot and a new begin
		rebootLive  string
	}{
		{VerbBegin, "fw:Detect", none, oldRules, none, oldRules},
		{VerbBegin, "fw:Validate", none, oldRules, none, oldRules},
		{VerbBegin, "fw:Snapshot", none, oldRules, none, oldRules},
		{VerbBegin, "fw:ValidateSnapshot", none, oldRules, none, oldRules},
		{VerbBegin, "save:armed/arming", reverted, oldRules, reverted, oldRules},
		{VerbBegin, "arm", reverted, oldRules, reverted, oldRules},
		{VerbBegin, "save:armed/armed", reverted, oldRules, reverted, oldRules},
		{VerbStage, "save:applied/applying", reverted, oldRules, reverted, oldRules},
		{VerbStage, "fw:Apply", reverted, oldRules, reverted, oldRules},
		{VerbStage, "fw:Contains", reverted, oldRules, reverted, oldRules},
		{VerbStage, "save:applied/applied", reverted, oldRules, reverted, oldRules},
		{VerbConfirm, "save:applied/confirming", reverted, oldRules, reverted, oldRules},
		{VerbExtend, "arm", reverted, oldRules, reverted, oldRules},
		{VerbExtend, "save:applied/applied", reverted, oldRules, reverted, oldRules},
		{VerbExtend, "fw:RefreshGuard", reverted, oldRules, reverted, oldRules},
		{VerbExtend, "save:applied/applied+guard", reverted, oldRules, reverted, oldRules},
		{VerbConfirm, "fw:RemoveGuard", reverted, oldRules, reverted, oldRules},
		{VerbConfirm, "save:confirmed/confirmed", confirmed, newRules, confirmed, oldRules},
		{VerbConfirm, "fw:Persist", confirmed, newRules, confirmed, oldRules},
		{VerbConfirm, "save:confirmed/persisted", confirmed, newRules, confirmed, newRules},
		{VerbRevert, "save:applied/reverting", reverted, oldRules, reverted, oldRules},
		{VerbRevert, "fw:Restore", reverted, oldRules, reverted, oldRules},
		{VerbRevert, "fw:Equal", reverted, oldRules, reverted, oldRules},
		{VerbRevert, "save:reverted/reverted", reverted, oldRules, reverted, oldRules},
	}
	for _, tt := range tests {
		for _, reboot := range []bool{false, true} {
			then := "timer"
			if reboot {
				then = "reboot"
			}
			t.Run(tt.verb+"/"+tt.point+"/"+then, func(t *testing.T) {
				h := newHarness(t)
				crashAt(t, h, tt.verb, tt.point)
				wantState, wantLive := tt.timerState, tt.timerLive
				if reboot {
					wantState, wantLive = tt.rebootState, tt.rebootLive
					h.boot = "boot-2"
					h.armer.kill("tx1")
					h.fw.S.Guard = nil
					h.fw.S.Live = map[Format]string{FormatNft: oldRules}
					if p, ok := h.fw.S.Persisted[FormatNft]; ok {
						h.fw.S.Live[FormatNft] = p
					}
				} else if h.armer.kill("tx1") {
					// the timers fire, oldest first (an extend armed a newer
					// generation: the older one must do nothing)
					for gen := 0; gen <= 1; gen++ {
						h.do(VerbRevert, &Request{TxID: "tx1", TimerGen: gen})
					}
				}
				// the next begin must never find the host stuck
				h.mustOK(h.do(VerbBegin, beginReq("tx2")), StateArmed)
				st := h.do(VerbStatus, &Request{TxID: "tx1"})
				if st.State != wantState {
					t.Fatalf("tx1 ended %s (%v), want %s", st.State, st.Error, wantState)
				}
				if wantState == none && code(st) != CodeNoTx {
					t.Fatalf("status of a tx that never got a record: %v", st.Error)
				}
				if h.live() != wantLive {
					t.Fatalf("live ruleset is the %s one, want the %s one", name(h.live()), name(wantLive))
				}
				if st.Verified != nil && *st.Verified != (h.live() == oldRules) {
					t.Fatalf("status verified %v with live %s", *st.Verified, name(h.live()))
				}
			})
		}
	}
}

func name(rules string) string {
	switch rules {
	case oldRules:
		return "old"
	case newRules:
		return "new"
	}
	return "unknown"
}

// crashAt runs begin → stage → confirm (or → timer revert, or → extend)
// and kills the helper at point during verb.
func crashAt(t *testing.T, h *harness, verb, point string) {
	t.Helper()
	current, crashed := "", false
	hit := func(p string) {
		if current == verb && p == point && !crashed {
			crashed = true
			panic(crashSignal{p})
		}
	}
	testHookSave = func(r *txRecord) {
		p := "save:" + string(r.State) + "/" + r.Step
		if n := len(r.Transitions); n > 0 && r.Transitions[n-1].Note == "guard refreshed" {
			p += "+guard"
		}
		hit(p)
	}
	t.Cleanup(func() { testHookSave = nil })
	h.fw.Hook = func(m string) { hit("fw:" + m) }
	h.armer.afterArm = func() { hit("arm") }
	defer func() { h.fw.Hook, h.armer.afterArm = nil, nil }()

	steps := []string{VerbBegin, VerbStage, VerbConfirm}
	switch verb {
	case VerbRevert, VerbExtend:
		steps[2] = verb
	}
	var token string
	for _, step := range steps {
		current = step
		req := &Request{TxID: "tx1", Token: token}
		switch step {
		case VerbBegin:
			req = beginReq("tx1")
		case VerbExtend:
			req.Extend = &ExtendArgs{ConfirmTimeout: Duration(2 * time.Minute)}
		}
		if step == VerbRevert {
			h.armer.kill("tx1") // the timer fired: it is spent
		}
		var rep *Report
		if died := runCrashing(func() { rep = h.do(step, req) }); died {
			return
		}
		if rep.Error != nil {
			t.Fatalf("%s before the crash point: %v", step, rep.Error)
		}
		if step == VerbBegin {
			token = rep.Begin.Token
		}
	}
	t.Fatalf("crash point %s in %s never reached", point, verb)
}

// runCrashing runs fn and reports whether it died of a crashSignal.
func runCrashing(fn func()) (died bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crashSignal); !ok {
				panic(r)
			}
			died = true
		}
	}()
	fn()
	return false
}

// TestRetriedConfirm: the helper dies right after it recorded the confirm
// (its answer is lost, so the workstation sends the confirm again over a
// fresh connection). The retried confirm finishes what the first did not:
// the persist that was asked for. When the host rebooted in between, the
// unpersisted change is gone (the boot config came up): the retried
// confirm says so instead of a plain "confirmed", and persists nothing.
func TestRetriedConfirm(t *testing.T) {
	for _, reboot := range []bool{false, true} {
		t.Run(map[bool]string{false: "helper killed", true: "host rebooted"}[reboot], func(t *testing.T) {
			h := newHarness(t)
			b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			testHookSave = func(r *txRecord) {
				if r.State == StateConfirmed && r.Step == stepConfirmed {
					panic(crashSignal{"save:confirmed/confirmed"})
				}
			}
			died := runCrashing(func() { h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}) })
			testHookSave = nil
			if !died {
				t.Fatal("the confirm did not reach its record")
			}
			if reboot {
				h.boot = "boot-2"
				h.fw.S.Guard = nil
				h.fw.S.Live = map[Format]string{FormatNft: oldRules}
			}
			rep := h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
			persisted := h.fw.S.Persisted[FormatNft]
			if !reboot {
				if persisted != newRules || len(rep.Persisted) == 0 || rep.Reboot {
					t.Fatalf("retried confirm: persisted %q (report %v, reboot %v), want the new rules persisted", name(persisted), rep.Persisted, rep.Reboot)
				}
				return
			}
			if !rep.Reboot || len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "no longer live") {
				t.Fatalf("retried confirm after a reboot: reboot %v, warnings %q: want it to say the change is gone", rep.Reboot, rep.Warnings)
			}
			if persisted != "" || len(rep.Persisted) != 0 {
				t.Fatalf("retried confirm after a reboot persisted %q", name(persisted))
			}
		})
	}
}

// TestStatusFinishesAnInterruptedRevert: the timer's revert dies after it
// recorded `reverting` (the deadline passed, the revert was decided) and
// before the restore: nothing on the host would finish it. The next status
// (the workstation watching its tx, or an operator) finishes the decided
// revert, as the next begin would. While the timer lives (an abort's helper
// died instead: the timer still reverts at the deadline), or before any
// revert was decided, status only reports.
func TestStatusFinishesAnInterruptedRevert(t *testing.T) {
	h := newHarness(t)
	h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	// applied, timer dead, no revert decided: status reports needs-recovery
	// and restores nothing unasked
	h.armer.kill("tx1")
	if st := h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateApplied); st.Status == nil || st.Status.TimerAlive || h.live() != newRules {
		t.Fatalf("status of an applied tx with a dead timer: %+v, live %s", st.Status, name(h.live()))
	}
	testHookSave = func(r *txRecord) {
		if r.Step == stepReverting {
			panic(crashSignal{"save:applied/reverting"})
		}
	}
	died := runCrashing(func() { h.do(VerbRevert, &Request{TxID: "tx1"}) })
	testHookSave = nil
	if !died || h.live() != newRules {
		t.Fatalf("the revert did not die before its restore (died %v, live %s)", died, name(h.live()))
	}
	st := h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateReverted)
	if st.Verified == nil || !*st.Verified || h.live() != oldRules {
		t.Fatalf("status after an interrupted revert: verified %v, live %s; want the revert finished", st.Verified, name(h.live()))
	}
}
