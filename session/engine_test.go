//go:build linux

package session

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// TestEngineGuardedChange runs a change that is not a ruleset swap (the
// operator's own command, made while the host is guarded) through the one
// engine, against the real host engine over the stateful fake firewall:
// begin → stage → confirm keeps it; begin → stage → a failed command or a
// failed fresh connection reverts it to the snapshot.
func TestEngineGuardedChange(t *testing.T) {
	errCmd := errors.New("exit status 1")
	tests := []struct {
		name   string
		do     func(h *fakeHost) error // the operator's command
		refuse func(dial int) error
		want   Outcome
		live   string
		verbs  []string
		phases []string
	}{
		{
			name: "confirmed keeps the command's change",
			do:   func(h *fakeHost) error { h.fw.S.Live[wire.FormatNft] = newRules; return nil },
			want: Confirmed, live: newRules,
			verbs:  []string{wire.VerbBegin, wire.VerbStage, wire.VerbConfirm},
			phases: []string{PhaseConnect, PhaseProbe, PhaseBegin, PhaseStage, PhaseChange, PhaseConfirm},
		},
		{
			name: "a failed command reverts",
			do:   func(h *fakeHost) error { h.fw.S.Live[wire.FormatNft] = newRules; return errCmd },
			want: Reverted, live: liveRules,
			verbs: []string{wire.VerbBegin, wire.VerbStage, wire.VerbAbort},
		},
		{
			name: "no fresh connection reverts",
			do:   func(h *fakeHost) error { h.fw.S.Live[wire.FormatNft] = newRules; return nil },
			refuse: func(dial int) error {
				if dial > 1 {
					return errConnDropped
				}
				return nil
			},
			want: Reverted, live: liveRules,
			verbs: []string{wire.VerbBegin, wire.VerbStage, wire.VerbAbort},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.refuse = tt.refuse
			var verbs []string
			h.onVerb = func(verb string, rep *wire.Report) { verbs = append(verbs, verb) }
			s := newTestSession(h, 5*time.Second)
			ch := &GuardedChange{Do: func(ctx context.Context, r remote.Runner) error { return tt.do(h) }}
			tx := s.NewTx(Target{Name: "fake"}, ch)
			tx.run(context.Background())
			r := tx.Result()
			if r.Outcome != tt.want {
				t.Fatalf("outcome %s (%s), want %s", r.Outcome, r.Error, tt.want)
			}
			if got := h.fw.S.Live[wire.FormatNft]; got != tt.live {
				t.Errorf("live ruleset %q, want %q", got, tt.live)
			}
			if h.fw.S.Calls["Apply"] != 0 {
				t.Errorf("a guarded change called Apply %d times: the engine must never re-apply a ruleset", h.fw.S.Calls["Apply"])
			}
			if !equalStrings(verbs, tt.verbs) {
				t.Errorf("verbs %v, want %v", verbs, tt.verbs)
			}
			if tt.phases != nil {
				var got []string
				for _, tm := range r.Timings {
					got = append(got, tm.Phase)
				}
				if !equalStrings(got, tt.phases) {
					t.Errorf("phases %v, want %v", got, tt.phases)
				}
			}
			h.refuse = nil // the network is back
			st := s.Status(context.Background(), Target{Name: "fake"}, false)
			if st.TxID != r.TxID || string(st.State) != map[Outcome]string{Confirmed: "confirmed", Reverted: "reverted"}[tt.want] {
				t.Errorf("host status %s %s, want tx %s ended %s", st.TxID, st.State, r.TxID, tt.want)
			}
			if guardLive(h, r.TxID) {
				t.Errorf("the kernel guard of %s is still live after the transaction ended", r.TxID)
			}
		})
	}
}

// TestEngineRulesetChangeRevertsByTimer: the ruleset change through the
// same steps, and the host's own timer ending it when no confirm comes.
func TestEngineRulesetChangeRevertsByTimer(t *testing.T) {
	h := newFakeHost(t)
	s := newTestSession(h, 5*time.Second)
	tx := s.NewTx(target(newRules), s.rulesetChange(target(newRules)))
	ctx := context.Background()
	if err := tx.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Change(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.fw.S.Live[wire.FormatNft]; got != newRules || !guardLive(h, tx.Result().TxID) {
		t.Fatalf("after stage: live %q, guard %v: want the new ruleset under the guard", got, guardLive(h, tx.Result().TxID))
	}
	h.fire() // the workstation went away: the host's timer fires
	if got := h.fw.S.Live[wire.FormatNft]; got != liveRules {
		t.Fatalf("after the timer: live %q, want the snapshot", got)
	}
	if err := tx.Confirm(ctx); err == nil || tx.Result().Outcome != Reverted {
		t.Fatalf("confirm after the revert: %v, outcome %s: want reverted", err, tx.Result().Outcome)
	}
}

// TestEngineResumeAndExtend: the token lives in the run store (0600), so
// another lifeline process extends and confirms the transaction; once
// confirmed the token is gone.
func TestEngineResumeAndExtend(t *testing.T) {
	h := newFakeHost(t)
	run := t.TempDir()
	s := newTestSession(h, 5*time.Second)
	s.opts.RunDir = run
	ch := &GuardedChange{}
	tx := s.NewTx(Target{Name: "fake"}, ch)
	ctx := context.Background()
	if err := tx.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Change(ctx); err != nil {
		t.Fatal(err)
	}
	tx.Close() // this lifeline process ends here
	fi, err := os.Stat(s.txFile("fake"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	first := tx.Result().Deadline

	s2 := newTestSession(h, 5*time.Second)
	s2.opts.RunDir = run
	// a wrong token is refused by the host, and changes nothing
	bad, err := s2.Resume(Target{Name: "fake"}, ch)
	if err != nil {
		t.Fatal(err)
	}
	bad.token = "00"
	if err := bad.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bad.Extend(ctx, time.Hour); err == nil || !bad.Result().Deadline.Equal(first) {
		t.Errorf("extend with a wrong token: %v, deadline %s: want refused, %s", err, bad.Result().Deadline, first)
	}
	bad.Close()

	tx2, err := s2.Resume(Target{Name: "fake"}, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer tx2.Close()
	if err := tx2.Extend(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := tx2.Result().Deadline; !d.After(first.Add(50 * time.Minute)) {
		t.Fatalf("deadline after extend %s, first %s: want about an hour later", d, first)
	}
	st := s2.Status(ctx, Target{Name: "fake"}, false)
	if !st.Deadline.Equal(tx2.Result().Deadline) || st.State != wire.StateApplied {
		t.Fatalf("host: %s deadline %s, want applied until %s", st.State, st.Deadline, tx2.Result().Deadline)
	}
	if err := tx2.Confirm(ctx); err != nil || tx2.Result().Outcome != Confirmed {
		t.Fatalf("confirm from the second process: %v %s", err, tx2.Result().Outcome)
	}
	if _, err := os.Stat(s.txFile("fake")); !os.IsNotExist(err) {
		t.Errorf("token file after confirm: %v, want removed", err)
	}
	if _, err := s2.Resume(Target{Name: "fake"}, ch); !errors.Is(err, ErrNoKeptTx) {
		t.Errorf("resume after confirm: %v, want ErrNoKeptTx", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// guardLive reports whether the fake host's kernel guard of txID is live.
func guardLive(h *fakeHost, txID string) bool {
	return h.fw.S.Guard != nil && h.fw.S.Guard.TxID == txID
}
