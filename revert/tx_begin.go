package revert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// begin: lock, settle the previous tx, check the change, snapshot, arm.
func (e *engine) begin(ctx context.Context, req *Request, rep *Report) error {
	a := req.Begin
	switch {
	case !validTxID(req.TxID):
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("bad transaction id %q: use letters, digits, '.', '_', '-' (at most 64)", req.TxID)}
	case a == nil:
		return &Error{Code: CodeBadRequest, Message: "begin without its payload (begin)"}
	}
	if err := checkTimeout(a.ConfirmTimeout); err != nil {
		return err
	}
	ch, err := newChange(&a.Change)
	if err != nil {
		return err // before the lock and the tx folder: nothing is written
	}
	l, err := e.lock(ctx, e.env.LockWait)
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := e.st.ensureReserve(); err != nil {
		return &Error{Code: CodeStateWrite, Message: err.Error() + "; nothing was changed"}
	}
	e.cleanUploads()
	if err := e.phase(rep, "settle", func() error { return e.settleCurrent(ctx) }); err != nil {
		return err
	}
	if _, err := os.Stat(e.st.txDir(req.TxID)); err == nil {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("transaction id %s was already used on this host: pick a new one", req.TxID)}
	}

	var det *Detect
	if err := e.phase(rep, "detect", func() (err error) { det, err = e.detectHost(ctx); return err }); err != nil {
		return err
	}
	rep.Begin = &BeginReport{Detect: det}
	refuse := func(pe *Error) error {
		rep.State = StateRefused
		e.recordRefusal(req, ch, det, pe)
		return pe
	}
	plan, err := ch.check(ctx, e, a, det, rep)
	if err != nil {
		return refuse(refusal(err, CodeInternal, ""))
	}
	if err := e.refuseUnguarded(req.TxID, plan, a.Change.Force, "this "+string(ch.kind())+" change"); err != nil {
		return refuse(err.(*Error))
	}
	if a.Preflight != nil {
		if pe := e.preflightBegin(ctx, req.TxID, ch, det, a, rep); pe != nil {
			return refuse(pe)
		}
	}
	var snap *Snapshot
	if err := e.phase(rep, "snapshot", func() (err error) { snap, err = e.fw.Snapshot(ctx); return err }); err != nil {
		return refuse(&Error{Code: CodeSnapshot, Message: "take snapshot: " + err.Error()})
	}
	if err := e.phase(rep, "validate-snapshot", func() error { return e.fw.ValidateSnapshot(ctx, snap) }); err != nil {
		return refuse(&Error{Code: CodeSnapshot, Message: "the snapshot would not restore, so nothing can be armed: " + err.Error()})
	}
	var ps *protectSet
	if len(a.Change.Protect)+len(a.Change.OnRevert) > 0 {
		if err := e.phase(rep, "snapshot-files", func() error {
			files, err := snapshotFiles(a.Change.Protect)
			ps = &protectSet{Files: files, OnRevert: a.Change.OnRevert}
			return err
		}); err != nil {
			return refuse(&Error{Code: CodeSnapshot, Message: err.Error() + "; nothing was changed"})
		}
	}

	tokenHex, tokenHash, err := e.newToken()
	if err != nil {
		return err
	}
	now := e.now()
	r := &txRecord{
		ID: req.TxID, Origin: req.Origin, State: StateArmed, Step: stepArming, Change: ch.kind(),
		Operator: a.Operator, Created: now.UTC().Round(0), ConfirmTimeout: a.ConfirmTimeout, TokenHash: tokenHash,
		BootID: det.BootID, Detect: det, GuardChains: plan.Covered, Unguarded: plan.Uncovered,
		Protect: a.Change.Protect, OnRevert: len(a.Change.OnRevert),
	}
	if rc, ok := ch.(*rulesetChange); ok {
		r.Format, r.Persist = rc.Format, rc.Persist
	}
	e.setDeadline(r, time.Duration(a.ConfirmTimeout))
	err = e.phase(rep, "record", func() error {
		if err := e.st.room(ch.size() + snapshotSize(snap) + ps.size()); err != nil {
			return err
		}
		if err := e.st.createTx(r.ID); err != nil {
			return err
		}
		if err := ch.keep(e, r.ID); err != nil {
			return err
		}
		if err := e.st.saveSnapshot(r.ID, snap); err != nil {
			return err
		}
		if !ps.empty() {
			if err := e.st.saveProtect(r.ID, ps); err != nil {
				return err
			}
		}
		// current first: a record it names is never missed by the next
		// begin; a current without a record is ignored
		if err := e.st.setCurrent(r.ID); err != nil {
			return err
		}
		return e.save(r, "begin by "+req.Origin)
	})
	if err != nil {
		// nothing is armed yet: leave no half-written folder behind
		_ = os.RemoveAll(e.st.txDir(r.ID))
		code := CodeInternal
		if errors.Is(err, syscall.ENOSPC) || errors.As(err, new(*Error)) {
			code = CodeStateWrite
		}
		return &Error{Code: code, Message: fmt.Sprintf("write tx %s: %s; nothing was changed", r.ID, errMessage(err))}
	}
	var t Timer
	if err := e.phase(rep, "arm", func() (err error) { t, err = e.armer.Arm(ctx, r.ID, 0, time.Duration(a.ConfirmTimeout)); return err }); err != nil {
		r.State, r.Step = StateRefused, stepRefused
		r.Errors = append(r.Errors, err.Error())
		r.Outcome = "refused: the revert timer could not be armed"
		_ = e.save(r, "arm failed")
		rep.State = r.State
		e.logf(r.ID, "warning", "arm revert timer: %v", err)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("arm revert timer: %v: nothing was changed", err)}
	}
	r.Timer, r.Step = t, stepArmed
	rep.Begin.Snapshot = snap // the workstation keeps a copy in its run folder
	if err := e.save(r, "armed "+t.String()); err != nil {
		// the timer runs; a record without it makes the next begin revert
		// (a no-op) and go on: safe
		return fmt.Errorf("record armed timer: %w", err)
	}
	e.logf(r.ID, "info", "armed by %s: %s change, deadline %s, timer %s", r.Origin, r.Change, r.Deadline.Format(time.RFC3339), t)
	e.faultPoint("begin-armed")
	if err := e.st.prune(keepTx, r.ID); err != nil {
		e.logf(r.ID, "warning", "%v", err)
	}
	fill(rep, r)
	rep.Begin.Token = tokenHex
	return nil
}

