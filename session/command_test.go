//go:build linux

package session

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

// TestExecCommand: a command run as a guarded change, through the real
// host engine over the fake firewall: its exit status decides (unless
// KeepOnError), its output is kept, and --no-confirm leaves the host armed
// for a later confirm or abort from another lifeline process.
func TestExecCommand(t *testing.T) {
	const lockout = "iptables -P INPUT DROP"
	tests := []struct {
		name      string
		exit      int
		keep      bool
		noConfirm bool
		then      string // OpConfirm / OpAbort from a second process
		want      Outcome
		final     Outcome
		live      string
	}{
		{name: "exit 0 confirms", want: Confirmed, live: newRules},
		{name: "exit 3 reverts", exit: 3, want: Reverted, live: liveRules},
		{name: "exit 3 kept on error", exit: 3, keep: true, want: Confirmed, live: newRules},
		{name: "no-confirm, then confirm", noConfirm: true, then: OpConfirm, want: Armed, final: Confirmed, live: newRules},
		{name: "no-confirm, then abort", noConfirm: true, then: OpAbort, want: Armed, final: Reverted, live: liveRules},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.commands = map[string]func(stdout, stderr io.Writer) int{
				lockout: func(stdout, stderr io.Writer) int {
					h.fw.S.Live[wire.FormatNft] = newRules
					fmt.Fprintln(stdout, "policy set")
					fmt.Fprintln(stderr, "a warning")
					return tt.exit
				},
			}
			run := t.TempDir()
			var events []string
			s := newTestSession(h, 5*time.Second)
			s.opts.RunDir, s.opts.NoConfirm = run, tt.noConfirm
			s.opts.Events = func(e Event) {
				if e.Status == "output" {
					events = append(events, e.Msg)
				}
			}
			s.opts.NewChange = func(Target) Change { return &CommandChange{Command: lockout, KeepOnError: tt.keep} }
			r := s.Apply(context.Background(), Target{Name: "fake"})
			if r.Outcome != tt.want {
				t.Fatalf("outcome %s (%s), want %s", r.Outcome, r.Error, tt.want)
			}
			c := r.Command
			if c == nil || c.Exit != tt.exit || c.Stdout != "policy set\n" || c.Stderr != "a warning\n" || c.Kept != (tt.keep && tt.exit != 0) {
				t.Fatalf("command result %+v", c)
			}
			if strings.Join(events, "|") != "stdout: policy set|stderr: a warning" && strings.Join(events, "|") != "stderr: a warning|stdout: policy set" {
				t.Errorf("output events %q", events)
			}
			if tt.exit != 0 && !tt.keep && !strings.Contains(r.Error, "exited 3") {
				t.Errorf("error %q does not say the exit status", r.Error)
			}
			if tt.then != "" {
				st := s.Status(context.Background(), Target{Name: "fake"}, false)
				if st.State != wire.StateApplied || st.TxID != r.TxID {
					t.Fatalf("left armed: host says %s %s", st.TxID, st.State)
				}
				s2 := newTestSession(h, 5*time.Second)
				s2.opts.RunDir = run
				if r2 := s2.Finish(context.Background(), Target{Name: "fake"}, tt.then, "not-"+r.TxID, 0); r2.Outcome != Refused {
					t.Fatalf("%s with a wrong tx id: %s", tt.then, r2.Outcome)
				}
				r2 := s2.Finish(context.Background(), Target{Name: "fake"}, tt.then, r.TxID, 0)
				if r2.Outcome != tt.final {
					t.Fatalf("%s: %s (%s), want %s", tt.then, r2.Outcome, r2.Error, tt.final)
				}
				if r3 := s2.Finish(context.Background(), Target{Name: "fake"}, tt.then, "", 0); r3.Outcome != Refused {
					t.Errorf("%s again (nothing kept): %s", tt.then, r3.Outcome)
				}
			}
			if got := h.fw.S.Live[wire.FormatNft]; got != tt.live {
				t.Errorf("live %q, want %q", got, tt.live)
			}
			if h.fw.S.Guard != nil {
				t.Errorf("guard left: %+v", h.fw.S.Guard)
			}
		})
	}
}
