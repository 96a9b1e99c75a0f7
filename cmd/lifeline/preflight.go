package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

func init() { subcommands = append(subcommands, newPreflightCmd) }

type preflightOptions struct {
	readOptions
	target         string
	format         string
	maxRulesetSize int64
}

// hostPreflight is one host's preflight verdict (preflight's --json
// document is a list of them).
type hostPreflight struct {
	Host    string                `json:"host"`
	Ruleset string                `json:"ruleset"`
	Verdict string                `json:"verdict,omitempty"` // pass, lockout, undecided; empty when Error
	Report  *wire.PreflightReport `json:"report,omitempty"`
	Error   string                `json:"error,omitempty"`
	err     error
}

// Exit statuses of preflight beyond 0 (every path passes) and 1 (a
// lockout).
const (
	exitPreflightError     = 2 // a host could not be evaluated (unreachable, invalid ruleset)
	exitPreflightUndecided = 3 // no lockout, but some path could not be decided
)

func newPreflightCmd(g *globals) *cobra.Command {
	o := &preflightOptions{}
	cmd := &cobra.Command{
		Use:   "preflight RULESET --for TARGET",
		Short: "Check, without changing anything, whether a ruleset would lock you out of each host",
		Long: `preflight asks every targeted host whether RULESET would still let your SSH
in, without changing anything: the helper (uploaded if missing) loads what
apply would leave into a private network namespace that mirrors this
connection's path as the host sees it (your source address and port, or the
jump host's, the host's interface, its address and sshd's port), then sends
data on a flow opened before the load (your existing session) and opens a new
connection through it. When a flow fails, the helper names what dropped it:
the table, the chain and the rule (with its line in RULESET) or the policy,
from an nft trace or the iptables counters of the sandbox.

Each host gets, per path and flow (established, new), one of:
  pass       the flow gets through
  lockout    the flow is dropped or rejected, by the rule named
  undecided  the sandbox cannot mirror something the verdict depends on
             (a match on a uid, cgroup, mark, ipset or runtime set, an
             address no interface holds): the reason names it

apply runs the same preflight at begin and refuses a certain lockout before
the live ruleset changes (--force applies it anyway, still guarded by the
revert); an undecided verdict proceeds, guarded.

Exit status: 0 every path passes, 1 a lockout on some host, 2 a host could
not be evaluated (unreachable, invalid ruleset), 3 no lockout but some path
undecided.`,
		Example: `  lifeline -i lab/inventory.yaml preflight rules.nft --for h01
  lifeline -i hosts.ini preflight rules.v4 --for web --json
  lifeline preflight new.nft --for bastion-behind-jump`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.target == "" {
				return usagef("preflight needs --for TARGET: the hosts to evaluate %s on", args[0])
			}
			return runPreflight(cmd.Context(), g, o, args[0])
		},
	}
	o.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.target, "for", "", "the hosts to evaluate RULESET on: a host, group or pattern (as apply's TARGET)")
	f.StringVar(&o.format, "format", "", "ruleset format: nft, iptables or ip6tables (default: from the file name or content)")
	f.Int64Var(&o.maxRulesetSize, "max-ruleset-size", wire.DefaultMaxRulesetSize, "largest ruleset in bytes that is sent; hosts refuse a larger one")
	return cmd
}

func runPreflight(ctx context.Context, g *globals, o *preflightOptions, file string) error {
	inv, hosts, err := resolveTargets(g, o.target, o.limit)
	if err != nil {
		return err
	}
	targets, err := applyTargets(hosts, file, o.format, o.maxRulesetSize)
	if err != nil {
		return err
	}
	runID := session.NewTxID(time.Now())
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{Origin: origin(runID)})
	out := fanout.Run(ctx, len(targets), o.forks, func(ctx context.Context, i int) *hostPreflight {
		t := targets[i]
		hp := &hostPreflight{Host: t.Name, Ruleset: t.RulesetPath}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		ch := &session.RulesetChange{RulesetChange: wire.RulesetChange{Format: t.Format, Text: t.Ruleset, FormatExplicit: t.FormatExplicit, MaxSize: o.maxRulesetSize}}
		hp.Report, hp.err = s.Preflight(cctx, t, ch)
		if hp.err == nil {
			hp.Verdict = hp.Report.Verdict
		}
		return hp
	}, func(i int) *hostPreflight {
		return &hostPreflight{Host: targets[i].Name, Ruleset: targets[i].RulesetPath, err: errors.New("interrupted before it was evaluated")}
	})
	for _, hp := range out {
		if hp.err != nil {
			hp.Error = textsafe.Truncate(fmt.Sprintf("%s: %v", hp.Host, hp.err))
		}
	}
	if err := g.printer().Result(out, func(w io.Writer) error { return printPreflight(w, out) }); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return preflightExit(out)
}

func printPreflight(w io.Writer, out []*hostPreflight) error {
	for _, hp := range out {
		if hp.err != nil {
			fmt.Fprintf(w, "%s\tERROR\t%s\n", hp.Host, textsafe.Escape(hp.Error))
			continue
		}
		word := map[string]string{wire.PreflightPass: "pass", wire.PreflightLockout: "WOULD LOCK YOU OUT", wire.PreflightUndecided: "cannot decide"}[hp.Verdict]
		fmt.Fprintf(w, "%s\t%s\t(%s, %s on the host)\n", hp.Host, word, hp.Ruleset, time.Duration(hp.Report.Took).Round(time.Millisecond))
		for _, v := range hp.Report.Paths {
			fmt.Fprintf(w, "  %s\n", textsafe.Escape(v.String()))
		}
	}
	return nil
}

// preflightExit: 1 for a lockout anywhere, else 2 for a host that could
// not be evaluated, else 3 for an undecided path, else 0.
func preflightExit(out []*hostPreflight) error {
	var lock, errs, und int
	for _, hp := range out {
		switch {
		case hp.err != nil:
			errs++
		case hp.Verdict == wire.PreflightLockout:
			lock++
		case hp.Verdict == wire.PreflightUndecided:
			und++
		}
	}
	switch {
	case lock > 0:
		return failedError{fmt.Sprintf("the ruleset would lock you out of %d of %d hosts", lock, len(out))}
	case errs > 0:
		return failedCodeError{failedError{fmt.Sprintf("%d of %d hosts could not be evaluated", errs, len(out))}, exitPreflightError}
	case und > 0:
		return failedCodeError{failedError{fmt.Sprintf("%d of %d hosts have a path the preflight cannot decide", und, len(out))}, exitPreflightUndecided}
	}
	return nil
}
