package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
)

// progress prints apply's live events and final report. Text mode draws a
// live view on stderr when it is a terminal (live.go), otherwise writes one
// line per phase transition to stderr, and the final table to stdout; --json prints only the final document; --json-stream prints
// every event as a JSON line, then the final document.
type progress struct {
	g      *globals
	stream bool
	mu     sync.Mutex
	start  time.Time
	live   *liveView // nil unless stderr is a terminal (and no JSON, no -v)
}

func newProgress(g *globals, stream bool, hosts int) *progress {
	p := &progress{g: g, stream: stream, start: time.Now()}
	if width, tty := isTerminal(g.stderr); tty && !stream && !g.jsonOut && !g.verbose {
		p.live = newLiveView(g.stderr, width, hosts)
	}
	return p
}

func (p *progress) event(e session.Event) {
	if p.live != nil {
		p.live.event(e)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stream:
		e.Msg = textsafe.Truncate(e.Msg)
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			session.Event
		}{"event", e})
		fmt.Fprintln(p.g.stdout, string(b))
	case p.g.jsonOut:
	default:
		if e.Status == "start" && !p.g.verbose {
			return
		}
		msg := e.Status
		if e.Msg != "" {
			msg += ": " + oneLine(textsafe.Text(e.Msg))
		}
		fmt.Fprintf(p.g.stderr, "%6.1fs  %-12s %-8s %s\n", e.At.Sub(p.start).Seconds(), textsafe.Escape(e.Host), e.Phase, msg)
	}
}

func (p *progress) done(runID, runDir string, results []*session.Result) {
	if p.live != nil {
		p.live.close()
	}
	counts := map[string]int{}
	for _, r := range results {
		counts[string(r.Outcome)]++
	}
	if p.stream || p.g.jsonOut {
		doc := jsonResults{RunID: runID, RunDir: runDir, OK: session.Err(results) == nil, Counts: counts, Results: truncated(results)}
		if p.stream {
			b, _ := json.Marshal(struct {
				Type string `json:"type"`
				jsonResults
			}{"result", doc})
			fmt.Fprintln(p.g.stdout, string(b))
			return
		}
		encodeJSON(p.g, doc)
		return
	}
	for _, r := range results {
		if r.Diff != "" {
			host := textsafe.Escape(r.Host)
			fmt.Fprintf(p.g.stdout, "--- %s: live\n+++ %s: new\n%s\n", host, host, textsafe.Text(strings.TrimRight(r.Diff, "\n")))
		}
	}
	tw := tabwriter.NewWriter(p.g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tOUTCOME\tPHASE\tTOOK\tTX\tERROR")
	for _, r := range results {
		// Error and hint are escaped and cut apart, so that a long error
		// never cuts off the hint.
		errText, hint := textsafe.Text(r.Error), textsafe.Text(r.Hint)
		if hint != "" {
			if errText != "" {
				errText += " (hint: " + hint + ")"
			} else {
				errText = hint
			}
		}
		outcome := string(r.Outcome)
		if r.Reboot {
			outcome += " (reboot)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(r.Host), outcome, r.Phase, r.Took.Round(10*time.Millisecond), textsafe.Escape(r.TxID), oneLine(errText))
		for _, w := range r.Warnings {
			fmt.Fprintf(tw, "  WARNING:\t%s\t\t\t\t\n", oneLine(textsafe.Text(w)))
		}
	}
	tw.Flush()
	var parts []string
	for _, o := range []session.Outcome{session.Confirmed, session.Planned, session.Reverted, session.Refused, session.Unknown, session.NeedsRecovery, session.RevertFailed, session.Skipped} {
		if n := counts[string(o)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	fmt.Fprintf(p.g.stdout, "%d hosts: %s in %s (run %s)\n", len(results), strings.Join(parts, ", "), time.Since(p.start).Round(100*time.Millisecond), runID)
}

// truncated returns copies of results whose error and hint have their long
// lines cut (textsafe.Truncate), for the JSON document; JSON escapes the
// rest by itself.
func truncated(results []*session.Result) []*session.Result {
	out := make([]*session.Result, len(results))
	for i, r := range results {
		if r == nil {
			continue
		}
		c := *r
		c.Error, c.Hint = textsafe.Truncate(c.Error), textsafe.Truncate(c.Hint)
		out[i] = &c
	}
	return out
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
