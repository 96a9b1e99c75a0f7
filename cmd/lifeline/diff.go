package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/history"
	"github.com/lifeline-dev/lifeline/internal/state"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

func init() { subcommands = append(subcommands, newDiffCmd, newDriftCmd) }

// hostDiff is one host's comparison.
type hostDiff struct {
	Host string `json:"host"`
	// Against says what the live state was compared with: "file PATH",
	// "snapshot ID (KIND TIME)", "host NAME".
	Against string         `json:"against"`
	Drift   bool           `json:"drift"`
	Delta   *ruleset.Delta `json:"delta,omitempty"`
	Summary string         `json:"summary,omitempty"`
	Error   string         `json:"error,omitempty"`
	err     error
}

type diffOptions struct {
	readOptions
	format        string
	includeOwners bool
	color         string
}

func newDiffCmd(g *globals) *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff TARGET [FILE|SNAPSHOT|HOST]",
		Short: "Semantic diff of each host's live firewall against a file, a snapshot or another host",
		Long: `diff compares every targeted host's live firewall state with:

  FILE      a ruleset file (nft or iptables-save syntax), as the host's
            kernel would hold it: the helper loads it into a private,
            empty network namespace and lists it back, so "-p tcp --dport
            22" and "-p tcp -m tcp --dport 22" are the same rule. Only the
            tables of the backend that would load the file are compared.
  SNAPSHOT  an entry of the host's local history (an ID from lifeline
            history HOST, "latest" or "confirmed")
  HOST      another host's live state
  (none)    the state after the host's last confirmed transaction

The diff is semantic: counters and handles never count, set elements are
compared as sets, iptables-save and nft listings are normalised, comments
are kept. It is grouped by table and chain, "-" for what only the other
side has and "+" for what only the live state has, coloured on a terminal.
Chains of lifeline's own guard and trace never count; those of other
owners (Docker, kube-proxy, ...) do, unless --exclude-owners.

Nothing changes on any host. Exit status: 0 no differences, 1 differences,
2 a host could not be compared (unreachable, no such snapshot, a file that
does not load).`,
		Example: `  lifeline -i lab/inventory.yaml diff h01                 # vs. last confirmed
  lifeline -i lab/inventory.yaml diff web rules/web.nft
  lifeline -i lab/inventory.yaml diff h01 3f2a9c1b
  lifeline -i lab/inventory.yaml diff h02 h01             # h02 vs h01`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			return runDiff(cmd.Context(), g, o, args[0], ref)
		},
	}
	o.flags(cmd)
	cmd.Flags().StringVar(&o.format, "format", "", "FILE's syntax: nft, iptables or ip6tables (default: from the name or content)")
	cmd.Flags().BoolVar(&o.includeOwners, "exclude-owners", false, "leave out the tables and chains of other owners (Docker, kube-proxy, firewalld, ...)")
	cmd.Flags().StringVar(&o.color, "color", "auto", "colour the diff: auto (on a terminal), always, never")
	return cmd
}

func runDiff(ctx context.Context, g *globals, o *diffOptions, pattern, ref string) error {
	store, err := historyStore()
	if err != nil {
		return err
	}
	scope := state.Scope{IncludeOwners: !o.includeOwners} // the flag is --exclude-owners
	var resolve func(h *inventory.Host, live *ruleset.Ruleset, cand *ruleset.Ruleset, st *session.HostState) (string, *ruleset.Ruleset, state.Scope, error)
	var argsFor func(h *inventory.Host) (*wire.StateArgs, error)
	var other *hostRead
	switch {
	case ref != "" && fileExists(ref):
		argsFor = candidateArgs(ref, o.format)
		resolve = func(h *inventory.Host, _, cand *ruleset.Ruleset, st *session.HostState) (string, *ruleset.Ruleset, state.Scope, error) {
			return "file " + ref, cand, state.CandidateScope(st.Candidate, scope.IncludeOwners), nil
		}
	case ref == "" || looksLikeSnapshot(ref):
		resolve = snapshotResolver(store, ref, scope)
	default:
		reads, err := readHosts(ctx, g, &o.readOptions, ref, nil)
		if err != nil {
			return err
		}
		if len(reads) != 1 {
			return usagef("%q is not a file or a snapshot id, and names %d hosts, not one", ref, len(reads))
		}
		if other = reads[0]; other.err != nil {
			return fmt.Errorf("%s: %w", other.host.Name, other.err)
		}
		resolve = func(*inventory.Host, *ruleset.Ruleset, *ruleset.Ruleset, *session.HostState) (string, *ruleset.Ruleset, state.Scope, error) {
			return "host " + other.host.Name, other.rs, scope, nil
		}
	}
	reads, rerr := readHosts(ctx, g, &o.readOptions, pattern, argsFor)
	if reads == nil {
		return rerr
	}
	out := compareAll(reads, resolve)
	if err := printDiffs(g, out, colorOn(o.color), true, diffLabels); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	return diffExit(out, "differ")
}

