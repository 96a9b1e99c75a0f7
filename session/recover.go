package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// RestoreChange puts back the firewall as an earlier transaction confirmed
// it (To: a tx id, or wire.RestoreLastGood), as a guarded change: the host
// snapshots the state it is in, restores, guards, and keeps the restore
// only when a fresh connection gets in (recover).
type RestoreChange struct{ To string }

var _ Change = (*RestoreChange)(nil)

func (c *RestoreChange) Wire() wire.Change {
	return wire.Change{Kind: wire.ChangeRestore, Restore: &wire.RestoreChange{To: c.To}}
}
func (c *RestoreChange) Phase() string                                  { return PhaseRestore }
func (c *RestoreChange) FailedHint() string                             { return "the confirmed state did not load; " }
func (c *RestoreChange) Make(context.Context, *Tx, remote.Runner) error { return nil }

// Path is one way to reach a host for recover: its own address, another
// address or port, or through another host as a jump.
type Path struct {
	Name string        // as shown: "direct", "via h01", "10.0.9.5:22"
	SSH  remote.Target // the target with the path's overrides
}

// Recover tries paths in order and, over the first one that connects and
// probes, runs a guarded restore (ch) on the host; the confirm's fresh
// connection takes the same path. The result's Path says which one
// worked; when none did, the host is Refused with every path's error.
// Never returns nil.
func (s *Session) Recover(ctx context.Context, t Target, ch *RestoreChange, paths []Path) *Result {
	var tried []string
	var errs []error
	for _, p := range paths {
		pt := t
		pt.SSH = p.SSH
		h := s.NewTx(pt, ch)
		s.event(t.Name, PhaseConnect, "info", "trying "+p.Name)
		if h.Connect(ctx) != nil {
			tried = append(tried, p.Name+": "+h.res.Error)
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, h.res.Err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		h.res.Path = p.Name
		h.transact(ctx)
		h.Close()
		if len(tried) > 0 {
			h.res.Warnings = append(h.res.Warnings, "unreachable first: "+strings.Join(tried, "; "))
		}
		s.settleKept(h)
		h.res.Took = s.opts.Now().Sub(h.start)
		s.save(h.res)
		return h.res
	}
	err := fmt.Errorf("no path reached %s: %w", t.Name, errors.Join(errs...))
	r := &Result{Host: t.Name, Outcome: Refused, Phase: PhaseConnect, Error: err.Error(), Err: err, Timings: []Timing{},
		Hint: "nothing was changed; add a path: --via HOST (a jump that still reaches it), --address ADDR/--port N, or recovery_address / recovery_jump in the inventory"}
	s.save(r)
	return r
}

func (s *Session) event(host, phase, status, msg string) {
	if s.opts.Events != nil {
		s.opts.Events(Event{Host: host, Phase: phase, Status: status, Msg: msg, At: s.opts.Now()})
	}
}