// checkTimeout bounds a confirm timeout (begin, extend).
func checkTimeout(d Duration) error {
	switch {
	case d <= 0:
		return &Error{Code: CodeBadRequest, Message: "confirm timeout must be positive"}
	case time.Duration(d) > MaxConfirmTimeout:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("confirm timeout %s is too long: at most %s (the host stays armed, its lock held, until the deadline)", time.Duration(d), MaxConfirmTimeout)}
	}
	return nil
}

// newToken makes the confirm token: 32 random bytes as hex, and the
// sha256 the record keeps (the token itself is never written on the host).
func (e *engine) newToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(e.env.Rand, b); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	token = hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:]), nil
}

// setDeadline puts r's deadline d from now, on the wall clock and on
// CLOCK_MONOTONIC (what stage/confirm check and the watchdog sleeps on).
func (e *engine) setDeadline(r *txRecord, d time.Duration) {
	r.Deadline = e.now().Add(d).UTC().Round(0)
	r.MonoDeadline = e.clock.Monotonic() + d
	r.ConfirmTimeout = Duration(d)
}

// recordRefusal keeps a refused begin on disk for status (best effort).
func (e *engine) recordRefusal(req *Request, ch hostChange, det *Detect, pe *Error) {
	if err := e.st.createTx(req.TxID); err != nil {
		return
	}
	now := e.now().UTC().Round(0)
	r := &txRecord{ID: req.TxID, Origin: req.Origin, State: StateRefused, Step: stepRefused, Change: ch.kind(),
		Operator: req.Begin.Operator, Created: now, ConfirmTimeout: req.Begin.ConfirmTimeout, Detect: det,
		Outcome: "refused: " + pe.Code, Errors: []string{pe.Error()}}
	if rc, ok := ch.(*rulesetChange); ok {
		r.Format = rc.Format
	}
	if det != nil {
		r.BootID = det.BootID
	}
	_ = ch.keep(e, r.ID)
	if e.save(r, pe.Code) == nil {
		_ = e.st.setCurrent(r.ID)
	}
	e.logf(r.ID, "info", "refused: %v", pe)
}

// MaxConfirmTimeout bounds a transaction's confirm timeout on the host too,
// whatever the workstation sends.
const MaxConfirmTimeout = 24 * time.Hour

// overdueAfter is how long past its deadline an armed or applied
// transaction may stay so before its timer counts as hung: the timer
// fires at the deadline and its revert takes seconds.
const overdueAfter = 15 * time.Second

// overdue reports whether r's revert is overdue: still armed or applied
// overdueAfter past the deadline, whatever its timer process looks like
// (a SIGSTOPped watchdog is alive and does nothing).
func (e *engine) overdue(r *txRecord) bool {
	return !r.State.Terminal() && e.remaining(r) < -overdueAfter
}