// compareAll compares each host's live state with what resolve names.
func compareAll(reads []*hostRead, resolve func(*inventory.Host, *ruleset.Ruleset, *ruleset.Ruleset, *session.HostState) (string, *ruleset.Ruleset, state.Scope, error)) []*hostDiff {
	out := make([]*hostDiff, len(reads))
	for i, r := range reads {
		d := &hostDiff{Host: r.host.Name}
		out[i] = d
		if r.err != nil {
			d.err = r.err
			continue
		}
		against, other, sc, err := resolve(r.host, r.rs, r.cand, r.st)
		d.Against = against
		if err != nil {
			d.err = err
			continue
		}
		// "-" is what only the reference has, "+" what only the live state has
		d.Delta = state.Compare(other, r.rs, sc)
		d.Drift = !d.Delta.Empty()
		d.Summary = state.Summary(d.Delta)
	}
	for _, d := range out {
		if d.err != nil {
			d.Error = textsafe.Truncate(d.err.Error())
		}
	}
	return out
}

func diffExit(out []*hostDiff, verb string) error {
	errs, drift := 0, 0
	for _, d := range out {
		switch {
		case d.err != nil:
			errs++
		case d.Drift:
			drift++
		}
	}
	switch {
	case errs > 0:
		return failedCodeError{failedError{fmt.Sprintf("%d of %d hosts could not be compared", errs, len(out))}, 2}
	case drift > 0:
		return failedError{fmt.Sprintf("%d of %d hosts %s", drift, len(out), verb)}
	}
	return nil
}

// diffWords word a comparison's verdict lines, diff's and drift's: differs
// takes the reference (%[2]s) and the summary (%[3]s) after the host, same
// the reference.
type diffWords struct{ differs, same string }

var (
	diffLabels  = diffWords{"DIFFERS\tfrom %[2]s: %[3]s", "same\tas %s"}
	driftLabels = diffWords{"DRIFT\t%[3]s (against %[2]s)", "in sync\twith %s"}
)

