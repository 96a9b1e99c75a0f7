package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/session"
)

// rolloutFlags are the fleet options apply and exec share.
type rolloutFlags struct {
	checks      []string
	forks       int
	serial      string
	maxFail     string
	limit       string
	revertGrace time.Duration
	noConfirm   bool
	shard       string
}

// add registers the flags; after names what --no-confirm leaves armed.
func (r *rolloutFlags) add(f *pflag.FlagSet, after string) {
	f.StringArrayVar(&r.checks, "check", nil, "extra probe from this machine before confirming, tcp://HOST:PORT (repeatable)")
	f.IntVar(&r.forks, "forks", 20, "hosts changed in parallel")
	f.StringVar(&r.serial, "serial", "", "batch sizes, e.g. 1,10%,100% (a canary first); the last size repeats")
	f.StringVar(&r.maxFail, "max-fail", "", "per batch, N hosts or P% may fail before the rollout stops (default: no limit)")
	f.StringVar(&r.limit, "limit", "", "further limit the targeted hosts (same pattern grammar)")
	f.BoolVar(&r.noConfirm, "no-confirm", false, "leave each host armed after "+after+", for lifeline confirm / abort / extend; the deadline still reverts it")
	f.StringVar(&r.shard, "shard", "", "only shard `I/N` of the targeted hosts (a hash of each name: stable however the inventory is ordered); run N shards in parallel on a job engine, merge them with lifeline report; --serial and --max-fail apply per shard")
	f.DurationVar(&r.revertGrace, "revert-grace", 45*time.Second, "when locked out, how long after the deadline to keep looking for the host's own revert before reporting unknown (1s to 1h)")
}

// sharded keeps the hosts of --shard I/N (all without it); none is not an
// error (a matrix can have more shards than hosts): it is said on stderr.
func (r *rolloutFlags) sharded(g *globals, hosts []*inventory.Host) ([]*inventory.Host, error) {
	if r.shard == "" {
		return hosts, nil
	}
	i, n, err := inventory.ParseShard(r.shard)
	if err != nil {
		return nil, usageError{err}
	}
	out := inventory.Shard(hosts, i, n)
	if len(out) == 0 {
		fmt.Fprintf(g.stderr, "lifeline: shard %d/%d selects none of the %d targeted hosts: nothing to do\n", i, n, len(hosts))
	}
	return out, nil
}

// resolve is every rollout's start: the plan (--serial, --check), then
// pattern's hosts (--limit, --shard). No host in this shard: the empty
// report is printed and hosts is empty (callers return err then).
func (r *rolloutFlags) resolve(g *globals, pattern string) (session.Plan, *inventory.Inventory, []*inventory.Host, error) {
	plan, err := r.plan()
	if err != nil {
		return plan, nil, nil, err
	}
	inv, hosts, err := resolveTargets(g, pattern, r.limit)
	if err != nil {
		return plan, nil, nil, err
	}
	if hosts, err = r.sharded(g, hosts); err != nil || len(hosts) == 0 {
		return plan, inv, nil, emptyShard(g, err)
	}
	return plan, inv, hosts, nil
}

// sessionTargets are hosts as targets with only their SSH settings.
func sessionTargets(hosts []*inventory.Host) []session.Target {
	targets := make([]session.Target, len(hosts))
	for i, h := range hosts {
		targets[i] = session.Target{Name: h.Name, SSH: targetOf(h)}
	}
	return targets
}

// emptyShard ends a rollout whose shard holds no host: err, or an empty
// report (a JSON document with no results).
func emptyShard(g *globals, err error) error {
	if err != nil {
		return err
	}
	return g.printer().Result(jsonResults{OK: true, Counts: map[string]int{}, Results: []*session.Result{}}, func(io.Writer) error { return nil })
}

// plan checks --serial (a usage error when malformed).
func (r *rolloutFlags) plan() (session.Plan, error) {
	for _, c := range r.checks {
		if _, err := session.ParseCheck(c); err != nil {
			return session.Plan{}, usageError{err}
		}
	}
	serial, err := session.ParseSerial(r.serial)
	if err != nil {
		return session.Plan{}, usageError{err}
	}
	return session.Plan{Forks: r.forks, Serial: serial, MaxFail: r.maxFail}, nil
}

// runRollout runs one guarded transaction per target, batch by batch, in a
// new run folder, and prints the report. opts holds what the command
// decides (timeouts, the change); tool names it in the origin hosts see.
func runRollout(ctx context.Context, g *globals, inv *inventory.Inventory, targets []session.Target, r *rolloutFlags, plan session.Plan, tool string, opts session.Options) error {
	runID, runDir, endRun := startRun(g)
	defer endRun()
	pr := newProgress(g, g.jsonStream, len(targets))
	opts.Origin, opts.RunID, opts.RunDir, opts.Events = origin(runID)+tool, runID, runDir, pr.event
	opts.RevertGrace, opts.Checks, opts.NoConfirm = r.revertGrace, r.checks, r.noConfirm
	opts.History = historyHook(g)
	s := session.New(sessionDialer{newDialer(g, inv)}, opts)
	results, err := s.Rollout(ctx, plan, targets)
	if err != nil {
		return usageError{err}
	}
	pr.done(runID, runDir, results)
	if ferr := session.Err(results); ferr != nil {
		return failedError{ferr.Error()}
	}
	return nil
}

// The bounds of --confirm-timeout. Above a day, a forgotten transaction
// would hold the host's lock and its revert for longer than anyone watches.
const (
	minConfirmTimeout = 5 * time.Second
	maxConfirmTimeout = 24 * time.Hour
)

// checkWindow checks a confirm timeout / window and the revert grace.
func checkWindow(flag string, d, grace time.Duration) error {
	if d < minConfirmTimeout {
		return usagef("%s %s is too short: at least 5s", flag, d)
	}
	if d > maxConfirmTimeout {
		return usagef("%s %s is too long: at most 24h (a host stays armed, its revert pending, until the deadline)", flag, d)
	}
	if grace < time.Second || grace > time.Hour {
		return usagef("--revert-grace %s is out of range: 1s to 1h", grace)
	}
	return nil
}
