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
)

type statusOptions struct {
	abort bool
	limit string
	forks int
}

func init() { subcommands = append(subcommands, newStatusCmd) }

func newStatusCmd(g *globals) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status TARGET",
		Short: "Show each host's latest transaction; --abort reverts one left armed",
		Long: `status asks every targeted host for its latest lifeline transaction: its
state (armed, applied, confirmed, reverted, revert-failed, refused), its
deadline, whether its revert timer is alive, and — after a revert — whether
the live ruleset equals the snapshot. A transaction left armed across a
reboot is reported as "reverted (reboot)": nothing was persisted, the host
booted its old config, and VERIFIED then compares the live ruleset with
that boot config (/etc/nftables.conf, /etc/iptables/rules.v4, ...) rather
than with the snapshot.

A host needs recovery when its transaction is still armed or applied but
nothing will revert it by itself: its revert timer died, or it is hung
(the deadline passed more than 15s ago). --abort reverts a transaction that
is still armed or applied right now (restore the snapshot, verify it): the
recovery for such a host. Aborting another operator's transaction works,
with a warning; the host records who aborted.

The exit status is 1 when any host could not be asked, needs recovery, has
a failed revert, or a reverted transaction whose snapshot is not live.`,
		Example: `  lifeline -i lab/inventory.yaml status all
  lifeline -i lab/inventory.yaml status h01 --abort`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, o, args[0])
		},
	}
	cmd.Flags().BoolVar(&o.abort, "abort", false, "revert a transaction that is still armed or applied, now")
	cmd.Flags().StringVarP(&o.limit, "limit", "l", "", "further limit the targeted hosts")
	cmd.Flags().IntVar(&o.forks, "forks", 20, "hosts asked in parallel")
	return cmd
}

func runStatus(ctx context.Context, g *globals, o *statusOptions, pattern string) error {
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return err
	}
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{Origin: origin(session.NewTxID(time.Now()))})
	out := fanout.Run(ctx, len(hosts), o.forks, func(ctx context.Context, i int) *session.HostStatus {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return s.Status(cctx, session.Target{Name: hosts[i].Name, SSH: targetOf(hosts[i])}, o.abort)
	}, func(i int) *session.HostStatus {
		err := errors.New("interrupted before it was asked")
		return &session.HostStatus{Host: hosts[i].Name, Error: err.Error(), Err: err}
	})
	failed := 0
	for _, st := range out {
		if st.Bad() {
			failed++
		}
	}
	if err := printStatus(g, out); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return failedError{fmt.Sprintf("%d of %d hosts need attention (unreachable, needs-recovery, revert-failed or unverified)", failed, len(out))}
	}
	return nil
}

// printStatus prints status's table, or its --json document.
func printStatus(g *globals, out []*session.HostStatus) error {
	doc := make([]*session.HostStatus, len(out))
	for i, st := range out {
		c := *st
		c.Error = textsafe.Truncate(c.Error)
		doc[i] = &c
	}
	return g.printer().Result(doc, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSTATE\tTX\tBY\tDEADLINE\tTIMER\tVERIFIED\tERROR")
		for _, st := range out {
			dl := ""
			if !st.Deadline.IsZero() {
				dl = st.Deadline.Format(time.RFC3339) + countdown(st)
			}
			timer := st.Timer
			if st.TimerAlive != nil && !*st.TimerAlive {
				timer += " (dead)"
			}
			if st.Overdue && st.TimerAlive != nil && *st.TimerAlive {
				timer += " (hung)"
			}
			state := string(st.State)
			if st.Aborted {
				state += " (aborted now)"
			}
			if st.Reboot {
				state += " (reboot)"
			}
			if st.NeedsRecovery {
				state = "NEEDS-RECOVERY (" + state + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(st.Host), textsafe.Escape(state), textsafe.Escape(st.TxID), textsafe.Escape(st.Origin), dl, textsafe.Escape(timer), yesNo(st.Verified), oneLine(textsafe.Text(st.Error)))
			if st.NeedsRecovery {
				fmt.Fprintf(tw, "  recover:\tlifeline status %s --abort (restores the snapshot of %s)\t\t\t\t\t\t\n", textsafe.Escape(st.Host), textsafe.Escape(st.TxID))
			}
			for _, warn := range st.Warnings {
				fmt.Fprintf(tw, "  WARNING:\t%s\t\t\t\t\t\t\n", textsafe.Escape(warn))
			}
			if len(st.GuardChains) > 0 && !st.State.Terminal() {
				fmt.Fprintf(tw, "  guard:\t%s\t\t\t\t\t\t\n", textsafe.Escape(strings.Join(st.GuardChains, ", ")))
			}
			if len(st.Unguarded) > 0 {
				fmt.Fprintf(tw, "  UNGUARDED (forced):\t%s\t\t\t\t\t\t\n", textsafe.Escape(strings.Join(st.Unguarded, "; ")))
			}
			if !st.Created.IsZero() && !st.State.Terminal() {
				fmt.Fprintf(tw, "  began:\t%s\t\t\t\t\t\t\n", st.Created.Format(time.RFC3339))
			}
			if len(st.Protect) > 0 && !st.State.Terminal() {
				fmt.Fprintf(tw, "  protects:\t%s\t\t\t\t\t\t\n", textsafe.Escape(strings.Join(st.Protect, ", ")))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		// what each armed change did so far, after the table
		for _, st := range out {
			if st.Changes != "" {
				fmt.Fprintf(w, "--- %s: changed since the snapshot of %s\n%s", textsafe.Escape(st.Host), textsafe.Escape(st.TxID), textsafe.Text(ensureNL(st.Changes)))
			}
		}
		return nil
	})
}

// countdown says, on the host's clock, when a live tx reverts: "(in 42s)",
// or how long ago its deadline passed.
func countdown(st *session.HostStatus) string {
	if st.State.Terminal() || st.Now.IsZero() {
		return ""
	}
	left := st.Deadline.Sub(st.Now).Round(time.Second)
	if left >= 0 {
		return fmt.Sprintf(" (reverts in %s)", left)
	}
	return fmt.Sprintf(" (OVERDUE by %s)", -left)
}

func yesNo(b *bool) string {
	switch {
	case b == nil:
		return ""
	case *b:
		return "yes"
	}
	return "NO"
}
