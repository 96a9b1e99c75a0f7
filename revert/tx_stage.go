package revert

import (
	"context"
	"fmt"
	"time"
)

// stage: make the change live with the kernel guard.
func (e *engine) stage(ctx context.Context, req *Request, rep *Report) error {
	l, r, err := e.lockTx(ctx, req.TxID)
	if err != nil {
		return err
	}
	defer l.unlock()
	fill(rep, r)
	if _, err := e.rebootSettle(r); err != nil {
		return err
	}
	fill(rep, r)
	switch r.State {
	case StateArmed:
	case StateReverted, StateRevertFailed:
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("transaction %s was already %s: begin a new one", r.ID, r.State)}
	default:
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("transaction %s is %s, stage needs armed", r.ID, r.State)}
	}
	remaining := e.remaining(r)
	if remaining <= 0 {
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("the deadline of %s passed at %s: the revert is due; begin again with a longer confirm timeout", r.ID, r.Deadline.Format(time.RFC3339))}
	}
	if alive, err := e.armer.Alive(ctx, r.Timer); err != nil || !alive {
		e.revertLocked(ctx, r, "revert timer gone before stage")
		fill(rep, r)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("the revert timer %s of %s is gone (%v), so nothing was applied: begin again", r.Timer, r.ID, err)}
	}
	ch, err := e.changeOf(r)
	if err != nil {
		return err
	}
	g := e.guardOf(r, remaining)
	r.State, r.Step = StateApplied, stepApplying
	r.Guard = describeGuard(g)
	if err := e.save(r, ""); err != nil {
		return err
	}
	e.faultPoint("stage-before-swap")
	verified, err := ch.stage(ctx, e, r, g, rep)
	if err != nil {
		e.logf(r.ID, "warning", "stage failed, restoring the snapshot now: %v", err)
		var ok bool
		var werr error
		_ = e.phase(rep, "restore", func() error { ok, werr = e.revertLocked(ctx, r, "stage failed: "+err.Error()); return nil })
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeApplyFailed, Message: fmt.Sprintf("%v; the snapshot was restored (state %s)", err, r.State)}
	}
	e.faultPoint("stage-after-swap")
	rep.Verified = verified
	r.Step = stepApplied
	if err := e.save(r, ""); err != nil {
		// the record cannot follow: undo the step rather than leave the
		// workstation confirming what the host cannot record
		e.logf(r.ID, "warning", "%v: restoring the snapshot now", err)
		ok, werr := e.revertLocked(ctx, r, "the applied step could not be recorded")
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeStateWrite, Message: fmt.Sprintf("%s; the snapshot was restored (state %s)", errMessage(err), r.State)}
	}
	e.logf(r.ID, "info", "staged with guard (%s)", r.Guard)
	fill(rep, r)
	return nil
}

// guardOf is the kernel guard of r for its deadline, remaining from now.
func (e *engine) guardOf(r *txRecord, remaining time.Duration) *Guard {
	return &Guard{TxID: r.ID, Addr: r.Operator.Addr, Port: r.Operator.SSHPort, Deadline: r.Deadline, Remaining: remaining, Chains: r.GuardChains}
}

func describeGuard(g *Guard) string {
	if len(g.Chains) == 0 {
		return "none needed: the ruleset leaves no base chain the operator's SSH crosses changed"
	}
	return fmt.Sprintf("accept %s to port %d after %s in %s", g.Addr, g.Port, g.Deadline.Format(time.RFC3339), plural(len(g.Chains), "chain"))
}

