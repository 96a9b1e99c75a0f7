package revert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// confirm: token, drop the guard, record confirmed, disarm, persist.
func (e *engine) confirm(ctx context.Context, req *Request, rep *Report) error {
	l, r, err := e.lockTokened(ctx, req, rep, "confirm")
	if err != nil {
		return err
	}
	defer l.unlock()
	switch r.State {
	case StateApplied:
	case StateConfirmed:
		return e.confirmAgain(ctx, r, rep) // a retried confirm whose report was lost
	case StateReverted, StateRevertFailed:
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("transaction %s was already %s: the revert won; begin again", r.ID, r.State)}
	default:
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("transaction %s is %s, confirm needs applied", r.ID, r.State)}
	}
	if r.GuardOpenEarly || r.GuardMoving {
		ok, werr := e.revertLocked(ctx, r, "confirm refused: the kernel guard was open before the deadline (an extend raced it)")
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeTooLate, Message: "the kernel guard of this transaction was open before its deadline (an extend raced it), so the fresh connection may have come in through the guard rather than the new rules: the change was reverted; begin again"}
	}
	if e.remaining(r) <= 0 {
		ok, werr := e.revertLocked(ctx, r, "confirm arrived after the deadline")
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("confirm arrived after the deadline %s: the change was reverted; begin again with a longer confirm timeout", r.Deadline.Format(time.RFC3339))}
	}
	if wallClockGuard(r) && !e.now().Before(r.Deadline) {
		// in time on the monotonic clock, but the wall clock was stepped
		// past the deadline: the guard that opens by it is open now
		ok, werr := e.revertLocked(ctx, r, "confirm refused: the wall clock was stepped past the deadline, which opened the kernel guard")
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("the host's wall clock (%s) was stepped past the deadline %s, which is still %s away on its monotonic clock: the kernel guard (iptables -m time, wall clock) is open, so the fresh connection may have come in through it rather than the new rules: the change was reverted; begin again",
			e.now().UTC().Format(time.RFC3339), r.Deadline.Format(time.RFC3339), e.remaining(r).Round(time.Second))}
	}
	ch, err := e.changeOf(r)
	if err != nil {
		return err
	}
	e.faultPoint("confirm-received")
	r.Step = stepConfirming
	if err := e.save(r, "confirm by "+req.Origin); err != nil {
		return err
	}
	// the guard alone goes: the change stays exactly as staged (never a
	// re-apply, which would also undo whatever the operator's own commands
	// did in a guarded change)
	if err := e.phase(rep, "drop-guard", func() error { return e.fw.RemoveGuard(ctx, r.ID) }); err != nil {
		e.logf(r.ID, "warning", "drop guard failed, restoring the snapshot now: %v", err)
		ok, werr := e.revertLocked(ctx, r, "dropping the guard failed: "+err.Error())
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeApplyFailed, Message: fmt.Sprintf("drop the kernel guard: %v; the snapshot was restored (state %s)", err, r.State)}
	}
	r.State, r.Step = StateConfirmed, stepConfirmed
	r.Guard = ""
	r.Outcome = "confirmed"
	if err := e.save(r, ""); err != nil {
		return err
	}
	e.faultPoint("confirm-recorded")
	// From here the record is the arbiter: a timer that still fires finds
	// it confirmed and does nothing, so a failed disarm is only noise.
	_ = e.phase(rep, "disarm", func() error {
		if err := e.armer.Disarm(ctx, r.Timer); err != nil {
			e.logf(r.ID, "warning", "%v", err)
		}
		return nil
	})
	e.logf(r.ID, "info", "confirmed by %s", req.Origin)
	e.keepConfirmed(ctx, rep, r)
	if req.Read != nil {
		// for the workstation's history; never a reason to fail a confirm
		_ = e.phase(rep, "read-state", func() error {
			live, err := e.readState(ctx, nil, false)
			if err != nil {
				rep.Warnings = append(rep.Warnings, "could not read the state after the confirm for the history: "+err.Error())
			}
			rep.Live = live
			return nil
		})
	}
	fill(rep, r)
	if !r.Persist {
		return nil
	}
	return e.persistConfirmed(ctx, rep, r, ch)
}

// confirmAgain answers a confirm sent again because the first one's answer
// was lost (the helper died, the connection or the host went down after
// the record said confirmed) with what became of the change since: the
// persist the first run did not reach is done now; a host that rebooted
// before the change was persisted booted its persisted config, so the
// change is no longer live, and the answer says so (Reboot, a warning)
// rather than a plain "confirmed". Caller holds the lock.
func (e *engine) confirmAgain(ctx context.Context, r *txRecord, rep *Report) error {
	if len(r.Persisted) > 0 {
		return nil
	}
	if boot, err := e.env.BootID(); err == nil && r.BootID != "" && boot != r.BootID {
		rep.Reboot = true
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the host rebooted after transaction %s was confirmed and before it was persisted: it booted its persisted config, so the change is no longer live; apply it again", r.ID))
		return nil
	}
	if !r.Persist {
		return nil
	}
	ch, err := e.changeOf(r)
	if err != nil {
		return err
	}
	e.logf(r.ID, "info", "confirm sent again: persisting, which the first confirm did not reach")
	return e.persistConfirmed(ctx, rep, r, ch)
}

