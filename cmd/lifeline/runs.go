package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/runstore"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

func init() { subcommands = append(subcommands, newRunsCmd) }

// runsRetentionHelp is what --help of the commands that write run folders
// says about them.
var runsRetentionHelp = fmt.Sprintf(`Each run keeps its hosts' results and the snapshots their begin took in
~/.local/state/lifeline/runs/RUN-ID ($XDG_STATE_HOME/lifeline/runs),
snapshots stored once per content in runs/objects. After each run the
oldest runs are removed: lifeline keeps the newest %d runs and none older
than %s (LIFELINE_RUNS_KEEP, LIFELINE_RUNS_OLDER_THAN; 0 for no limit),
never a run of the last hour, one being written, or one that keeps an
armed transaction's token. lifeline runs shows their size; lifeline runs
prune removes more.`, runstore.DefaultKeep, runstore.FormatAge(runstore.DefaultOlderThan))

// startRun names a new run and holds its folder (no prune removes it)
// until end, which then applies the retention (runstore.AutoPolicy) to
// the other runs. Call it once the targets are known: it creates the
// folder.
func startRun(g *globals) (runID, runDir string, end func()) {
	runID = session.NewTxID(time.Now())
	runDir = runFolder(runID)
	l, err := runstore.Hold(runDir)
	if err != nil {
		fmt.Fprintf(g.stderr, "lifeline: warning: %s\n", textsafe.Text(err.Error()))
	}
	return runID, runDir, func() {
		_ = l.Close()
		autoPrune(g, runID)
	}
}

// autoPrune applies the retention after a run. It never fails the run: a
// problem is a warning.
func autoPrune(g *globals, except string) {
	p, err := runstore.AutoPolicy(except, time.Now())
	if err != nil {
		fmt.Fprintf(g.stderr, "lifeline: warning: runs are not pruned: %s\n", textsafe.Text(err.Error()))
		return
	}
	if p.Keep == 0 && p.OlderThan == 0 {
		return
	}
	root, err := runstore.Root()
	if err != nil {
		return
	}
	rep, err := runstore.Prune(root, p, false, 2*time.Second)
	if err != nil {
		fmt.Fprintf(g.stderr, "lifeline: warning: pruning old runs: %s (hint: lifeline runs prune --dry-run shows what it would do)\n", textsafe.Text(err.Error()))
		return
	}
	if g.verbose && (len(rep.Removed) > 0 || rep.Objects > 0) {
		fmt.Fprintf(g.stderr, "lifeline: runs: removed %d old runs and %d snapshot objects, freed %s\n", len(rep.Removed), rep.Objects, runstore.FormatBytes(rep.Freed))
	}
}

func newRunsCmd(g *globals) *cobra.Command {
	list := func(cmd *cobra.Command, args []string) error { return runRunsList(g) }
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the run folders this workstation keeps, their size, and prune them",
		Long: runsRetentionHelp + `

  lifeline runs [list]          every run, newest first, and the total size
  lifeline runs show RUN [HOST] a run's hosts, or the snapshot HOST's begin took
  lifeline runs prune           remove old runs now (--keep, --older-than, --dry-run)`,
		Example: `  lifeline runs
  lifeline runs prune --keep 10 --dry-run
  lifeline runs show 20261204T101500Z-1a2b3c4d h01`,
		Args: cobra.NoArgs,
		RunE: list,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   "List the runs, newest first, with their hosts' outcomes and size",
		Long:    "list prints every run folder, newest first: when it started, its hosts, their outcomes, its size and whether it is open (keeps an armed transaction's token) or busy (being written); then the count and the total size, snapshot objects included.",
		Example: "  lifeline runs list\n  lifeline --json runs list",
		Args:    cobra.NoArgs,
		RunE:    list,
	})
	cmd.AddCommand(newRunsPruneCmd(g), newRunsShowCmd(g))
	return cmd
}

// runsDoc is `lifeline runs list`'s result.
type runsDoc struct {
	Dir       string           `json:"dir"`
	Runs      []runstore.Run   `json:"runs"`
	Usage     runstore.Usage   `json:"usage"`
	Retention runsRetentionDoc `json:"retention"`
}

type runsRetentionDoc struct {
	Keep      int    `json:"keep"`
	OlderThan string `json:"older_than"`
}

