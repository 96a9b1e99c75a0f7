package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/trace"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

// TestTraceText pins what a person sees: one line per traced step, then
// the per-host summary with the rules that decided.
func TestTraceText(t *testing.T) {
	drop := wire.TraceEvent{Host: "h01", ID: "8bf322ed", Family: "inet", Table: "filter", Chain: "input", Kind: "rule",
		Rule: `ip saddr 198.18.0.3 tcp dport 22 drop comment "no ssh"`, Handle: 2, Verdict: "drop", Packet: "tcp 198.18.0.3:51234 > 198.18.0.2:22 iif eth0"}
	policy := wire.TraceEvent{Host: "h01", ID: "93c8107f", Family: "ip", Table: "filter", Chain: "INPUT", Kind: "policy", Verdict: "accept", Packet: "198.18.0.4:40000 > 198.18.0.2:22"}
	hostile := wire.TraceEvent{Host: "h01", ID: "1", Family: "inet", Table: "t", Chain: "c", Kind: "rule", Rule: "comment \"\x1b[2J\"", Verdict: "drop"}
	var b strings.Builder
	for _, ev := range []wire.TraceEvent{drop, policy, hostile} {
		b.WriteString(traceLine(ev, 4) + "\n")
	}
	var sum trace.Summarizer
	for _, ev := range []wire.TraceEvent{drop, policy, drop} {
		sum.Add(ev)
	}
	results := []*session.Result{
		{Host: "h01", Outcome: session.Restored, Trace: &session.TraceResult{Match: "tcp dport 22", Duration: 5 * time.Second,
			Start: &wire.TraceStart{Tracer: "nft table inet lifeline_trace"}, Summary: sum.Summary()}},
		{Host: "h03", Outcome: session.Reverted, Error: "not confirmed: trace: this host's rules are iptables-legacy's", Trace: &session.TraceResult{Match: "tcp dport 22"}},
	}
	b.WriteString("--\n")
	if err := writeTraceText(&b, results); err != nil {
		t.Fatal(err)
	}
	golden(t, "trace", b.String())
}