// printDiffs prints one verdict line per host, and the diffs when full.
func printDiffs(g *globals, out []*hostDiff, color, full bool, words diffWords) error {
	return g.printer().Result(out, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, d := range out {
			switch {
			case d.err != nil:
				fmt.Fprintf(tw, "%s\tERROR\t%s\n", textsafe.Escape(d.Host), oneLine(textsafe.Text(d.Error)))
			case d.Drift:
				fmt.Fprintf(tw, "%s\t"+words.differs+"\n", textsafe.Escape(d.Host), textsafe.Escape(d.Against), textsafe.Escape(d.Summary))
			default:
				fmt.Fprintf(tw, "%s\t"+words.same+"\n", textsafe.Escape(d.Host), textsafe.Escape(d.Against))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if !full {
			return nil
		}
		for _, d := range out {
			if d.Drift {
				fmt.Fprintf(w, "\n=== %s (- %s, + live)\n", textsafe.Escape(d.Host), textsafe.Escape(d.Against))
				writeDelta(w, d.Delta, color)
			}
		}
		return nil
	})
}

// candidateArgs asks each host to list FILE (or, file "", the host's own
// ruleset from the inventory) as its kernel would hold it.
func candidateArgs(file, format string) func(h *inventory.Host) (*wire.StateArgs, error) {
	return func(h *inventory.Host) (*wire.StateArgs, error) {
		ts, err := applyTargets([]*inventory.Host{h}, file, format, 0)
		if err != nil {
			var ue usageError
			if errors.As(err, &ue) {
				err = ue.err
			}
			return nil, err
		}
		t := ts[0]
		return &wire.StateArgs{Candidate: &wire.RulesetChange{Format: t.Format, Text: t.Ruleset, FormatExplicit: t.FormatExplicit}}, nil
	}
}

// snapshotResolver compares with the host's history entry ref ("" : the
// last confirmed one).
func snapshotResolver(store *history.Store, ref string, sc state.Scope) func(*inventory.Host, *ruleset.Ruleset, *ruleset.Ruleset, *session.HostState) (string, *ruleset.Ruleset, state.Scope, error) {
	return func(h *inventory.Host, _, _ *ruleset.Ruleset, _ *session.HostState) (string, *ruleset.Ruleset, state.Scope, error) {
		want := ref
		if want == "" {
			want = history.KindConfirmed
		}
		hf := session.HostFile(h.Name)
		e, err := store.Find(hf, want)
		if err != nil {
			if ref == "" {
				err = fmt.Errorf("%w (hint: a confirmed apply, exec or shell records one; or give a snapshot: lifeline snapshot %s, then lifeline history %s)", err, h.Name, h.Name)
			}
			return "snapshot " + want, nil, sc, err
		}
		rs, err := store.Load(hf, e)
		return fmt.Sprintf("snapshot %s (%s %s)", e.ID, e.Kind, e.Time.Local().Format("2006-01-02 15:04:05")), rs, sc, err
	}
}

func looksLikeSnapshot(s string) bool {
	if s == "latest" || s == history.KindConfirmed {
		return true
	}
	return len(s) >= 4 && len(s) <= 64 && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// colorOn decides --color.
func colorOn(mode string) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	st, err := os.Stdout.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type driftOptions struct {
	readOptions
	against       string
	groupFiles    bool
	lastConfirmed bool
	format        string
	includeOwners bool
	color         string
}

func newDriftCmd(g *globals) *cobra.Command {
	o := &driftOptions{}
	cmd := &cobra.Command{
		Use:   "drift TARGET (--against FILE | --against-group-files | --against-last-confirmed)",
		Short: "Which hosts differ from their desired firewall state",
		Long: `drift tells, per host, whether the live firewall differs from its desired
state, one line per host ("in sync" or "DRIFT" with a summary); -v adds
the diff (see lifeline diff for how states are compared). The desired
state is one of:

  --against FILE              one ruleset file for every host
  --against-group-files       each host's own ruleset from the inventory
                              (ruleset: of the host or one of its groups)
  --against-last-confirmed    the state after each host's last confirmed
                              transaction (from the local history)

Chains and tables of other owners (Docker, kube-proxy, Calico, firewalld,
ufw, fail2ban, CrowdSec) are left out by default — they rewrite theirs all
day — and lifeline's own guard and trace chains never count;
--include-owners keeps the foreign ones. Nothing changes on any host.

Exit status, for monitoring: 0 no host drifted, 1 some host drifted, 2 some
host could not be compared (unreachable, no desired state, a file that
does not load) — 2 wins over 1.`,
		Example: `  lifeline -i inventory.yaml drift all --against-group-files
  lifeline -i inventory.yaml drift web --against rules/web.nft -v
  lifeline -i inventory.yaml --json drift all --against-last-confirmed`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, b := range []bool{o.against != "", o.groupFiles, o.lastConfirmed} {
				if b {
					n++
				}
			}
			if n != 1 {
				return usagef("drift needs exactly one of --against FILE, --against-group-files, --against-last-confirmed")
			}
			return runDrift(cmd.Context(), g, o, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().StringVar(&o.against, "against", "", "the desired ruleset `FILE` for every host")
	cmd.Flags().BoolVar(&o.groupFiles, "against-group-files", false, "each host's ruleset file from the inventory")
	cmd.Flags().BoolVar(&o.lastConfirmed, "against-last-confirmed", false, "the state after each host's last confirmed transaction")
	cmd.Flags().StringVar(&o.format, "format", "", "the files' syntax: nft, iptables or ip6tables (default: from the name or content)")
	cmd.Flags().BoolVar(&o.includeOwners, "include-owners", false, "also compare the tables and chains of other owners (Docker, kube-proxy, ...)")
	cmd.Flags().StringVar(&o.color, "color", "auto", "colour the -v diff: auto (on a terminal), always, never")
	return cmd
}

func runDrift(ctx context.Context, g *globals, o *driftOptions, pattern string) error {
	if o.against != "" && !fileExists(o.against) {
		return usagef("--against %s: not a readable file", o.against)
	}
	scope := state.Scope{IncludeOwners: o.includeOwners}
	var argsFor func(*inventory.Host) (*wire.StateArgs, error)
	var resolve func(*inventory.Host, *ruleset.Ruleset, *ruleset.Ruleset, *session.HostState) (string, *ruleset.Ruleset, state.Scope, error)
	if o.lastConfirmed {
		store, err := historyStore()
		if err != nil {
			return err
		}
		resolve = snapshotResolver(store, history.KindConfirmed, scope)
	} else {
		argsFor = candidateArgs(o.against, o.format) // "" : the host's own file
		resolve = func(h *inventory.Host, _, cand *ruleset.Ruleset, st *session.HostState) (string, *ruleset.Ruleset, state.Scope, error) {
			name := o.against
			if name == "" {
				name = h.Ruleset
			}
			return "file " + name, cand, state.CandidateScope(st.Candidate, o.includeOwners), nil
		}
	}
	reads, rerr := readHosts(ctx, g, &o.readOptions, pattern, argsFor)
	if reads == nil {
		return rerr
	}
	out := compareAll(reads, resolve)
	for _, d := range out {
		if d.Delta != nil && d.Delta.Empty() {
			d.Delta = nil
		}
	}
	if err := printDiffs(g, out, colorOn(o.color), g.verbose, driftLabels); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	return diffExit(out, "drifted")
}

// writeDelta prints a delta, escaped for the terminal, coloured (ANSI) on
// request: what only the live state has green, what it lacks red.
func writeDelta(w io.Writer, d *ruleset.Delta, color bool) {
	var b strings.Builder
	d.Write(&b, false)
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l == "" {
			continue
		}
		l = textsafe.Escape(l)
		switch t := strings.TrimLeft(l, " "); {
		case !color:
		case strings.HasPrefix(t, "+"):
			l = "\x1b[32m" + strings.TrimSuffix(l, "\n") + "\x1b[0m\n"
		case strings.HasPrefix(t, "-") && !strings.HasPrefix(t, "---"):
			l = "\x1b[31m" + strings.TrimSuffix(l, "\n") + "\x1b[0m\n"
		case strings.HasPrefix(t, "---") || strings.HasPrefix(t, "+++"):
			l = "\x1b[1m" + strings.TrimSuffix(l, "\n") + "\x1b[0m\n"
		}
		fmt.Fprint(w, l)
	}
}