// settleCurrent resolves the current tx before a new begin: terminal →
// nothing; another boot → reverted; timer alive and not overdue → lock
// held; armed with its timer dead or overdue → reverted (nothing was
// applied); applied with its timer dead or overdue → reverted when the
// live ruleset already equals its snapshot, else refused with
// CodeNeedsRecovery: restoring a snapshot that may be older than changes
// made by hand since is the operator's call, not begin's. Caller holds the
// lock.
func (e *engine) settleCurrent(ctx context.Context) error {
	id, err := e.st.current()
	if err != nil || id == "" {
		return err
	}
	r, err := e.st.load(id)
	if errors.Is(err, errNoTx) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: inspect or remove %s", err, e.st.txDir(id))
	}
	if r.State.Terminal() {
		return nil
	}
	if changed, err := e.rebootSettle(r); changed || err != nil {
		return err
	}
	alive, err := e.armer.Alive(ctx, r.Timer)
	if err != nil {
		return fmt.Errorf("check revert timer of tx %s: %w", r.ID, err)
	}
	overdue := e.overdue(r)
	if alive && !overdue {
		return &Error{Code: CodeLockHeld, Holder: holderOf(r), Message: fmt.Sprintf(
			"transaction %s from %s is %s until %s: wait for it to end, or abort it",
			r.ID, r.Origin, r.State, r.Deadline.Format(time.RFC3339))}
	}
	why := fmt.Sprintf("revert timer %s gone", r.Timer)
	if alive {
		why = fmt.Sprintf("revert timer %s still %s past the deadline (hung)", r.Timer, (-e.remaining(r)).Round(time.Second))
	}
	if r.State == StateArmed {
		e.logf(r.ID, "warning", "%s while armed: ending it (nothing was applied)", why)
		if _, err := e.revertLocked(ctx, r, why+"; ended by the next begin"); err != nil {
			return err
		}
		return nil
	}
	if r.Step == stepReverting {
		// a revert was decided (deadline, abort) and interrupted: finish it
		e.logf(r.ID, "warning", "%s during its revert: finishing the revert", why)
		if _, err := e.revertLocked(ctx, r, why+" during the revert; finished by the next begin"); err != nil {
			return err
		}
		if r.State == StateRevertFailed {
			return &Error{Code: CodeRevertFailed, Message: fmt.Sprintf(
				"the previous transaction %s could not be reverted: inspect %s, then begin again", r.ID, e.st.txDir(r.ID))}
		}
		return nil
	}
	snap, err := e.st.loadSnapshot(r.ID)
	if err != nil {
		return &Error{Code: CodeNeedsRecovery, Holder: holderOf(r), Message: fmt.Sprintf(
			"transaction %s from %s was left applied (%s) and its snapshot cannot be read (%v): inspect %s", r.ID, r.Origin, why, err, e.st.txDir(r.ID))}
	}
	eq, diff, err := e.fw.Equal(ctx, snap)
	if err != nil {
		return fmt.Errorf("compare the live ruleset with the snapshot of tx %s: %w", r.ID, err)
	}
	if eq {
		if changed := e.changedFiles(r.ID); len(changed) > 0 {
			eq, diff = false, "protected files changed since: "+strings.Join(changed, ", ")+"\n"
		}
	}
	if !eq {
		e.logf(r.ID, "warning", "%s while applied; the live ruleset differs from the snapshot: begin refused, needs recovery", why)
		return &Error{Code: CodeNeedsRecovery, Holder: holderOf(r), Message: fmt.Sprintf(
			"transaction %s from %s (deadline %s) was left applied (%s) and the live ruleset differs from its snapshot%s; lifeline will not restore that snapshot over changes that may have been made since without being asked: "+
				"restore it with `lifeline status HOST --abort`, then apply again; differences:\n%s",
			r.ID, r.Origin, r.Deadline.Format(time.RFC3339), why, takenAt(snap), truncateLines(diff, 40))}
	}
	e.logf(r.ID, "warning", "%s while applied; the live ruleset already equals the snapshot: marked reverted", why)
	r.State, r.Step = StateReverted, stepReverted
	r.Outcome = "reverted: " + why + "; the live ruleset already equalled the snapshot at the next begin"
	if err := e.save(r, "settled by the next begin"); err != nil {
		return err
	}
	if err := e.armer.Disarm(ctx, r.Timer); err != nil {
		e.logf(r.ID, "warning", "%v", err)
	}
	return nil
}

// truncateLines keeps the first n lines of s, saying how many it dropped.
func truncateLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("... (%d more lines)\n", len(lines)-n)
}