// persistConfirmed writes the confirmed change for the next boot and
// records it. Caller holds the lock.
func (e *engine) persistConfirmed(ctx context.Context, rep *Report, r *txRecord, ch hostChange) error {
	var files []string
	err := e.phase(rep, "persist", func() (err error) { files, err = ch.persist(ctx, e, r); return err })
	if err != nil {
		r.Errors = append(r.Errors, "persist: "+err.Error())
		_ = e.save(r, "persist failed")
		e.logf(r.ID, "warning", "persist: %v", err)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("confirmed, but persisting failed: %v: the change is live but will not survive a reboot", err)}
	}
	r.Persisted, r.Step = files, stepPersisted
	if err := e.save(r, ""); err != nil {
		return err
	}
	fill(rep, r)
	return nil
}

// wallClockGuard reports whether r's kernel guard opens by the host's
// wall clock (iptables `-m time --datestart`, which a clock step moves)
// rather than by a countdown the kernel keeps (nft set element timeouts).
func wallClockGuard(r *txRecord) bool {
	for _, c := range r.GuardChains {
		if c.WallClock {
			return true
		}
	}
	return false
}

// status reports a tx (the current one when TxID is empty).
func (e *engine) status(ctx context.Context, req *Request, rep *Report) error {
	id := req.TxID
	if id == "" {
		cur, err := e.st.current()
		if err != nil {
			return err
		}
		if cur == "" {
			rep.State = StateNone
			return nil
		}
		id = cur
	}
	r, err := e.loadTx(id)
	if err != nil {
		return err
	}
	if !r.State.Terminal() {
		if boot, err := e.env.BootID(); err == nil && r.BootID != "" && boot != r.BootID {
			l, err := e.lock(ctx, e.env.LockWait)
			if err != nil {
				return err
			}
			defer l.unlock()
			if r, err = e.loadTx(id); err != nil {
				return err
			}
			if _, err := e.rebootSettle(r); err != nil {
				return err
			}
		}
	}
	if r.State == StateApplied && r.Step == stepReverting {
		if r, err = e.finishRevert(ctx, r); err != nil {
			return err
		}
	}
	fill(rep, r)
	switch r.State {
	case StateArmed, StateApplied:
		alive, err := e.armer.Alive(ctx, r.Timer)
		if err != nil {
			return err
		}
		rep.Status = &StatusReport{TimerAlive: alive, Overdue: e.overdue(r)}
		if r.State == StateApplied {
			rep.Status.Changes = e.changes(ctx, r)
		}
	case StateReverted, StateRevertFailed:
		if r.Step == stepRebootSeen {
			// the host booted its persisted config, which legitimately
			// differs from the snapshot: compare with that instead
			rep.Reboot = true
			if eq, _, err := e.fw.BootEqual(ctx, r.Format); err == nil {
				rep.Verified = &eq
			} else if !errors.Is(err, ErrNoBootConfig) {
				rep.Warnings = append(rep.Warnings, "compare with the boot config: "+err.Error())
			}
			break
		}
		if snap, err := e.st.loadSnapshot(r.ID); err == nil {
			if eq, _, err := e.fw.Equal(ctx, snap); err == nil {
				rep.Verified = &eq
			}
		}
	}
	if r.State == StateRevertFailed {
		return &Error{Code: CodeRevertFailed, Message: fmt.Sprintf("the revert of %s failed: %s: inspect %s", r.ID, strings.Join(r.Errors, "; "), e.st.txDir(r.ID))}
	}
	return nil
}

// finishRevert finishes a revert that was decided (the record says
// reverting) and interrupted: its timer is gone (the revert was the timer,
// killed half-way) and no helper holds the lock. Nothing on the host would
// finish it, and the kernel guard has opened the operator's path: status
// finishes it, as the next begin would (the restore is idempotent). A live
// timer, or a busy lock, means the revert may still run: then r is
// returned as it is.
func (e *engine) finishRevert(ctx context.Context, r *txRecord) (*txRecord, error) {
	if alive, err := e.armer.Alive(ctx, r.Timer); err != nil || alive {
		return r, nil
	}
	l, err := e.lock(ctx, e.env.LockWait)
	if err != nil {
		return r, nil // a helper runs: it may be the revert
	}
	defer l.unlock()
	nr, err := e.loadTx(r.ID)
	if err != nil || nr.State != StateApplied || nr.Step != stepReverting {
		return nr, err
	}
	why := fmt.Sprintf("revert timer %s gone during its revert", nr.Timer)
	e.logf(nr.ID, "warning", "%s: finishing the revert", why)
	_, err = e.revertLocked(ctx, nr, why+"; finished by status")
	return nr, err
}

