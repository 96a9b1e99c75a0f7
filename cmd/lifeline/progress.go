package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
)

// progress is apply's side of the printer: it hands the session's events to
// the printer as they come, and prints the final report — under --json the
// document (jsonResults), under --json-stream its "result" line, otherwise
// the diffs, the table and a summary line on stdout.
type progress struct {
	p     printer
	start time.Time
	now   func() time.Time // the clock of the summary line (tests fix it)
}

// newProgress starts apply's output for hosts hosts; stream selects
// --json-stream.
func newProgress(g *globals, stream bool, hosts int) *progress {
	if stream {
		g.jsonStream = true
	}
	pr := &progress{p: g.printer(), start: time.Now(), now: time.Now}
	pr.p.Begin(hosts)
	return pr
}

func (pr *progress) event(e session.Event) { pr.p.Event(e) }

func (pr *progress) done(runID, runDir string, results []*session.Result) {
	counts := map[string]int{}
	for _, r := range results {
		counts[string(r.Outcome)]++
	}
	doc := jsonResults{RunID: runID, RunDir: runDir, OK: session.Err(results) == nil, Counts: counts, Results: truncated(results)}
	took := pr.now().Sub(pr.start)
	_ = pr.p.Result(doc, func(w io.Writer) error {
		return writeApplyText(w, runID, results, counts, took)
	})
}

// writeApplyText writes apply's report for a person: each dry run's diff,
// one table row per host (with its warnings under it) and a summary line.
func writeApplyText(w io.Writer, runID string, results []*session.Result, counts map[string]int, took time.Duration) error {
	for _, r := range results {
		if r.Diff != "" {
			host := textsafe.Escape(r.Host)
			fmt.Fprintf(w, "--- %s: live\n+++ %s: new\n%s\n", host, host, textsafe.Text(strings.TrimRight(r.Diff, "\n")))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tOUTCOME\tPHASE\tTOOK\tTX\tERROR")
	for _, r := range results {
		// Error and hint are escaped and cut apart, so that a long error
		// never cuts off the hint.
		errText := withHint(textsafe.Text(r.Error), textsafe.Text(r.Hint))
		outcome := string(r.Outcome)
		if r.Reboot {
			outcome += " (reboot)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(r.Host), outcome, r.Phase, r.Took.Round(10*time.Millisecond), textsafe.Escape(r.TxID), oneLine(errText))
		if r.Path != "" && r.Path != "direct" {
			fmt.Fprintf(tw, "  reached:\t%s\t\t\t\t\n", oneLine(textsafe.Text(r.Path)))
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(tw, "  WARNING:\t%s\t\t\t\t\n", oneLine(textsafe.Text(warn)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.Block != nil {
			writeBlockLines(w, r.Host, r.Block)
		}
	}
	var parts []string
	for _, o := range outcomeOrder {
		if n := counts[string(o)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	_, err := fmt.Fprintf(w, "%d hosts: %s in %s (run %s)\n", len(results), strings.Join(parts, ", "), took.Round(100*time.Millisecond), runID)
	return err
}

// outcomeOrder is the order of the counts in summaries.
var outcomeOrder = []session.Outcome{session.Confirmed, session.Done, session.Restored, session.Planned, session.Armed, session.Reverted, session.Refused, session.Unknown, session.NeedsRecovery, session.RevertFailed, session.Skipped}

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
