package session

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// lockedOutError marks a confirm that could not reach the host.
type lockedOutError struct{ err error }

func (e *lockedOutError) Error() string { return "fresh connection failed: " + e.err.Error() }
func (e *lockedOutError) Unwrap() error { return e.err }

// Watch handles a host the operator could not prove access to: ask the
// first connection (if it still works) to revert now, otherwise wait past the
// deadline, reconnect, and report what the host did by itself.
func (h *Tx) Watch(ctx context.Context, c1 remote.Runner, cause error) {
	h.res.Phase = PhaseRevert
	h.event(PhaseRevert, "info", strings.ToUpper(cause.Error()[:1])+cause.Error()[1:])
	h.res.Err, h.res.Error = cause, cause.Error()
	t0 := h.s.opts.Now()
	defer func() {
		h.res.Timings = append(h.res.Timings, Timing{Phase: PhaseRevert, Took: h.s.opts.Now().Sub(t0)})
	}()

	if c1 != nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := h.call(actx, c1, wire.VerbAbort, &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID, Origin: h.s.opts.Origin})
		cancel()
		if err == nil {
			h.absorb(rep)
			if rep.Error != nil && rep.Error.Code == wire.CodeStateWrite {
				h.end(NeedsRecovery, fmt.Errorf("%v; abort: %w", cause, rep.Error), stateHint(h.t.Name))
				return
			}
			if h.settled(rep) {
				return
			}
		}
	}
	wait := h.localDL.Add(2 * time.Second).Sub(h.s.opts.Now())
	if wait > 0 {
		h.event(PhaseRevert, "info", fmt.Sprintf("waiting %s for the host's own revert at its deadline", wait.Round(time.Second)))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	last := cause
	for attempt := 0; ; attempt++ {
		if attempt > 0 && h.s.opts.Now().After(h.localDL.Add(h.s.opts.RevertGrace)) {
			break
		}
		// Each look is bounded by its own timeout, not by ctx: even when
		// everything before overran, the host gets one real look after its
		// deadline before lifeline says it does not know.
		base := ctx
		if ctx.Err() != nil {
			base = context.WithoutCancel(ctx)
		}
		rctx, cancel := context.WithTimeout(base, 15*time.Second)
		rep, err := h.statusFresh(rctx)
		cancel()
		if err == nil {
			if h.settled(rep) {
				return
			}
			if rep.State == wire.StateArmed || rep.State == wire.StateApplied {
				h.end(NeedsRecovery, fmt.Errorf("deadline passed but tx %s is still %s on the host: its revert timer (%s) died or hung; the kernel guard let this connection in", h.res.TxID, rep.State, rep.Timer), recoveryHint(h.t.Name))
				return
			}
			last = fmt.Errorf("unexpected state %s after the deadline", rep.State)
		} else {
			last = err
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
	h.end(Unknown, fmt.Errorf("%v, and still unreachable after the deadline: %w", cause, last),
		fmt.Sprintf("the host restores its snapshot by itself at %s (host clock), and its kernel guard re-opens %s to port %d after that; check it from a console", h.res.Deadline.Format(time.RFC3339), h.op.Addr, h.op.SSHPort))
}

// settled ends the host when rep shows a terminal revert state.
func (h *Tx) settled(rep *wire.Report) bool {
	switch rep.State {
	case wire.StateReverted:
		switch {
		case rep.Reboot:
			h.res.Reboot = true
			if rep.Verified != nil && !*rep.Verified {
				h.end(RevertFailed, fmt.Errorf("tx %s was reverted by a reboot, but the live ruleset does not equal the host's boot config", h.res.TxID), recoveryHint(h.t.Name))
			} else {
				h.end(Reverted, h.res.Err, "the host rebooted while the change was unconfirmed and booted its persisted config (reverted by reboot)")
			}
		case rep.Verified != nil && !*rep.Verified:
			h.end(RevertFailed, fmt.Errorf("tx %s reverted but the live ruleset does not equal the snapshot", h.res.TxID), recoveryHint(h.t.Name))
		default:
			h.end(Reverted, h.res.Err, "")
		}
		return true
	case wire.StateRevertFailed:
		h.end(RevertFailed, reportErr(rep), recoveryHint(h.t.Name))
		return true
	case wire.StateConfirmed:
		// only possible if our confirm reached the host but its answer was lost
		h.res.Err, h.res.Error = nil, ""
		h.end(Confirmed, nil, "")
		return true
	}
	return false
}

// statusFresh opens a new connection and asks for the tx's state.
func (h *Tx) statusFresh(ctx context.Context) (*wire.Report, error) {
	c, err := h.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rep, err := h.call(ctx, h.priv(c), wire.VerbStatus, &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID})
	if err != nil {
		return nil, err
	}
	h.absorb(rep)
	return rep, nil
}