// abort: restore the snapshot now (workstation-initiated revert).
func (e *engine) abort(ctx context.Context, req *Request, rep *Report) error {
	l, r, err := e.lockTx(ctx, req.TxID)
	if err != nil {
		return err
	}
	defer l.unlock()
	if _, err := e.rebootSettle(r); err != nil {
		return err
	}
	fill(rep, r)
	switch r.State {
	case StateArmed, StateApplied:
	case StateReverted:
		return nil
	default:
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("transaction %s is %s, nothing to abort", r.ID, r.State)}
	}
	if who, owner := originUser(req.Origin), originUser(r.Origin); who != owner {
		w := fmt.Sprintf("aborting transaction %s of %s (began %s), not one of yours (%s)", r.ID, r.Origin, r.Created.Format(time.RFC3339), orUnknown(req.Origin))
		rep.Warnings = append(rep.Warnings, w)
		e.logf(r.ID, "warning", "%s", w)
	}
	var ok bool
	var werr error
	_ = e.phase(rep, "restore", func() error { ok, werr = e.revertLocked(ctx, r, "aborted by "+orUnknown(req.Origin)); return nil })
	fill(rep, r)
	rep.Verified = &ok
	if werr != nil {
		return werr
	}
	if !ok {
		return &Error{Code: CodeRevertFailed, Message: fmt.Sprintf("abort of %s: %s: inspect %s", r.ID, strings.Join(r.Errors, "; "), e.st.txDir(r.ID))}
	}
	return nil
}

// noteDeadline is the note of the timer's revert.
const noteDeadline = "deadline reached without confirm"

// revert is the timer firing: restore unless the tx already ended.
func (e *engine) revert(ctx context.Context, req *Request, rep *Report) error {
	l, err := e.lock(ctx, e.env.RevertLockWait)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeLockHeld {
			return err
		}
		// a hung helper holds the lock: reverting late is worse than racing it
		e.logf(req.TxID, "crit", "host lock still busy after %s: reverting without it", e.env.RevertLockWait)
	}
	defer l.unlock()
	r, err := e.loadTx(req.TxID)
	if err != nil {
		return err
	}
	fill(rep, r)
	if r.State.Terminal() {
		return nil
	}
	if req.TimerGen < r.Extends {
		// an extend re-armed a newer timer: this one is stale
		e.logf(r.ID, "info", "timer generation %d fired after extend %d: the deadline is %s, nothing to do", req.TimerGen, r.Extends, r.Deadline.Format(time.RFC3339))
		return nil
	}
	var ok bool
	var werr error
	_ = e.phase(rep, "restore", func() error { ok, werr = e.revertLocked(ctx, r, noteDeadline); return nil })
	fill(rep, r)
	rep.Verified = &ok
	if werr != nil {
		return werr
	}
	if !ok {
		return &Error{Code: CodeRevertFailed, Message: fmt.Sprintf("revert of %s: %s", r.ID, strings.Join(r.Errors, "; "))}
	}
	return nil
}

// watchdog sleeps until the tx deadline on the monotonic clock, re-reading
// the record every second so a confirm/abort ends it early, then reverts.
func (e *engine) watchdog(ctx context.Context, req *Request, rep *Report) error {
	r, err := e.loadTx(req.TxID)
	if err != nil {
		return err
	}
	e.logf(r.ID, "info", "watchdog %d sleeping until %s", os.Getpid(), r.Deadline.Format(time.RFC3339))
	for {
		if r.State.Terminal() {
			fill(rep, r)
			e.logf(r.ID, "info", "watchdog %d: tx is %s, exiting", os.Getpid(), r.State)
			return nil
		}
		left := e.remaining(r)
		if left <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watchdog for %s: %w", r.ID, ctx.Err())
		case <-e.clock.After(min(left, time.Second)):
		}
		if nr, err := e.st.load(r.ID); err == nil {
			r = nr
		}
	}
	return e.revert(ctx, req, rep)
}

