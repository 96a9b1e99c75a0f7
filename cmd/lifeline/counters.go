package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/wire"
)

func init() { subcommands = append(subcommands, newCountersCmd) }

type countersOptions struct {
	readOptions
	watch time.Duration
	count int
	table string
	chain string
	top   int
	zero  bool
	yes   bool
	drops bool
}

// hostCounter is one counter line of one host.
type hostCounter struct {
	Host string `json:"host"`
	ruleset.Counter
}

// countersDoc is one reading (or, with --watch, one interval).
type countersDoc struct {
	Time     time.Time     `json:"time"`
	Interval time.Duration `json:"interval_ns,omitempty"`
	Counters []hostCounter `json:"counters"`
	// Uncounted: per host, the nft rules without a counter statement.
	Uncounted map[string]int    `json:"uncounted,omitempty"`
	Zeroed    map[string]string `json:"zeroed,omitempty"` // host -> backends reset
	Errors    map[string]string `json:"errors,omitempty"`
}

func newCountersCmd(g *globals) *cobra.Command {
	o := &countersOptions{}
	cmd := &cobra.Command{
		Use:   "counters TARGET",
		Short: "Per-rule packet and byte counters across hosts; --watch shows which rule counts right now",
		Long: `counters reads every targeted host's rule counters (and each base chain's
policy counter: a policy drop is often the answer) and lists the busiest
rules, with their text, across all hosts.

With --watch INTERVAL it reads again every interval and lists the rules by
how much they counted in that interval (--json: one document per
interval), so "which rule is dropping right
now, and on which host" is one command; Ctrl-C stops it (--count N stops
after N intervals).

nft counts only rules with a "counter" statement: lifeline says how many
rules have none, and lifeline trace shows which rule a packet hits.
--zero resets the counters after reading them (iptables: every table; nft:
where nftables has "reset rules"); it asks first unless --yes.`,
		Example: `  lifeline -i lab/inventory.yaml counters all --top 10
  lifeline -i lab/inventory.yaml counters web --watch 10s --drops      # what drops right now
  lifeline -i lab/inventory.yaml counters web --watch 10s --chain INPUT
  lifeline -i lab/inventory.yaml counters h01 --zero --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.watch != 0 && o.watch < time.Second {
				return usagef("--watch %s: give 1s or more", o.watch)
			}
			if o.top < 0 || o.count < 0 {
				return usagef("--top and --count take a number of 0 or more")
			}
			if o.zero && !o.yes {
				if g.jsonOut || g.stdin == nil {
					return usagef("--zero resets counters on the hosts: add --yes to do it without asking")
				}
				fmt.Fprintf(g.stderr, "Reset the rule counters of every host %s selects? [y/N] ", textsafe.Quote(args[0]))
				var a string
				fmt.Fscanln(g.stdin, &a)
				if a = strings.ToLower(strings.TrimSpace(a)); a != "y" && a != "yes" {
					return usagef("not reset")
				}
			}
			return runCounters(cmd.Context(), g, o, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().DurationVar(&o.watch, "watch", 0, "read again every `INTERVAL` and list the rules by what they counted in it")
	cmd.Flags().IntVar(&o.count, "count", 0, "with --watch: stop after N intervals (0: until Ctrl-C)")
	cmd.Flags().StringVar(&o.table, "table", "", "only tables whose name (or ID, e.g. \"nft inet filter\") is `T`")
	cmd.Flags().StringVar(&o.chain, "chain", "", "only chains named `C`")
	cmd.Flags().IntVar(&o.top, "top", 20, "list the N busiest rules (0: all)")
	cmd.Flags().BoolVar(&o.drops, "drops", false, "only rules that drop or reject, and DROP policies")
	cmd.Flags().BoolVar(&o.zero, "zero", false, "reset the counters after reading them")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "with --zero: do not ask")
	return cmd
}

func runCounters(ctx context.Context, g *globals, o *countersOptions, pattern string) error {
	var argsFor func(*inventory.Host) (*wire.StateArgs, error)
	if o.zero {
		argsFor = func(*inventory.Host) (*wire.StateArgs, error) { return &wire.StateArgs{Zero: true}, nil }
	}
	prev, doc, err := readCounters(ctx, g, o, pattern, argsFor)
	if err != nil {
		return err
	}
	if o.watch == 0 {
		doc.Counters = o.pick(doc.Counters, false)
		if err := printCounters(g, doc, false); err != nil {
			return err
		}
		if len(doc.Errors) > 0 {
			return failedError{fmt.Sprintf("%d hosts could not be read", len(doc.Errors))}
		}
		return nil
	}
	for n := 1; o.count == 0 || n <= o.count; n++ {
		select {
		case <-ctx.Done():
			return nil // Ctrl-C ends a watch: not an error
		case <-time.After(o.watch):
		}
		cur, doc, err := readCounters(ctx, g, o, pattern, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var all []hostCounter
		for host, cs := range cur {
			if _, ok := prev[host]; !ok {
				continue // no earlier reading of this host: no interval yet
			}
			for _, c := range ruleset.CounterDelta(prev[host], cs) {
				all = append(all, hostCounter{Host: host, Counter: c})
			}
		}
		doc.Interval = o.watch
		doc.Counters = o.pick(all, true)
		if err := printCounters(g, doc, true); err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// readCounters reads every host once.
func readCounters(ctx context.Context, g *globals, o *countersOptions, pattern string, argsFor func(*inventory.Host) (*wire.StateArgs, error)) (map[string][]ruleset.Counter, *countersDoc, error) {
	reads, err := readHosts(ctx, g, &o.readOptions, pattern, argsFor)
	if reads == nil {
		return nil, nil, err
	}
	doc := &countersDoc{Time: time.Now().UTC(), Uncounted: map[string]int{}, Errors: map[string]string{}, Zeroed: map[string]string{}}
	by := map[string][]ruleset.Counter{}
	for _, r := range reads {
		if r.err != nil {
			doc.Errors[r.host.Name] = textsafe.Truncate(r.err.Error())
			continue
		}
		by[r.host.Name] = ruleset.Counters(r.rs)
		if n := ruleset.Uncounted(r.rs); n > 0 {
			doc.Uncounted[r.host.Name] = n
		}
		if len(r.st.Zeroed) > 0 {
			doc.Zeroed[r.host.Name] = strings.Join(r.st.Zeroed, ", ")
		}
		for _, c := range by[r.host.Name] {
			doc.Counters = append(doc.Counters, hostCounter{Host: r.host.Name, Counter: c})
		}
	}
	return by, doc, err
}

// pick filters by --table/--chain and keeps the --top busiest, across
// hosts (by packets, or by what they counted in the interval).
func (o *countersOptions) pick(cs []hostCounter, byDelta bool) []hostCounter {
	var keep []hostCounter
	for _, c := range cs {
		if o.table != "" && c.Table != o.table && !strings.HasSuffix(c.Table, " "+o.table) {
			continue
		}
		if o.chain != "" && c.Chain != o.chain {
			continue
		}
		if o.drops && !c.Drops() {
			continue
		}
		if byDelta && c.DeltaPackets == 0 && c.DeltaBytes == 0 {
			continue
		}
		keep = append(keep, c)
	}
	val := func(c hostCounter) uint64 {
		if byDelta {
			return c.DeltaPackets
		}
		return c.Packets
	}
	sort.SliceStable(keep, func(i, j int) bool {
		a, b := keep[i], keep[j]
		if val(a) != val(b) {
			return val(a) > val(b)
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.Chain != b.Chain {
			return a.Chain < b.Chain
		}
		return a.Index < b.Index
	})
	if o.top > 0 && len(keep) > o.top {
		keep = keep[:o.top]
	}
	return keep
}

func printCounters(g *globals, doc *countersDoc, delta bool) error {
	return g.printer().Result(doc, func(w io.Writer) error {
		if delta {
			fmt.Fprintf(w, "--- %s, counted in the last %s\n", doc.Time.Local().Format(time.TimeOnly), doc.Interval)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tTABLE\tCHAIN\t#\tPACKETS\tBYTES\tRULE")
		for _, c := range doc.Counters {
			p, b := c.Packets, c.Bytes
			if delta {
				p, b = c.DeltaPackets, c.DeltaBytes
			}
			idx, text := fmt.Sprint(c.Index+1), c.Text
			if c.Policy {
				idx, text = "-", "(policy)"
			}
			if c.Comment != "" && !strings.Contains(text, c.Comment) {
				text += "  /* " + c.Comment + " */"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", textsafe.Escape(c.Host), textsafe.Escape(c.Table), textsafe.Escape(c.Chain), idx, p, b, oneLine(textsafe.Text(text)))
		}
		if len(doc.Counters) == 0 {
			fmt.Fprintln(tw, "(no rule counted anything)\t\t\t\t\t\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for host, n := range doc.Uncounted {
			fmt.Fprintf(w, "%s: %d nft rules have no counter statement and are not counted (add \"counter\", or see which rule a packet hits with lifeline trace)\n", textsafe.Escape(host), n)
		}
		for host, b := range doc.Zeroed {
			fmt.Fprintf(w, "%s: counters reset (%s)\n", textsafe.Escape(host), textsafe.Escape(b))
		}
		for host, e := range doc.Errors {
			fmt.Fprintf(w, "%s: ERROR %s\n", textsafe.Escape(host), oneLine(textsafe.Text(e)))
		}
		return nil
	})
}
