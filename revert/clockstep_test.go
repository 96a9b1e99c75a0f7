package revert

import (
	"testing"
	"time"
)

// TestClockStepMatrix: the host's wall clock is stepped by an hour,
// forward or back, after begin or after stage (an NTP step, a VM resumed,
// an operator's `date -s`). The lab hosts share the machine's kernel clock,
// so the fault matrix cannot step one host's clock: this is that row of
// the matrix, on the fake clock (wall = monotonic + step).
//
// The timers and every deadline check run on CLOCK_MONOTONIC, so stage,
// confirm, the watchdog, status and a second begin behave as if nothing
// happened — except for a guard that opens by the wall clock: iptables'
// `-m time --datestart` opens an hour early after a forward step, and a
// fresh confirm connection let in by the guard proves nothing about the
// new rules, so that confirm must be refused and the change reverted.
// (nft's guard is a set element timeout: a countdown the kernel keeps.)
func TestClockStepMatrix(t *testing.T) {
	const (
		afterBegin = "after begin"
		afterStage = "after stage"
	)
	type want struct {
		stage   string // error code of stage ("" ok)
		confirm string // error code of confirm ("" confirmed)
		state   State  // after confirm
	}
	tests := []struct {
		guard string // nft (a countdown) or iptables (wall clock)
		when  string
		step  time.Duration
		want  want
	}{
		{"nft", afterBegin, time.Hour, want{"", "", StateConfirmed}},
		{"nft", afterBegin, -time.Hour, want{"", "", StateConfirmed}},
		{"nft", afterStage, time.Hour, want{"", "", StateConfirmed}},
		{"nft", afterStage, -time.Hour, want{"", "", StateConfirmed}},
		{"iptables", afterBegin, time.Hour, want{"", CodeTooLate, StateReverted}},
		{"iptables", afterBegin, -time.Hour, want{"", "", StateConfirmed}},
		{"iptables", afterStage, time.Hour, want{"", CodeTooLate, StateReverted}},
		{"iptables", afterStage, -time.Hour, want{"", "", StateConfirmed}},
	}
	for _, tt := range tests {
		t.Run(tt.guard+"/"+tt.when+"/"+tt.step.String(), func(t *testing.T) {
			h := newHarness(t)
			h.fw.S.GuardWallClock = tt.guard == "iptables"
			b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			if tt.when == afterBegin {
				h.clock.step = tt.step
			}
			h.clock.advance(10 * time.Second)
			st := h.do(VerbStage, &Request{TxID: "tx1"})
			if code(st) != tt.want.stage {
				t.Fatalf("stage: code %q (%v), want %q", code(st), st.Error, tt.want.stage)
			}
			if tt.when == afterStage {
				h.clock.step = tt.step
			}
			h.clock.advance(10 * time.Second)

			// 40s of the 60s left: status neither overdue nor dead, and a
			// second begin is refused lock-held, not settled as overdue
			s := h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateApplied)
			if s.Status == nil || s.Status.Overdue || !s.Status.TimerAlive {
				t.Fatalf("status after the step: %+v, want alive, not overdue", s.Status)
			}
			if rep := h.do(VerbBegin, beginReq("tx2")); code(rep) != CodeLockHeld {
				t.Fatalf("second begin after the step: code %q (%v), want %s", code(rep), rep.Error, CodeLockHeld)
			}

			rep := h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token})
			if code(rep) != tt.want.confirm || rep.State != tt.want.state {
				t.Fatalf("confirm: code %q (%v) state %s, want %q %s", code(rep), rep.Error, rep.State, tt.want.confirm, tt.want.state)
			}
			wantLive := newRules
			if tt.want.state == StateReverted {
				wantLive = oldRules
			}
			if h.live() != wantLive {
				t.Fatalf("live ruleset is the %s one, want the %s one", name(h.live()), name(wantLive))
			}
		})
	}
}

// TestClockStepWatchdog: the watchdog sleeps until the deadline on the
// monotonic clock whatever the wall clock does: a step forward does not
// revert early, a step back does not delay the revert by an hour, and
// status calls it overdue only once the monotonic deadline is 15s past.
func TestClockStepWatchdog(t *testing.T) {
	for _, step := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(step.String(), func(t *testing.T) {
			h := newHarness(t)
			h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			h.clock.step = step
			start := h.clock.Now()
			h.mustOK(h.do(VerbWatchdog, &Request{TxID: "tx1"}), StateReverted)
			if slept := h.clock.Now().Sub(start); slept != time.Minute {
				t.Fatalf("watchdog slept %s after a %s step, want the 1m left", slept, step)
			}
			if h.live() != oldRules {
				t.Fatalf("the watchdog did not restore the snapshot")
			}
		})
		t.Run("overdue/"+step.String(), func(t *testing.T) {
			h := newHarness(t)
			h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			h.clock.step = step
			h.clock.advance(time.Minute + overdueAfter - time.Second)
			if s := h.do(VerbStatus, &Request{TxID: "tx1"}); s.Status == nil || s.Status.Overdue {
				t.Fatalf("status %s before overdue: %+v", step, s.Status)
			}
			h.clock.advance(2 * time.Second)
			if s := h.do(VerbStatus, &Request{TxID: "tx1"}); s.Status == nil || !s.Status.Overdue {
				t.Fatalf("status %s once overdue: %+v", step, s.Status)
			}
		})
	}
}