// extend: a new deadline, now + the requested timeout. The new timer is
// armed before anything else changes, so that the transaction is never
// without one: until the record names it, the old timer is the arbiter;
// after, a firing old timer finds the deadline ahead and does nothing.
func (e *engine) extend(ctx context.Context, req *Request, rep *Report) error {
	if req.Extend == nil {
		return &Error{Code: CodeBadRequest, Message: "extend without its payload (extend)"}
	}
	d := time.Duration(req.Extend.ConfirmTimeout)
	if err := checkTimeout(req.Extend.ConfirmTimeout); err != nil {
		return err
	}
	l, r, err := e.lockTokened(ctx, req, rep, "extend")
	if err != nil {
		return err
	}
	defer l.unlock()
	switch r.State {
	case StateArmed, StateApplied:
	case StateReverted, StateRevertFailed:
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("transaction %s was already %s: the revert won; begin again", r.ID, r.State)}
	default:
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("transaction %s is %s, extend needs armed or applied", r.ID, r.State)}
	}
	if e.remaining(r) <= 0 {
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("the deadline %s already passed: the revert is due", r.Deadline.Format(time.RFC3339))}
	}
	old := r.Timer
	var t Timer
	if err := e.phase(rep, "arm", func() (err error) { t, err = e.armer.Arm(ctx, r.ID, r.Extends+1, d); return err }); err != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("arm the new revert timer: %v; the deadline stays %s", err, r.Deadline.Format(time.RFC3339))}
	}
	// the old deadline may have passed while the timer was armed: its
	// guard may be open now, and a connection let in by it proves nothing
	if e.remaining(r) <= 0 {
		_ = e.armer.Disarm(ctx, t)
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("the deadline %s passed during the extend: the revert is due", r.Deadline.Format(time.RFC3339))}
	}
	prev := *r
	r.Timer, r.Extends = t, r.Extends+1
	r.GuardMoving = r.State == StateApplied && len(r.GuardChains) > 0
	e.setDeadline(r, d)
	if err := e.save(r, fmt.Sprintf("extended by %s to %s", orUnknown(req.Origin), r.Deadline.Format(time.RFC3339))); err != nil {
		_ = e.armer.Disarm(ctx, t)
		r.Timer, r.Extends, r.Deadline, r.MonoDeadline, r.ConfirmTimeout = prev.Timer, prev.Extends, prev.Deadline, prev.MonoDeadline, prev.ConfirmTimeout
		fill(rep, r)
		return err
	}
	if r.State == StateApplied && len(r.GuardChains) > 0 {
		g := e.guardOf(r, d)
		err := e.phase(rep, "refresh-guard", func() error { return e.fw.RefreshGuard(ctx, g) })
		switch {
		case err != nil:
			// the old guard still opens the path at the old deadline, before
			// the new one: a connection let in by it would "prove" a ruleset
			// that locks everyone out. Keep the old deadline instead.
			e.logf(r.ID, "warning", "refresh the kernel guard: %v: the extend is undone", err)
			_ = e.armer.Disarm(ctx, t)
			r.Timer, r.Extends, r.Deadline, r.MonoDeadline, r.ConfirmTimeout = prev.Timer, prev.Extends, prev.Deadline, prev.MonoDeadline, prev.ConfirmTimeout
			r.GuardMoving = false
			if serr := e.save(r, "extend undone: the guard could not be moved"); serr != nil {
				// the record still says moving: confirm stays refused
				e.logf(r.ID, "warning", "%v", serr)
			}
			fill(rep, r)
			return &Error{Code: CodeInternal, Message: fmt.Sprintf("move the kernel guard: %v; the deadline stays %s", err, r.Deadline.Format(time.RFC3339))}
		case e.remaining(&prev) <= 0:
			// the old deadline passed before the guard moved: it was open
			// for a moment, so no connection from now on proves anything
			r.GuardOpenEarly = true
			e.logf(r.ID, "warning", "the old guard opened before it was moved: this transaction can no longer be confirmed")
			rep.Warnings = append(rep.Warnings, "the deadline passed while the extend moved the kernel guard: this transaction can no longer be confirmed, it reverts at its deadline")
			fallthrough
		default:
			r.Guard = describeGuard(g)
			r.GuardMoving = false
			if err := e.save(r, "guard refreshed"); err != nil {
				// the record still says moving: confirm stays refused, the
				// tx reverts at its deadline
				e.logf(r.ID, "warning", "%v", err)
			}
		}
	}
	if err := e.armer.Disarm(ctx, old); err != nil {
		e.logf(r.ID, "warning", "disarm the previous timer %s: %v (it will find the deadline ahead and do nothing)", old, err)
	}
	e.logf(r.ID, "info", "extended by %s: deadline %s, timer %s", orUnknown(req.Origin), r.Deadline.Format(time.RFC3339), t)
	fill(rep, r)
	return nil
}