// revertLocked restores the snapshot of r, verifies it, records the
// outcome and disarms r's timer. Caller holds the lock (or gave up on it).
// Returns whether the live ruleset equals the snapshot, and a
// CodeStateWrite error when the outcome could not be recorded: r's timer
// is then left armed (it finds the record applied at the deadline and
// restores the same snapshot again), and r is what the record says.
func (e *engine) revertLocked(ctx context.Context, r *txRecord, note string) (bool, error) {
	if r.State == StateArmed {
		// apply records "applied" before it touches the firewall, so an
		// armed tx never changed anything: restoring would only clobber
		// changes others made since the snapshot
		r.State, r.Step = StateReverted, stepReverted
		r.Outcome = "reverted (nothing was applied): " + note
		if err := e.save(r, note); err != nil {
			e.logf(r.ID, "crit", "%v; the revert timer stays armed", err)
			return true, err
		}
		if err := e.armer.Disarm(ctx, r.Timer); err != nil {
			e.logf(r.ID, "warning", "%v", err)
		}
		e.logf(r.ID, "info", "ended before apply (%s): nothing to restore", note)
		return true, nil
	}
	r.Step = stepReverting
	if err := e.save(r, note); err != nil {
		// restoring is what gives the operator back their access: do it
		// anyway; the record keeps saying applied, the timer stays armed
		e.logf(r.ID, "warning", "%v (reverting anyway)", err)
	}
	if note == noteDeadline {
		e.faultPoint("revert-restoring") // the timer's revert, not an abort's
	}
	var errs []error
	snap, err := e.st.loadSnapshot(r.ID)
	verified := false
	var diff string
	if err != nil {
		errs = append(errs, err)
	} else {
		for i := 0; ; i++ {
			err = e.fw.Restore(ctx, snap)
			if err == nil || i >= e.env.RestoreRetries {
				break
			}
			e.logf(r.ID, "warning", "restore snapshot (attempt %d): %v", i+1, err)
			select {
			case <-ctx.Done():
			case <-time.After(e.env.RestoreRetryDelay):
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore snapshot: %w", err))
		}
		// the restore carries lifeline's block table over as it is live:
		// take this tx's guard out of it, and a block tx's own elements
		if guardInBlockTable(r.GuardChains) {
			if gerr := e.fw.RemoveGuard(ctx, r.ID); gerr != nil {
				errs = append(errs, fmt.Errorf("remove the guard from the block table: %w", gerr))
			}
		}
		if r.Change == ChangeBlock {
			if berr := e.undoBlock(ctx, r); berr != nil {
				errs = append(errs, berr)
			}
		}
		eq, d, eqErr := e.fw.Equal(ctx, snap)
		switch {
		case eqErr != nil:
			errs = append(errs, fmt.Errorf("verify restore: %w", eqErr))
		case !eq:
			errs = append(errs, errors.New("live ruleset differs from the snapshot after restore"))
			diff = d
		default:
			verified = err == nil
		}
	}
	// then the protected files, then the on-revert commands, in that order
	if ps, perr := e.st.loadProtect(r.ID); perr != nil {
		errs, verified = append(errs, perr), false
	} else if ps != nil {
		if ferrs := restoreFiles(ps.Files); len(ferrs) > 0 {
			errs, verified = append(errs, ferrs...), false
		} else if len(ps.Files) > 0 {
			e.logf(r.ID, "info", "restored %s", plural(len(ps.Files), "protected file"))
		}
		e.runOnRevert(ctx, r.ID, ps.OnRevert)
	}
	r.Step = stepReverted
	nErrs := len(r.Errors)
	if verified {
		r.State = StateReverted
		r.Outcome = "reverted: " + note
	} else {
		r.State = StateRevertFailed
		r.Outcome = "revert failed: " + note
		r.Diff = diff
		for _, err := range errs {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	if err := e.save(r, note); err != nil {
		r.Errors = r.Errors[:nErrs]
		e.logf(r.ID, "crit", "%v; restored (verified %v) but the revert timer %s stays armed and restores the snapshot again at the deadline", err, verified, r.Timer)
		return verified, &Error{Code: CodeStateWrite, Message: fmt.Sprintf(
			"the snapshot was restored (live equals it: %v), but %s; the revert timer %s stays armed and restores the same snapshot again at %s; free space in %s",
			verified, errMessage(err), r.Timer, r.Deadline.Format(time.RFC3339), e.st.dir)}
	}
	if err := e.armer.Disarm(ctx, r.Timer); err != nil {
		e.logf(r.ID, "warning", "%v", err)
	}
	if verified {
		e.logf(r.ID, "info", "reverted (%s): live ruleset equals the snapshot", note)
	} else {
		e.logf(r.ID, "crit", "REVERT FAILED (%s): %v; diff:\n%s", note, errors.Join(errs...), r.Diff)
	}
	return verified, nil
}

// guardInBlockTable reports whether a guard went into lifeline's block
// table, which every restore carries over.
func guardInBlockTable(chains []GuardChain) bool {
	for _, c := range chains {
		if c.Table == blockTable && c.Family == "inet" {
			return true
		}
	}
	return false
}
