package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/internal/history"
	"github.com/lifeline-dev/lifeline/internal/state"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

// readOptions are the flags of every command that only reads hosts.
type readOptions struct {
	limit string
	forks int
}

func (o *readOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.limit, "limit", "l", "", "further limit the targeted hosts")
	cmd.Flags().IntVar(&o.forks, "forks", 20, "hosts read in parallel")
}

// hostRead is one host's state as a read command sees it.
type hostRead struct {
	host  *inventory.Host
	st    *session.HostState
	rs    *ruleset.Ruleset // the live state; nil when err
	cand  *ruleset.Ruleset // the candidate, when one was asked for
	err   error
	start time.Time
}

// readHosts reads every host's state (argsFor: the state args per host,
// nil for none) in parallel.
func readHosts(ctx context.Context, g *globals, o *readOptions, pattern string, argsFor func(*inventory.Host) (*wire.StateArgs, error)) ([]*hostRead, error) {
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return nil, err
	}
	runID := session.NewTxID(time.Now())
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{Origin: origin(runID)})
	out := fanout.Run(ctx, len(hosts), o.forks, func(ctx context.Context, i int) *hostRead {
		r := &hostRead{host: hosts[i], start: time.Now()}
		var args *wire.StateArgs
		if argsFor != nil {
			if args, r.err = argsFor(hosts[i]); r.err != nil {
				return r
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		r.st = s.ReadState(cctx, session.Target{Name: hosts[i].Name, SSH: targetOf(hosts[i])}, args)
		if r.err = r.st.Err; r.err != nil {
			return r
		}
		if r.rs, r.err = state.Parse(hosts[i].Name, r.st.Parts); r.err != nil {
			return r
		}
		if len(r.st.Candidate) > 0 {
			r.cand, r.err = state.Parse(hosts[i].Name, r.st.Candidate)
		}
		return r
	}, func(i int) *hostRead {
		return &hostRead{host: hosts[i], err: errors.New("interrupted before it was read")}
	})
	return out, ctx.Err()
}

// historyStore opens the local history (see internal/history).
func historyStore() (*history.Store, error) {
	dir, err := history.DefaultDir()
	if err != nil {
		return nil, err
	}
	return history.Open(dir), nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
