package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/internal/trace"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

type traceOptions struct {
	match    string
	duration time.Duration
	forks    int
	limit    string
}

// traceMargin is what the window adds to the duration: begin's snapshot,
// the stage, installing and removing the trace rules, and the abort.
const traceMargin = 15 * time.Second

func init() { subcommands = append(subcommands, newTraceCmd) }

func newTraceCmd(g *globals) *cobra.Command {
	o := &traceOptions{}
	cmd := &cobra.Command{
		Use:   "trace TARGET --match 'MATCH' [--duration 30s]",
		Short: "Show which chain and rule decide the fate of matching packets, then restore the ruleset exactly",
		Long: `trace shows, per host, which table, chain and rule gave which verdict to
each packet of a match, for --duration. It runs inside a guarded
transaction, like exec:

  connect → begin (lock, snapshot, arm the revert timer; window = duration
  + 15s) → stage (the kernel guard) → trace (add the tracing rules, stream
  what the packets met, remove the rules) → abort (restore the snapshot and
  verify it)

So the ruleset afterwards is the one before, and if this workstation dies
mid-trace the host removes the trace itself (its stdin closes) and its
revert timer restores the snapshot at the deadline.

MATCH is a few tokens, each at most once; anything else is refused:
  tcp | udp | icmp | icmpv6     the protocol
  dport N[-M]   sport N[-M]     ports (after tcp or udp)
  saddr ADDR|CIDR               source, IPv4 or IPv6
  daddr ADDR|CIDR               destination
  iif NAME      oif NAME        interface (one of them: iif traces arriving
                                packets, oif those the host sends)

How a host traces: with the nft tool, a table inet lifeline_trace whose
chains (prerouting and output, priority -350, before raw) set meta nftrace
for the match; read with nft monitor trace, or with xtables-monitor --trace
when the host's rules are iptables-nft's (their rules then print in
iptables syntax). Without nft, iptables-nft -t raw ... -j TRACE. The
operator's own SSH connection is never traced. Hosts whose rules are
iptables-legacy's are refused: their verdicts never reach a monitor.

Each host ends as:
  restored    traced, then the snapshot restored and verified (exit 0)
  reverted    the trace failed or was refused on the host; restored
  refused     nothing changed (lock held, host key, auth, no sudo)
  unknown     unreachable: the host restores itself at its deadline

Exit status: 0 when every host traced and its ruleset was restored and
verified, 1 otherwise, 2 for a usage error (a bad match among them).
--json prints one document at the end; --json-stream prints every step of
every packet as a {"type":"trace",...} line as it happens.`,
		Example: `  # why is ssh from 203.0.113.7 refused on web01?
  lifeline trace web01 --match 'tcp dport 22 saddr 203.0.113.7'

  # a whole group, a minute, as JSON lines
  lifeline -i hosts.ini trace web --match 'udp dport 53' --duration 1m --json-stream`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrace(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.match, "match", "", "which packets to trace, e.g. 'tcp dport 22 saddr 203.0.113.7' (required; see above)")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "how long to trace (1s to 1h)")
	f.BoolVar(&g.jsonStream, "json-stream", false, "print every traced step as one JSON line on stdout as it happens")
	f.IntVar(&o.forks, "forks", 20, "hosts traced in parallel")
	f.StringVar(&o.limit, "limit", "", "further limit the targeted hosts (same pattern grammar)")
	return cmd
}

// traceDoc is trace's --json document and --json-stream result line.
type traceDoc struct {
	RunID   string            `json:"run_id"`
	RunDir  string            `json:"run_dir"`
	OK      bool              `json:"ok"`
	Match   string            `json:"match"`
	Results []*session.Result `json:"results"`
}

func runTrace(ctx context.Context, g *globals, o *traceOptions, pattern string) error {
	if strings.TrimSpace(o.match) == "" {
		return usagef("--match is required, e.g. --match 'tcp dport 22 saddr 203.0.113.7'")
	}
	m, err := trace.Parse(o.match)
	if err != nil {
		return usageError{err}
	}
	if o.duration < time.Second || o.duration > time.Duration(wire.MaxTraceDuration) {
		return usagef("--duration %s is out of range: 1s to 1h", o.duration)
	}
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return err
	}
	targets := sessionTargets(hosts)
	width := 0
	for _, h := range hosts {
		width = max(width, len(h.Name))
	}
	runID, runDir, endRun := startRun(g)
	defer endRun()
	p := g.printer()
	p.Begin(len(targets))
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{
		ConfirmTimeout: o.duration + traceMargin, Undo: true,
		Origin: origin(runID) + " trace", RunID: runID, RunDir: runDir, Events: p.Event,
		NewChange: func(session.Target) session.Change {
			return &session.TraceChange{Match: m, Duration: o.duration,
				OnStart: func(host string, st wire.TraceStart) {
					p.Record("trace-start", struct {
						Host string `json:"host"`
						wire.TraceStart
					}{host, st}, fmt.Sprintf("%-*s  tracing %s for %s with %s, read with %s", width, textsafe.Escape(host), trace.String(m), time.Duration(st.Until).Round(100*time.Millisecond), textsafe.Escape(st.Tracer), textsafe.Escape(st.Monitor)))
				},
				OnEvent: func(ev wire.TraceEvent) { p.Record("trace", ev, traceLine(ev, width)) },
			}
		},
	})
	results, err := s.Rollout(ctx, session.Plan{Forks: o.forks}, targets)
	if err != nil {
		return usageError{err}
	}
	doc := traceDoc{RunID: runID, RunDir: runDir, OK: session.Err(results) == nil, Match: trace.String(m), Results: truncated(results)}
	_ = p.Result(doc, func(w io.Writer) error { return writeTraceText(w, results) })
	if ferr := session.Err(results); ferr != nil {
		return failedError{ferr.Error()}
	}
	return nil
}