func runRunsList(g *globals) error {
	root, err := runstore.Root()
	if err != nil {
		return err
	}
	runs, err := runstore.ListRuns(root)
	if err != nil {
		return err
	}
	now := time.Now()
	for i := range runs {
		if err := runstore.Inspect(&runs[i], now, true, true); err != nil {
			return err
		}
	}
	if runs == nil {
		runs = []runstore.Run{}
	}
	p, perr := runstore.AutoPolicy("", now)
	doc := runsDoc{Dir: root, Runs: runs, Usage: runstore.Measure(root, runs), Retention: runsRetentionDoc{Keep: p.Keep, OlderThan: runstore.FormatAge(p.OlderThan)}}
	return g.printer().Result(doc, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tSTARTED\tHOSTS\tOUTCOMES\tSIZE\tSTATE")
		for _, r := range runs {
			state := ""
			switch {
			case r.Open != "":
				state = "open (" + textsafe.Escape(r.Open) + ")"
			case r.Busy:
				state = "busy"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Start.Format("2006-01-02 15:04:05Z"), r.Hosts, outcomeCounts(r.Outcomes), runstore.FormatBytes(r.Bytes), state)
		}
		tw.Flush()
		u := doc.Usage
		fmt.Fprintf(w, "%d runs, %s in %s (run folders %s, %d snapshot objects %s)\n", u.Runs, runstore.FormatBytes(u.Bytes), textsafe.Escape(root), runstore.FormatBytes(u.RunBytes), u.Objects, runstore.FormatBytes(u.ObjectBytes))
		fmt.Fprintf(w, "retention after each run: %s; lifeline runs prune removes more\n", retentionText(p.Keep, p.OlderThan))
		if perr != nil {
			fmt.Fprintf(w, "warning: %s\n", textsafe.Text(perr.Error()))
		}
		return nil
	})
}

func retentionText(keep int, older time.Duration) string {
	var parts []string
	if keep > 0 {
		parts = append(parts, fmt.Sprintf("the newest %d run%s", keep, map[bool]string{true: "s"}[keep != 1]))
	}
	if older > 0 {
		parts = append(parts, "none older than "+runstore.FormatAge(older))
	}
	if len(parts) == 0 {
		return "no limit (0 runs to keep, age 0): nothing is removed"
	}
	return "keep " + strings.Join(parts, ", ")
}

func outcomeCounts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", textsafe.Escape(k), m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

type runsPruneOptions struct {
	keep      int
	olderThan string
	dryRun    bool
	// keepSet, olderSet: the flag was given; without either, the
	// automatic retention applies.
	keepSet, olderSet bool
}

// runsPruneDoc is `lifeline runs prune`'s result.
type runsPruneDoc struct {
	Policy runsRetentionDoc `json:"policy"`
	*runstore.Report
	Left runstore.Usage `json:"left"`
}

