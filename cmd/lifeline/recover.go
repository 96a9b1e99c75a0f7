package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

type recoverOptions struct {
	via         []string
	address     string
	port        int
	to          string
	window      time.Duration
	revertGrace time.Duration
	forks       int
	limit       string
}

func init() { subcommands = append(subcommands, newRecoverCmd) }

func newRecoverCmd(g *globals) *cobra.Command {
	o := &recoverOptions{}
	cmd := &cobra.Command{
		Use:   "recover TARGET",
		Short: "Console-free recovery: put back the last confirmed firewall over any path that still reaches the host",
		Long: `recover restores, on each targeted host, the firewall as the last lifeline
transaction confirmed it (--to last-good), or as a named transaction
confirmed it (--to TX, see lifeline status) — also when the host holds no
armed transaction, e.g. after a change made outside lifeline.

It tries the paths to the host in order and says which one worked:
  1. the host's own address and port (from the inventory / ssh_config)
  2. through each --via HOST, as a jump (a management network, a neighbour)
  3. --address ADDR and/or --port N (an alternate address or sshd)
  4. the inventory's recovery_address and recovery_jump host vars
     (vars: in lifeline's YAML, host vars in Ansible inventories)

The restore is itself guarded: the host snapshots the state it is in, arms
its revert, restores the confirmed state under the kernel guard, and keeps
it only when a fresh connection over the same path gets in.`,
		Example: `  # the direct path is blocked; h01 still reaches db03
  lifeline -i lab/inventory.yaml recover db03 --via h01

  # an out-of-band address, and a named confirmed state
  lifeline recover web01 --address 10.9.0.21 --to 20261203T101500Z-1a2b3c4d`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecover(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.via, "via", nil, "try reaching the host through this host as a jump (ProxyJump spec; repeatable, in order)")
	f.StringVar(&o.address, "address", "", "try this alternate address of the host")
	f.IntVar(&o.port, "port", 0, "try this alternate sshd port (with --address, or the host's own address)")
	f.StringVar(&o.to, "to", wire.RestoreLastGood, "what to restore: last-good (the newest confirmed transaction's state) or a transaction id")
	f.DurationVar(&o.window, "window", 60*time.Second, "revert deadline of the restore itself (5s to 24h)")
	f.DurationVar(&o.revertGrace, "revert-grace", 45*time.Second, "when locked out, how long after the deadline to keep looking for the host's own revert (1s to 1h)")
	f.IntVar(&o.forks, "forks", 20, "hosts recovered in parallel")
	f.StringVar(&o.limit, "limit", "", "further limit the targeted hosts (same pattern grammar)")
	return cmd
}

// recoverPaths are the ways to try for host h, in order.
func recoverPaths(h *inventory.Host, o *recoverOptions) []session.Path {
	base := targetOf(h)
	paths := []session.Path{{Name: "direct", SSH: base}}
	for _, v := range o.via {
		t := base
		t.Jump = v
		paths = append(paths, session.Path{Name: "via " + v, SSH: t})
	}
	if o.address != "" || o.port != 0 {
		t := base
		name := "address " + o.address
		if o.address != "" {
			t.Address = o.address
		}
		if o.port != 0 {
			t.Port = o.port
			name = fmt.Sprintf("address %s port %d", o.address, o.port)
		}
		paths = append(paths, session.Path{Name: name, SSH: t})
	}
	if a := h.Vars["recovery_address"]; a != "" {
		t := base
		t.Address = a
		if p, err := strconv.Atoi(h.Vars["recovery_port"]); err == nil && p > 0 {
			t.Port = p
		}
		paths = append(paths, session.Path{Name: "recovery_address " + a, SSH: t})
	}
	if j := h.Vars["recovery_jump"]; j != "" {
		t := base
		t.Jump = j
		paths = append(paths, session.Path{Name: "recovery_jump " + j, SSH: t})
	}
	return paths
}

func runRecover(ctx context.Context, g *globals, o *recoverOptions, pattern string) error {
	if err := checkWindow("--window", o.window, o.revertGrace); err != nil {
		return err
	}
	if o.port < 0 || o.port > 65535 {
		return usagef("--port %d: want 1..65535", o.port)
	}
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return err
	}
	runID, runDir, endRun := startRun(g)
	defer endRun()
	pr := newProgress(g, g.jsonStream, len(hosts))
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{
		ConfirmTimeout: o.window, RevertGrace: o.revertGrace,
		Origin: origin(runID) + " recover", RunID: runID, RunDir: runDir, Events: pr.event, History: historyHook(g),
	})
	ch := &session.RestoreChange{To: o.to}
	results := fanout.Run(ctx, len(hosts), o.forks, func(ctx context.Context, i int) *session.Result {
		h := hosts[i]
		return s.Recover(ctx, session.Target{Name: h.Name, SSH: targetOf(h)}, ch, recoverPaths(h, o))
	}, func(i int) *session.Result {
		return &session.Result{Host: hosts[i].Name, Outcome: session.Skipped, Error: "interrupted before it started", Timings: []session.Timing{}}
	})
	pr.done(runID, runDir, results)
	if ferr := session.Err(results); ferr != nil {
		return failedError{ferr.Error()}
	}
	return nil
}
