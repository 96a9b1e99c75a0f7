//go:build linux

package session

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

// TestTraceChangeUndo: a trace runs as a guarded change whose end is an
// abort: the host restores its snapshot (whatever the trace left), and a
// verified restore is Restored; a trace the host refused is Reverted with
// its reason. The stream's events reach OnEvent with the host filled in.
func TestTraceChangeUndo(t *testing.T) {
	ev := wire.TraceEvent{ID: "8bf322ed", Family: "inet", Table: "filter", Chain: "input", Kind: "rule",
		Rule: "ip saddr 198.18.0.3 tcp dport 22 drop", Handle: 2, Verdict: "drop", Packet: "tcp 198.18.0.3:5000 > 198.18.0.2:22"}
	for _, tt := range []struct {
		name    string
		lines   []wire.TraceLine
		want    Outcome
		error   string
		packets int
	}{
		{
			name: "traced and restored",
			lines: []wire.TraceLine{
				{Start: &wire.TraceStart{Tracer: "nft table inet lifeline_trace", Monitor: "nft -a monitor trace"}},
				{Event: &wire.TraceEvent{ID: ev.ID, Kind: "policy", Verdict: "accept", Chain: "prerouting"}},
				{Event: &ev},
				{Report: &wire.Report{Version: wire.ProtocolVersion, Verb: wire.VerbTrace, State: wire.StateApplied}},
			},
			want: Restored, packets: 1,
		},
		{
			name: "refused on the host",
			lines: []wire.TraceLine{
				{Report: &wire.Report{Version: wire.ProtocolVersion, Verb: wire.VerbTrace, State: wire.StateApplied,
					Error: &wire.Error{Code: wire.CodeBackend, Message: "this host's rules are iptables-legacy's"}}},
			},
			want: Reverted, error: "iptables-legacy",
		},
		{
			name:  "no report",
			lines: []wire.TraceLine{{Start: &wire.TraceStart{Tracer: "x"}}},
			want:  Reverted, error: "without a report",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			var verbs []string
			h.onVerb = func(verb string, rep *wire.Report) { verbs = append(verbs, verb) }
			h.commands = map[string]func(stdout, stderr io.Writer) int{
				wire.HelperCommand(helperSHA, wire.VerbTrace): func(stdout, _ io.Writer) int {
					h.fw.S.Live[wire.FormatNft] = newRules // the trace's table, say
					for _, l := range tt.lines {
						_ = json.NewEncoder(stdout).Encode(l)
					}
					return 0
				},
			}
			s := newTestSession(h, 5*time.Second)
			s.opts.Undo = true
			var got []wire.TraceEvent
			ch := &TraceChange{Match: wire.TraceMatch{Proto: "tcp", DPortFrom: 22, DPortTo: 22}, Duration: time.Second,
				OnEvent: func(e wire.TraceEvent) { got = append(got, e) }}
			tx := s.NewTx(Target{Name: "fake"}, ch)
			tx.run(context.Background())
			r := tx.Result()
			if r.Outcome != tt.want || !strings.Contains(r.Error, tt.error) {
				t.Fatalf("outcome %s (%s), want %s with %q", r.Outcome, r.Error, tt.want, tt.error)
			}
			if live := h.fw.S.Live[wire.FormatNft]; live != liveRules {
				t.Errorf("live ruleset %q after the trace, want the snapshot", live)
			}
			if !equalStrings(verbs, []string{wire.VerbBegin, wire.VerbStage, wire.VerbAbort}) {
				t.Errorf("verbs %v, want begin, stage, abort", verbs)
			}
			if r.Trace == nil || r.Trace.Packets != tt.packets || r.Trace.Match != "tcp dport 22" {
				t.Fatalf("trace result %+v, want %d packets of tcp dport 22", r.Trace, tt.packets)
			}
			if tt.packets > 0 {
				if r.Trace.Verdicts["drop"] != 1 || len(r.Trace.Decisive) != 1 || r.Trace.Decisive[0].Rule != ev.Rule {
					t.Errorf("summary %+v, want the drop rule decisive", r.Trace.Summary)
				}
				if len(got) != 2 || got[1].Host != "fake" {
					t.Errorf("OnEvent got %+v, want 2 events of host fake", got)
				}
			}
			if guardLive(h, r.TxID) {
				t.Errorf("the kernel guard of %s is still live", r.TxID)
			}
		})
	}
}