func newRunsPruneCmd(g *globals) *cobra.Command {
	o := &runsPruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove old run folders and the snapshot objects no run refers to",
		Long: `prune removes every run that is not among the newest --keep or that
started more than --older-than ago, then the snapshot objects no remaining
run refers to, and prints what it freed. Without either flag it applies the
retention that runs after every apply (the newest 50 runs, none older than
30 days, or LIFELINE_RUNS_KEEP / LIFELINE_RUNS_OLDER_THAN); with one of
them, only that limit applies. It never removes a run another lifeline
process is writing, or one that keeps a transaction's token (a host left
armed by --no-confirm, or whose outcome is unknown) until a day past its
deadline: those are listed with why. Folders that are not runs are never touched.

It is safe to interrupt: a run is renamed away before it is removed, and
objects are swept only after every remaining run's references were read.
The next prune finishes what an interrupted one left.`,
		Example: `  lifeline runs prune --dry-run
  lifeline runs prune --keep 1
  lifeline runs prune --older-than 7d
  lifeline runs prune --keep 20 --older-than 90d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.keepSet, o.olderSet = cmd.Flags().Changed("keep"), cmd.Flags().Changed("older-than")
			return runRunsPrune(g, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.keep, "keep", runstore.DefaultKeep, "keep the newest N runs (0: no count limit); alone, no age limit")
	f.StringVar(&o.olderThan, "older-than", runstore.FormatAge(runstore.DefaultOlderThan), "remove runs that started longer ago: days (30d) or a duration (12h); 0: no age limit; alone, no count limit")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be removed and freed; remove nothing")
	return cmd
}

func runRunsPrune(g *globals, o *runsPruneOptions) error {
	if o.keep < 0 {
		return usagef("--keep %d: want 0 (no count limit) or more", o.keep)
	}
	age, err := runstore.ParseAge(o.olderThan)
	if err != nil {
		return usagef("--older-than: %v", err)
	}
	p := runstore.Policy{Keep: o.keep, OlderThan: age, Now: time.Now(), Sweep: true}
	switch {
	case !o.keepSet && !o.olderSet:
		auto, err := runstore.AutoPolicy("", p.Now)
		if err != nil {
			return usagef("%v", err)
		}
		p.Keep, p.OlderThan = auto.Keep, auto.OlderThan
	case !o.keepSet:
		p.Keep = 0
	case !o.olderSet:
		p.OlderThan = 0
	}
	root, err := runstore.Root()
	if err != nil {
		return err
	}
	rep, err := runstore.Prune(root, p, o.dryRun, 10*time.Second)
	if err != nil {
		return fmt.Errorf("runs prune: %w", err)
	}
	left, _ := runstore.ListRuns(root)
	for i := range left {
		_ = runstore.Inspect(&left[i], time.Now(), false, false)
	}
	doc := runsPruneDoc{Policy: runsRetentionDoc{Keep: p.Keep, OlderThan: runstore.FormatAge(p.OlderThan)}, Report: rep, Left: runstore.Measure(root, left)}
	return g.printer().Result(doc, func(w io.Writer) error {
		fmt.Fprintf(w, "policy: %s\n", retentionText(p.Keep, p.OlderThan))
		verb, freed := "removed", "freed"
		if rep.DryRun {
			verb, freed = "would remove", "would free"
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, d := range rep.Removed {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", verb, d.ID, runstore.FormatBytes(d.Bytes), d.Why)
		}
		for _, d := range rep.Protected {
			fmt.Fprintf(tw, "kept\t%s\t%s\t%s\n", d.ID, runstore.FormatBytes(d.Bytes), textsafe.Escape(d.Why))
		}
		tw.Flush()
		fmt.Fprintf(w, "%s %d runs and %d unreferenced snapshot objects (%s): %s %s\n", verb, len(rep.Removed), rep.Objects, runstore.FormatBytes(rep.ObjectBytes), freed, runstore.FormatBytes(rep.Freed))
		if rep.SweepSkipped != "" {
			fmt.Fprintf(w, "note: %s\n", rep.SweepSkipped)
		}
		if !rep.DryRun {
			fmt.Fprintf(w, "left: %d runs, %s in %s\n", doc.Left.Runs, runstore.FormatBytes(doc.Left.Bytes), textsafe.Escape(root))
		}
		return nil
	})
}

// runsShowHost is one host of `lifeline runs show RUN`.
type runsShowHost struct {
	*session.Result
	Snapshot string `json:"snapshot_sha256,omitempty"`
}

func newRunsShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show RUN [HOST]",
		Short: "Show a run's hosts, or the snapshot a host's begin took",
		Long: `show prints a run's hosts (outcome, tx id, error) and, with HOST, the
snapshot that host's begin took: each part (backend, format) as its own
tool prints it (nft list ruleset, iptables-save), ready for nft -f or
iptables-restore. RUN is a run id (run_id in --json) or a run folder.`,
		Example: `  lifeline runs show 20261204T101500Z-1a2b3c4d
  lifeline runs show 20261204T101500Z-1a2b3c4d h01 > h01-before.txt`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if !strings.Contains(dir, "/") {
				if !runstore.IsRunID(dir) {
					return usagef("runs show: %q is not a run id (lifeline runs lists them)", dir)
				}
				dir = runFolder(dir)
			}
			if len(args) == 2 {
				return runsShowSnapshot(g, dir, args[1])
			}
			results, err := readReports([]string{dir})
			if err != nil {
				return err
			}
			hosts := make([]runsShowHost, len(results))
			for i, r := range results {
				hosts[i].Result = r
				if ref, err := runstore.ReadRef(dir, session.HostFile(r.Host)); err == nil {
					hosts[i].Snapshot = ref.SHA
				}
			}
			doc := struct {
				Dir   string         `json:"dir"`
				Hosts []runsShowHost `json:"hosts"`
			}{dir, hosts}
			return g.printer().Result(doc, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "HOST\tOUTCOME\tTX\tSNAPSHOT\tERROR")
				for _, h := range hosts {
					snap := "-"
					if h.Snapshot != "" {
						snap = h.Snapshot[:12]
					} else if _, err := runstore.Snapshot(dir, session.HostFile(h.Host)); err == nil {
						snap = "(old layout)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(h.Host), h.Outcome, textsafe.Escape(h.TxID), snap, oneLine(textsafe.Text(h.Error)))
				}
				return tw.Flush()
			})
		},
	}
}

func runsShowSnapshot(g *globals, dir, host string) error {
	s, err := runstore.Snapshot(dir, session.HostFile(host))
	if err != nil {
		return fmt.Errorf("runs show: %w (hint: lifeline runs show %s lists the run's hosts)", err, filepath.Base(dir))
	}
	doc := struct {
		Host string `json:"host"`
		*wire.Snapshot
	}{host, s}
	return g.printer().Result(doc, func(w io.Writer) error {
		for _, p := range s.Parts {
			fmt.Fprintf(w, "# %s (%s), taken %s\n", textsafe.Escape(p.Backend), p.Format, s.Taken.UTC().Format(time.RFC3339))
			fmt.Fprint(w, textsafe.Escape(p.Text))
			if !strings.HasSuffix(p.Text, "\n") {
				fmt.Fprintln(w)
			}
		}
		return nil
	})
}
