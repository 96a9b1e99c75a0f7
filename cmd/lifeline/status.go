package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
reboot is reported as reverted (nothing was persisted, the host booted its
old config).

--abort reverts a transaction that is still armed or applied right now
(restore the snapshot, verify it): the recovery for a host reported as
needs-recovery, whose revert timer died.`,
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
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{})
	out := make([]*session.HostStatus, len(hosts))
	sem := make(chan struct{}, max(1, o.forks))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			out[i] = s.Status(cctx, session.Target{Name: h.Name, SSH: targetOf(h)}, o.abort)
		}()
	}
	wg.Wait()
	failed := 0
	for _, st := range out {
		if st.Err != nil {
			failed++
		}
	}
	if g.jsonOut {
		for _, st := range out {
			st.Error = textsafe.Truncate(st.Error)
		}
		encodeJSON(g, out)
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSTATE\tTX\tDEADLINE\tTIMER\tVERIFIED\tERROR")
		for _, st := range out {
			dl := ""
			if !st.Deadline.IsZero() {
				dl = st.Deadline.Format(time.RFC3339)
			}
			timer := st.Timer
			if st.TimerAlive != nil && !*st.TimerAlive {
				timer += " (dead)"
			}
			state := string(st.State)
			if st.Aborted {
				state += " (aborted now)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(st.Host), textsafe.Escape(state), textsafe.Escape(st.TxID), dl, textsafe.Escape(timer), yesNo(st.Verified), oneLine(textsafe.Text(st.Error)))
			if len(st.GuardChains) > 0 && !st.State.Terminal() {
				fmt.Fprintf(tw, "  guard:\t%s\t\t\t\t\t\n", textsafe.Escape(strings.Join(st.GuardChains, ", ")))
			}
			if len(st.Unguarded) > 0 {
				fmt.Fprintf(tw, "  UNGUARDED (forced):\t%s\t\t\t\t\t\n", textsafe.Escape(strings.Join(st.Unguarded, "; ")))
			}
		}
		tw.Flush()
	}
	if failed > 0 {
		return failedError{fmt.Sprintf("%d hosts failed", failed)}
	}
	return nil
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
