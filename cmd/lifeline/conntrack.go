package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

type conntrackOptions struct {
	warn  string
	top   int
	since time.Duration
	limit string
	forks int
}

func init() { subcommands = append(subcommands, newConntrackCmd) }

func newConntrackCmd(g *globals) *cobra.Command {
	o := &conntrackOptions{}
	cmd := &cobra.Command{
		Use:   "conntrack TARGET",
		Short: "Show how full each host's connection tracking table is; exit 1 when near full",
		Long: `conntrack asks every targeted host how full its netfilter connection
tracking table is. Every stateful rule (ct state, -m conntrack, NAT) needs
an entry per flow; when the table is full, the kernel drops the packets of
new flows — new SSH connections included — while established ones go on.
It changes nothing on the host and takes no lock.

For each host: COUNT entries of the MAX the kernel allows (USE%), the
entries by protocol and state (udp UNREPLIED: no answer seen yet) and the
source addresses with the most entries. The listing comes from
/proc/net/nf_conntrack, or "conntrack -L -o extended" when the kernel has no
such file (install conntrack-tools); at most 1,000,000 entries are parsed,
the rest only counted. -v adds every state, the top sources, the kernel's
counters (drop, early_drop, insert_failed), the kernel log and notes.

The kernel logs "nf_conntrack: table full, dropping packet" when it drops
a packet for want of an entry; messages younger than --since count. A
host in a container shares the machine's kernel log (and its
nf_conntrack_max): its messages may come from another container. A table
full of unanswered (unassured) entries evicts them instead of dropping:
that shows as early_drop in -v, not in the log.

A host without nf_conntrack loaded tracks nothing: it reports count 0,
"not loaded", and is fine.

Exit status: 0 every host below --warn and no recent table-full message;
1 some host at or above --warn, or with table-full messages; 2 some host
could not be asked (unreachable, authentication, no sudo: its row says why),
or a usage error.`,
		Example: `  lifeline -i lab/inventory.yaml conntrack all
  lifeline -i lab/inventory.yaml conntrack web --warn 90% --top 10 -v
  lifeline -i lab/inventory.yaml conntrack all --warn 0.7 --since 24h --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConntrack(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.warn, "warn", "80%", "use at or above which a table is near full: a percentage (80%) or a fraction (0.8)")
	f.IntVar(&o.top, "top", wire.DefaultConntrackTop, fmt.Sprintf("source addresses to show per host (1 to %d)", wire.MaxConntrackTop))
	f.DurationVar(&o.since, "since", time.Hour, "count table-full kernel messages younger than this (0: the whole kernel log)")
	f.StringVarP(&o.limit, "limit", "l", "", "further limit the targeted hosts")
	f.IntVar(&o.forks, "forks", 20, "hosts asked in parallel")
	return cmd
}

// conntrackDoc is conntrack's --json document.
type conntrackDoc struct {
	Warn  float64                  `json:"warn"`
	Since string                   `json:"since"`
	Hosts []*session.HostConntrack `json:"hosts"`
}

// failedExit is a failedError with its own exit status.
func failedExit(code int, msg string) error { return failedCodeError{failedError{msg}, code} }

func runConntrack(ctx context.Context, g *globals, o *conntrackOptions, pattern string) error {
	warn, err := session.ParseUse(o.warn)
	if err != nil {
		return usagef("--warn %v (hint: lifeline conntrack --help)", err)
	}
	if o.top < 1 || o.top > wire.MaxConntrackTop {
		return usagef("--top %d: give 1 to %d", o.top, wire.MaxConntrackTop)
	}
	if o.since < 0 {
		return usagef("--since %s: give a duration of 0 or more", o.since)
	}
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return err
	}
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{Origin: origin(session.NewTxID(time.Now()))})
	opts := session.ConntrackOptions{Warn: warn, Top: o.top, Since: o.since}
	out := fanout.Run(ctx, len(hosts), o.forks, func(ctx context.Context, i int) *session.HostConntrack {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return s.Conntrack(cctx, session.Target{Name: hosts[i].Name, SSH: targetOf(hosts[i])}, opts)
	}, func(i int) *session.HostConntrack {
		err := errors.New("interrupted before it was asked")
		return &session.HostConntrack{Host: hosts[i].Name, Error: err.Error(), Err: err}
	})
	if err := printConntrack(g, out, warn, o.since); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return conntrackExit(out, o.warn)
}

// conntrackExit: 2 when a host could not be asked, 1 when one is near full
// or dropping, else nil.
func conntrackExit(out []*session.HostConntrack, warn string) error {
	failed, alarms := 0, 0
	for _, h := range out {
		switch {
		case h.Err != nil:
			failed++
		case h.Alarm():
			alarms++
		}
	}
	switch {
	case failed > 0:
		return failedExit(exitUsage, fmt.Sprintf("%d of %d hosts could not be asked (and %d near full or dropping)", failed, len(out), alarms))
	case alarms > 0:
		return failedError{fmt.Sprintf("%d of %d hosts have a conntrack table near full (at or above %s) or dropping packets", alarms, len(out), warn)}
	}
	return nil
}

func printConntrack(g *globals, out []*session.HostConntrack, warn float64, since time.Duration) error {
	doc := conntrackDoc{Warn: warn, Since: shortDuration(since), Hosts: make([]*session.HostConntrack, len(out))}
	for i, h := range out {
		c := *h
		c.Error = textsafe.Truncate(c.Error)
		doc.Hosts[i] = &c
	}
	return g.printer().Result(doc, func(w io.Writer) error {
		return writeConntrack(w, out, warn, since, g.verbose)
	})
}

// writeConntrack prints the table, then, verbose, each host's details.
func writeConntrack(w io.Writer, out []*session.HostConntrack, warn float64, since time.Duration, verbose bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCOUNT\tMAX\tUSE%\tSTATES\tTOP-SOURCES")
	var after []string // what does not fit a row, printed below the table
	for _, h := range out {
		host := textsafe.Escape(h.Host)
		r := h.Conntrack
		switch {
		case h.Err != nil:
			fmt.Fprintf(tw, "%s\t-\t-\tERROR\t-\t-\n", host)
			after = append(after, fmt.Sprintf("%s: ERROR: %s", host, oneLine(textsafe.Text(h.Error))))
			continue
		case !r.Loaded:
			fmt.Fprintf(tw, "%s\t0\t-\tnot loaded\t-\t-\n", host)
		default:
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", host, r.Count, maxText(r.Max), useText(h, warn), statesText(r.Entries, 3), sourcesText(r.Entries, 3))
		}
		if h.Dropping {
			kl := r.KernelLog
			after = append(after, fmt.Sprintf("%s: TABLE FULL: %d kernel messages %s, the last at %s: new flows were dropped", host, kl.Recent, window(since), kl.Last.Format(time.RFC3339)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range after {
		fmt.Fprintln(w, a)
	}
	if verbose {
		for _, h := range out {
			if h.Err == nil {
				writeConntrackDetail(w, h, since)
			}
		}
	}
	return nil
}

func window(since time.Duration) string {
	if since == 0 {
		return "in the kernel log"
	}
	return "in the last " + shortDuration(since)
}

// shortDuration is d without its zero tails: 1h, 1h30m, 45s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func maxText(max int64) string {
	if max <= 0 {
		return "none"
	}
	return fmt.Sprint(max)
}

func useText(h *session.HostConntrack, warn float64) string {
	if h.Conntrack.Max <= 0 {
		return "-"
	}
	s := fmt.Sprintf("%.1f%%", 100*h.Use)
	if h.NearFull {
		s += fmt.Sprintf(" NEAR-FULL (>= %g%%)", 100*warn)
	}
	return s
}

func statesText(e *wire.ConntrackEntries, n int) string {
	if e == nil {
		return "?"
	}
	var parts []string
	for _, st := range e.States[:min(n, len(e.States))] {
		parts = append(parts, fmt.Sprintf("%s %s %d", st.Proto, st.State, st.Count))
	}
	if more := len(e.States) - n; more > 0 {
		parts = append(parts, fmt.Sprintf("+%d more", more))
	}
	if len(parts) == 0 {
		return "-"
	}
	return textsafe.Escape(strings.Join(parts, ", "))
}

func sourcesText(e *wire.ConntrackEntries, n int) string {
	if e == nil {
		return "?"
	}
	var parts []string
	for _, s := range e.TopSources[:min(n, len(e.TopSources))] {
		parts = append(parts, fmt.Sprintf("%s %d", s.Addr, s.Count))
	}
	if len(parts) == 0 {
		return "-"
	}
	return textsafe.Escape(strings.Join(parts, ", "))
}

func writeConntrackDetail(w io.Writer, h *session.HostConntrack, since time.Duration) {
	r := h.Conntrack
	fmt.Fprintf(w, "\n--- %s\n", textsafe.Escape(h.Host))
	if r.Loaded {
		line := fmt.Sprintf("%d of %s entries", r.Count, maxText(r.Max))
		if r.Buckets > 0 {
			line += fmt.Sprintf(", %d hash buckets", r.Buckets)
		}
		fmt.Fprintf(w, "  table:      %s\n", line)
	}
	if e := r.Entries; e != nil {
		line := fmt.Sprintf("%d entries from %s, %d parsed", e.Listed, e.Source, e.Parsed)
		if e.Unparsed > 0 {
			line += fmt.Sprintf(", %d unreadable", e.Unparsed)
		}
		if e.Truncated {
			line += ", the rest only counted"
		}
		fmt.Fprintf(w, "  listed:     %s\n", textsafe.Escape(line))
		for i, st := range e.States {
			label := "states:"
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(w, "  %-11s %s %s %d\n", label, textsafe.Escape(st.Proto), textsafe.Escape(st.State), st.Count)
		}
		for i, s := range e.TopSources {
			label := "sources:"
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(w, "  %-11s %s %d\n", label, textsafe.Escape(s.Addr), s.Count)
		}
		fmt.Fprintf(w, "  %-11s (%d distinct)\n", "", e.Sources)
	}
	if st := r.Stats; st != nil {
		fmt.Fprintf(w, "  counters:   drop %d, early_drop %d, insert_failed %d, invalid %d, chaintoolong %d (%s, since the network namespace began)\n",
			st.Drop, st.EarlyDrop, st.InsertFailed, st.Invalid, st.ChainTooLong, textsafe.Escape(st.Source))
	}
	if kl := r.KernelLog; kl != nil {
		switch {
		case kl.Error != "":
			fmt.Fprintf(w, "  kernel log: unreadable: %s\n", textsafe.Escape(kl.Error))
		case kl.TableFull == 0:
			fmt.Fprintf(w, "  kernel log: no table-full message (%s)\n", textsafe.Escape(kl.Source))
		default:
			fmt.Fprintf(w, "  kernel log: %d table-full messages, %d %s, the last at %s (%s)\n", kl.TableFull, kl.Recent, window(since), kl.Last.Format(time.RFC3339), textsafe.Escape(kl.Source))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note:       %s\n", textsafe.Escape(n))
	}
}