// traceLine is one traced step for a person:
//
//	h01  trace 8bf322ed  inet filter input  rule "ip saddr 198.18.0.3 tcp dport 22 drop" (handle 2)  verdict drop  (tcp 198.18.0.3:51234 > 198.18.0.2:22 iif eth0)
func traceLine(ev wire.TraceEvent, width int) string {
	e := textsafe.Escape
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  trace %s  %s %s %s  ", width, e(ev.Host), e(ev.ID), e(ev.Family), e(ev.Table), e(ev.Chain))
	switch ev.Kind {
	case "rule":
		fmt.Fprintf(&b, "rule %q", ev.Rule)
		if ev.Handle != 0 {
			fmt.Fprintf(&b, " (handle %d)", ev.Handle)
		}
		b.WriteString("  ")
	case "policy":
		b.WriteString("policy  ")
	default:
		b.WriteString(e(ev.Kind) + "  ")
	}
	b.WriteString("verdict " + e(ev.Verdict))
	if ev.Packet != "" {
		b.WriteString("  (" + e(ev.Packet) + ")")
	}
	return b.String()
}

// writeTraceText writes the per-host summary (packets, verdicts, whether
// the ruleset was restored), then per host the rules that decided.
func writeTraceText(w io.Writer, results []*session.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tOUTCOME\tPACKETS\tVERDICTS\tRULESET\tERROR")
	for _, r := range results {
		packets, verdicts := "-", "-"
		if r.Trace != nil && r.Trace.Start != nil {
			packets = fmt.Sprint(r.Trace.Packets)
			var parts []string
			for _, v := range r.Trace.VerdictNames() {
				parts = append(parts, fmt.Sprintf("%d %s", r.Trace.Verdicts[v], v))
			}
			if len(parts) > 0 {
				verdicts = strings.Join(parts, ", ")
			}
		}
		ruleset := "not restored"
		switch r.Outcome {
		case session.Restored:
			ruleset = "restored, verified"
		case session.Reverted:
			ruleset = "restored"
		case session.Refused, session.Skipped:
			ruleset = "untouched"
		case session.Unknown:
			ruleset = "unknown"
		}
		errText := withHint(textsafe.Text(r.Error), textsafe.Text(r.Hint))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(r.Host), r.Outcome, packets, verdicts, ruleset, oneLine(errText))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.Trace != nil {
			for _, rule := range decidingRules(r.Trace.Decisive) {
				fmt.Fprintf(w, "%s  %s  %s\n", textsafe.Escape(r.Host), textsafe.Escape(rule.verdict), oneLine(textsafe.Text(rule.text)))
			}
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "%s  WARNING: %s\n", textsafe.Escape(r.Host), oneLine(textsafe.Text(warn)))
		}
	}
	return nil
}

type decidingRule struct{ verdict, text string }

// decidingRules lists, once each and in order, the rules (or policies)
// that decided the packets, with how many they decided.
func decidingRules(decisive []wire.TraceEvent) []decidingRule {
	var out []decidingRule
	index := map[string]int{}
	counts := map[string]int{}
	for _, ev := range decisive {
		what := ev.Family + " " + ev.Table + " " + ev.Chain + " "
		if ev.Kind == "rule" {
			what += fmt.Sprintf("rule %q", ev.Rule)
			if ev.Handle != 0 {
				what += fmt.Sprintf(" (handle %d)", ev.Handle)
			}
		} else {
			what += ev.Kind
		}
		if ev.Verdict == "" || !trace.Final(ev.Verdict) {
			ev.Verdict = "undecided"
		}
		key := ev.Verdict + "\x00" + what
		counts[key]++
		if _, ok := index[key]; !ok {
			index[key] = len(out)
			out = append(out, decidingRule{verdict: ev.Verdict, text: what})
		}
	}
	for key, i := range index {
		out[i].text += fmt.Sprintf(" decided %d packet(s)", counts[key])
	}
	return out
}
