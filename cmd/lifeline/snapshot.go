package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/history"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
)

func init() {
	subcommands = append(subcommands, newSnapshotCmd, newHistoryCmd, newShowCmd)
}

// snapshotResult is one host's line of `lifeline snapshot`.
type snapshotResult struct {
	Host string `json:"host"`
	history.Entry
	// NewObject: the state was not in the history yet; NewEntry: the
	// history lists it as a change (an unchanged host adds none).
	NewObject bool   `json:"new_object"`
	NewEntry  bool   `json:"new_entry"`
	Error     string `json:"error,omitempty"`
}

func newSnapshotCmd(g *globals) *cobra.Command {
	o := &readOptions{}
	cmd := &cobra.Command{
		Use:   "snapshot TARGET",
		Short: "Record every host's whole firewall state in the local history",
		Long: `snapshot reads every targeted host's whole firewall state — every table of
every backend (nft, iptables-nft, iptables-legacy, IPv4 and IPv6), every
set with its elements, ipset's sets — and records it in the local history,
one folder per host under ~/.local/state/lifeline/history (or
$XDG_STATE_HOME/lifeline/history). It changes nothing on the hosts and takes
no lock; it uploads the helper if the host does not have it.

States are stored by content (the sha256 of their counter- and handle-free
form): an unchanged host is stored once however often it is read, and adds
no new history entry. apply, exec and shell record the state after each
confirm too, with the transaction's id.

  lifeline history HOST       lists a host's entries
  lifeline show HOST [ID]     prints one
  lifeline diff HOST ID       compares the live state with one`,
		Example: `  lifeline -i lab/inventory.yaml snapshot all
  lifeline -i lab/inventory.yaml history h01`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshot(cmd.Context(), g, o, args[0])
		},
	}
	o.flags(cmd)
	return cmd
}

func runSnapshot(ctx context.Context, g *globals, o *readOptions, pattern string) error {
	store, err := historyStore()
	if err != nil {
		return err
	}
	reads, rerr := readHosts(ctx, g, o, pattern, nil)
	if reads == nil {
		return rerr
	}
	who := origin(session.NewTxID(time.Now()))
	out := make([]snapshotResult, len(reads))
	failed := 0
	for i, r := range reads {
		res := snapshotResult{Host: r.host.Name}
		if r.err == nil {
			var e history.Entry
			e, res.NewObject, res.NewEntry, r.err = store.Record(session.HostFile(r.host.Name), r.rs, history.Entry{Who: who, Kind: history.KindSnapshot, HostTime: r.st.Now})
			res.Entry = e
		}
		if r.err != nil {
			res.Error = textsafe.Truncate(r.err.Error())
			failed++
		}
		out[i] = res
	}
	if err := g.printer().Result(out, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSNAPSHOT\tTABLES\tRULES\t")
		for _, r := range out {
			switch {
			case r.Error != "":
				fmt.Fprintf(tw, "%s\t-\t\t\tERROR: %s\n", textsafe.Escape(r.Host), oneLine(textsafe.Text(r.Error)))
			case r.NewEntry:
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\trecorded\n", textsafe.Escape(r.Host), r.ID, r.Tables, r.Rules)
			default:
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\tunchanged since %s\n", textsafe.Escape(r.Host), r.ID, r.Tables, r.Rules, r.Time.Local().Format(time.DateTime))
			}
		}
		return tw.Flush()
	}); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	if failed > 0 {
		return failedError{fmt.Sprintf("%d of %d hosts could not be read", failed, len(out))}
	}
	return nil
}

func newHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history HOST",
		Short: "List the firewall states recorded for a host",
		Long: `history lists the states of HOST recorded in the local history, oldest
first: by lifeline snapshot (kind snapshot) and after every confirmed apply,
exec or shell (kind confirmed, with its transaction id). A host read again
unchanged adds no entry. The ID column names an entry for show and diff
(any unique prefix of 4 or more digits; also "latest" and "confirmed").
It reads only local files.`,
		Example: `  lifeline history h01
  lifeline --json history h01`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := historyStore()
			if err != nil {
				return err
			}
			es, err := store.List(session.HostFile(args[0]))
			if err != nil {
				return err
			}
			if len(es) == 0 {
				return usagef("no history for %s in %s (hint: lifeline snapshot %s)", args[0], store.Dir, args[0])
			}
			return g.printer().Result(es, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTIME\tKIND\tTX\tTABLES\tRULES\tBY")
				for _, e := range es {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", e.ID, e.Time.Local().Format(time.DateTime), e.Kind, textsafe.Escape(orDash(e.TxID)), e.Tables, e.Rules, textsafe.Escape(e.Who))
				}
				return tw.Flush()
			})
		},
	}
}

func newShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show HOST [SNAPSHOT]",
		Short: "Print one recorded state of a host (default: the latest)",
		Long: `show prints a state of HOST from the local history: SNAPSHOT is an entry's
ID (or a unique prefix of 4+ digits), "latest" (the default) or
"confirmed" (the state after the last confirmed transaction). The text is
lifeline's canonical form: tables by backend, chains with hook, priority
and policy, rules in their own tool's syntax, sets with sorted elements;
counters and handles left out. --json prints the model.`,
		Example: `  lifeline show h01
  lifeline show h01 3f2a9c1b`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := historyStore()
			if err != nil {
				return err
			}
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			hf := session.HostFile(args[0])
			e, err := store.Find(hf, ref)
			if err != nil {
				return usagef("%s: %v (hint: lifeline history %s)", args[0], err, args[0])
			}
			rs, err := store.Load(hf, e)
			if err != nil {
				return err
			}
			return g.printer().Result(struct {
				Host  string        `json:"host"`
				Entry history.Entry `json:"entry"`
				State any           `json:"state"`
			}{args[0], e, rs}, func(w io.Writer) error {
				fmt.Fprintf(w, "# %s %s (%s %s)\n", textsafe.Escape(args[0]), e.ID, e.Kind, e.Time.Local().Format(time.DateTime))
				_, err := w.Write([]byte(textsafe.Text(string(rs.Canonical()))))
				return err
			})
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
