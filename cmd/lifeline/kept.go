package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/internal/runstore"
	"github.com/lifeline-dev/lifeline/session"
)

type keptOptions struct {
	run   string
	tx    string
	by    time.Duration
	forks int
	limit string
}

func init() {
	subcommands = append(subcommands,
		func(g *globals) *cobra.Command { return newKeptCmd(g, session.OpConfirm) },
		func(g *globals) *cobra.Command { return newKeptCmd(g, session.OpAbort) },
		func(g *globals) *cobra.Command { return newKeptCmd(g, session.OpExtend) })
}

var keptHelp = map[string][2]string{
	session.OpConfirm: {"Keep a change left armed (exec/apply --no-confirm), proven by a fresh SSH connection",
		"confirm keeps the change of a transaction this workstation left armed on each\nhost: over a NEW connection (as apply's own confirm), with the tx id and\ntoken from the run folder. A host that cannot be reached anew is not\nconfirmed: its deadline reverts it."},
	session.OpAbort: {"Revert a change left armed now (restore the host's snapshot)",
		"abort has each host restore the snapshot of the transaction this workstation\nleft armed, now, instead of at its deadline. (A transaction of another\nworkstation, or one left over with its timer dead: lifeline status HOST --abort.)"},
	session.OpExtend: {"Move the deadline of a change left armed (--by, from now)",
		"extend gives a transaction this workstation left armed more time: over a\nfresh connection, the host arms a new revert timer for --by from now, then\nmoves its kernel guard and drops the old timer. The host's deadline is\nnever shortened by a failed extend."},
}

func newKeptCmd(g *globals, op string) *cobra.Command {
	o := &keptOptions{}
	cmd := &cobra.Command{
		Use:   op + " TARGET",
		Short: keptHelp[op][0],
		Long: keptHelp[op][1] + `

The transaction is found in the newest run folder that keeps one for the
host (~/.local/state/lifeline/runs/RUN/hosts/HOST.tx.json, mode 0600), or in
--run. --tx refuses to act unless the kept transaction has that id.`,
		Example: "  lifeline exec db -- 'iptables -I INPUT -s 10.0.0.0/8 -j ACCEPT' --no-confirm --window 10m\n  lifeline " + op + " db" + map[string]string{session.OpExtend: " --by 30m"}[op],
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKept(cmd.Context(), g, o, op, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.run, "run", "", "the run (id or folder) that left the transactions armed (default: the newest one per host)")
	f.StringVar(&o.tx, "tx", "", "act only if the kept transaction has this id")
	f.IntVar(&o.forks, "forks", 20, "hosts handled in parallel")
	f.StringVar(&o.limit, "limit", "", "further limit the targeted hosts (same pattern grammar)")
	if op == session.OpExtend {
		f.DurationVar(&o.by, "by", 0, "the new deadline, from now (5s to 24h; required)")
	}
	return cmd
}

func runKept(ctx context.Context, g *globals, o *keptOptions, op, pattern string) error {
	if op == session.OpExtend {
		if o.by == 0 {
			return usagef("extend needs --by DURATION: the new deadline, from now (e.g. --by 10m)")
		}
		if err := checkWindow("--by", o.by, time.Second); err != nil {
			return err
		}
	}
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return err
	}
	runs := filepath.Dir(runFolder("x"))
	runID := session.NewTxID(time.Now())
	pr := newProgress(g, g.jsonStream, len(hosts))
	dialer := sessionDialer{newDialer(g, inv)}
	results := fanout.Run(ctx, len(hosts), o.forks, func(ctx context.Context, i int) *session.Result {
		h := hosts[i]
		dir := o.run
		switch {
		case dir != "" && !strings.Contains(dir, "/"):
			dir = filepath.Join(runs, dir)
		case dir == "":
			d, err := session.LatestRun(runs, h.Name)
			if err != nil {
				return &session.Result{Host: h.Name, Outcome: session.Refused, Error: err.Error(), Err: err, Timings: []session.Timing{},
					Hint: "no run of this workstation left " + h.Name + " armed; lifeline status " + h.Name + " shows what the host holds"}
			}
			dir = d
		}
		if _, err := os.Stat(dir); err == nil {
			if l, err := runstore.Hold(dir); err == nil { // no prune removes it meanwhile
				defer l.Close()
			}
		}
		s := session.New(dialer, session.Options{Origin: origin(runID), RunID: runID, RunDir: dir, Events: pr.event, History: historyHook(g)})
		return s.Finish(ctx, session.Target{Name: h.Name, SSH: targetOf(h)}, op, o.tx, o.by)
	}, func(i int) *session.Result {
		return &session.Result{Host: hosts[i].Name, Outcome: session.Skipped, Error: "interrupted before it started", Timings: []session.Timing{}}
	})
	pr.done(runID, "", results)
	want := map[string]session.Outcome{session.OpConfirm: session.Confirmed, session.OpAbort: session.Reverted, session.OpExtend: session.Armed}[op]
	for _, r := range results {
		if r.Outcome != want {
			return failedError{"lifeline: " + op + " did not succeed on every host"}
		}
	}
	return nil
}
