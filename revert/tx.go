package revert

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// The transaction engine. Every transition is written to record.json
// atomically before the firewall is touched where possible, so that the
// record always tells the next status/begin what may have happened.
//
// # Crash points
//
// "killed" = the helper process dies right after the step (the flock goes
// with it); "reboot" = the host reboots right after the step (the live
// ruleset becomes the persisted boot config, transient timers and the
// watchdog are gone, the boot id changes).
//
//	step                                   | helper killed                                   | host rebooted
//	---------------------------------------+-------------------------------------------------+------------------------------------------
//	begin: lock, settle old tx             | nothing written; next begin settles again       | same
//	begin: detect/validate/snapshot        | nothing written, nothing live changed           | same
//	begin: tx folder, ruleset, snapshot    | folder without record: ignored, pruned later    | same
//	begin: current, record armed/arming    | no timer recorded: next begin finds it dead,    | boot id differs: status/begin mark it
//	                                       | marks it reverted (an armed tx changed nothing) | reverted ("reboot")
//	begin: timer armed, not yet recorded   | as above; the orphan timer later finds the      | timer gone with the boot; as above
//	                                       | record terminal and does nothing                |
//	begin: record armed/armed              | timer fires at the deadline: reverted           | reverted ("reboot")
//	apply: record applied/applying         | timer fires: snapshot restored, reverted        | old config boots; reverted ("reboot")
//	apply: Firewall.Apply done             | timer fires, reverted; the kernel guard opens   | old config boots; reverted ("reboot")
//	                                       | the operator's path at the deadline anyway      |
//	apply: record applied/applied          | same                                            | same
//	apply failed: record reverting         | restore may be half done: timer fires and       | old config boots; reverted ("reboot")
//	                                       | restores again (idempotent)                     |
//	confirm: record applied/confirming     | timer fires: reverted (confirm never reported)  | old config boots; reverted ("reboot")
//	confirm: guard dropped (Apply nil)     | timer fires: reverted                           | old config boots; reverted ("reboot")
//	confirm: record confirmed              | timer fires, finds confirmed: does nothing      | old config boots (not yet persisted):
//	                                       | (disarm missed: harmless)                       | record stays confirmed, live is old;
//	                                       |                                                 | workstation sees Persisted empty
//	confirm: disarmed                      | confirmed; persist missing (Persisted empty)    | as above
//	confirm: persisted, record persisted   | done                                            | new config boots
//	revert: record reverting               | timer/watchdog gone: next begin/status sees a   | old config boots; reverted ("reboot")
//	                                       | dead timer; begin re-runs the revert            |
//	revert: Restore done                   | as above (restore is idempotent)                | same
//	revert: record reverted/revert-failed  | done (disarm of the other timer missed:         | same
//	                                       | it finds a terminal record)                     |
//
// A watchdog killed by anything other than confirm/abort leaves the record
// armed/applied: status reports TimerAlive=false, the kernel guard re-opens
// the operator's SSH path at the deadline, and the next begin reverts it.
type engine struct {
	env   Env
	st    store
	fw    Firewall
	armer Armer
	clock Clock
}

// testHookSave, when set (tests only), runs after every record write so
// tests can simulate a crash right after it.
var testHookSave func(r *txRecord)

func (e *engine) now() time.Time { return e.clock.Now() }

// save stamps a transition and writes the record atomically. When the
// write fails (a full disk), it releases the state folder's reserve and
// writes again; when that fails too, r is rolled back to what the record
// on disk holds and the error is a CodeStateWrite *Error: the caller must
// not take (or must undo) the step the record would have announced.
func (e *engine) save(r *txRecord, note string) error {
	r.Transitions = append(r.Transitions, transition{State: r.State, Step: r.Step, At: e.now().UTC().Round(0), Note: note})
	err := e.st.save(r)
	if err != nil && e.st.releaseReserve() {
		e.logf(r.ID, "warning", "%v: released the %d KiB reserve of %s to record %s/%s; free space there", err, reserveSize>>10, e.st.dir, r.State, r.Step)
		err = e.st.save(r)
	}
	if err != nil {
		want := fmt.Sprintf("%s/%s", r.State, r.Step)
		r.rollback()
		return &Error{Code: CodeStateWrite, Message: fmt.Sprintf(
			"cannot record %s of transaction %s in %s: %v (the record still says %s/%s)", want, r.ID, e.st.dir, err, r.State, r.Step)}
	}
	r.markSaved()
	if testHookSave != nil {
		testHookSave(r)
	}
	return nil
}

// logf writes one line to the tx log and to syslog at the given level.
func (e *engine) logf(txID string, level string, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if txID != "" {
		line := e.now().UTC().Format(time.RFC3339Nano) + " " + level + " " + msg
		_ = e.st.appendLog(txID, line)
	}
	if e.env.Syslog == nil {
		return
	}
	msg = "lifeline: tx " + txID + ": " + msg
	switch level {
	case "crit":
		_ = e.env.Syslog.Crit(msg)
	case "warning":
		_ = e.env.Syslog.Warning(msg)
	default:
		_ = e.env.Syslog.Info(msg)
	}
}

func (e *engine) lock(ctx context.Context, wait time.Duration) (*hostLock, error) {
	if err := e.st.init(); err != nil {
		return nil, err
	}
	l, err := lockHost(ctx, e.st.dir+"/"+lockFile, wait)
	if errors.Is(err, errLockBusy) {
		pe := &Error{Code: CodeLockHeld, Message: "another lifeline helper is running on this host: try again in a moment"}
		if id, cerr := e.st.current(); cerr == nil && id != "" {
			if r, lerr := e.st.load(id); lerr == nil {
				pe.Holder = holderOf(r)
			}
		}
		return nil, pe
	}
	return l, err
}

func holderOf(r *txRecord) *Holder {
	return &Holder{TxID: r.ID, Origin: r.Origin, State: r.State, Deadline: r.Deadline}
}

func (e *engine) detectHost(ctx context.Context) (*Detect, error) {
	det, err := e.fw.Detect(ctx)
	if err != nil {
		return nil, fmt.Errorf("detect firewall backends: %w", err)
	}
	det.UID = os.Geteuid()
	if det.Arch == "" {
		det.Arch = runtime.GOARCH
	}
	if det.BootID == "" {
		det.BootID, _ = e.env.BootID()
	}
	if !det.Systemd {
		det.Systemd = SystemdIsPID1()
	}
	return det, nil
}

// offersBackend reports whether det offers a backend for format.
func offersBackend(det *Detect, f Format) bool {
	for _, b := range det.Backends {
		switch {
		case f == FormatNft && b == "nft",
			f == FormatIPTables && strings.HasPrefix(b, "iptables-"),
			f == FormatIP6Tables && strings.HasPrefix(b, "ip6tables-"):
			return true
		}
	}
	return false
}

// loadTx loads a tx by id, mapping a missing one to CodeNoTx.
func (e *engine) loadTx(id string) (*txRecord, error) {
	if !validTxID(id) {
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("bad transaction id %q", id)}
	}
	r, err := e.st.load(id)
	if errors.Is(err, errNoTx) {
		return nil, &Error{Code: CodeNoTx, Message: fmt.Sprintf("no transaction %s on this host", id)}
	}
	return r, err
}

func fill(rep *Report, r *txRecord) {
	rep.TxID = r.ID
	rep.Origin = r.Origin
	rep.Reboot = r.Step == stepRebootSeen
	rep.State = r.State
	rep.Deadline = r.Deadline
	rep.Timer = r.Timer.String()
	rep.Guard = r.Guard
	rep.GuardChains = chainNames(r.GuardChains, false)
	rep.Unguarded = chainNames(r.Unguarded, true)
	if len(r.Persisted) > 0 {
		rep.Persisted = r.Persisted
	}
}

// rebootSettle applies the boot-id rule: a tx left armed/applied by another
// boot was never persisted, so the old config booted: it is reverted.
// Reports whether it changed r. Caller holds the lock.
func (e *engine) rebootSettle(r *txRecord) (bool, error) {
	if r.State.Terminal() || r.BootID == "" {
		return false, nil
	}
	boot, err := e.env.BootID()
	if err != nil || boot == r.BootID {
		return false, err
	}
	r.State = StateReverted
	r.Step = stepRebootSeen
	r.Outcome = "reverted: the host rebooted while the change was unconfirmed, so the persisted config booted"
	if err := e.save(r, "reboot"); err != nil {
		return true, err
	}
	e.logf(r.ID, "warning", "host rebooted while %s (boot %s, now %s): marked reverted", r.Step, r.BootID, boot)
	return true, nil
}

// begin: lock, settle the previous tx, validate, snapshot, arm.
func (e *engine) begin(ctx context.Context, req *Request, rep *Report) error {
	switch {
	case !validTxID(req.TxID):
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("bad transaction id %q: use letters, digits, '.', '_', '-' (at most 64)", req.TxID)}
	case req.ConfirmTimeout <= 0:
		return &Error{Code: CodeBadRequest, Message: "confirm timeout must be positive"}
	case time.Duration(req.ConfirmTimeout) > MaxConfirmTimeout:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("confirm timeout %s is too long: at most %s (the host stays armed, its lock held, until the deadline)", time.Duration(req.ConfirmTimeout), MaxConfirmTimeout)}
	}
	if err := checkFormat(req.Format); err != nil {
		return err
	}
	if err := CheckRuleset(req.Format, req.Ruleset, req.MaxRulesetSize); err != nil {
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
	rep.Detect = det
	refuse := func(pe *Error) error {
		rep.State = StateRefused
		e.recordRefusal(req, det, pe)
		return pe
	}
	if !offersBackend(det, req.Format) {
		return refuse(&Error{Code: CodeBackend, Message: fmt.Sprintf("no %s backend on this host (found: %s): install it or send another format", req.Format, strings.Join(det.Backends, ", "))})
	}
	if pe := formatFits(req, det); pe != nil {
		return refuse(pe)
	}
	loadStart := time.Now()
	if err := e.phase(rep, "validate", func() error { return e.fw.Validate(ctx, req.Format, req.Ruleset) }); err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: CodeInvalidRuleset, Message: err.Error()}
		}
		return refuse(pe)
	}
	// The deadline counts from the arm: apply loads the ruleset (about as
	// long as the trial load took), then the workstation needs a fresh
	// connection and the confirm. A ruleset whose load eats a third of the
	// timeout would revert a good change while holding the lock.
	if took := time.Since(loadStart); 3*took > time.Duration(req.ConfirmTimeout) {
		return refuse(&Error{Code: CodeBadRequest, Message: fmt.Sprintf(
			"the trial load of this ruleset took %s, too long for the %s confirm timeout (apply loads it again, then the fresh connection and the confirm must fit): raise --confirm-timeout to at least %s; nothing was changed",
			took.Round(time.Millisecond), time.Duration(req.ConfirmTimeout), (4 * took).Round(time.Second))})
	}
	var plan *GuardPlan
	if err := e.phase(rep, "guard-plan", func() (err error) { plan, err = e.fw.GuardPlan(ctx, req.Format, req.Ruleset, req.Operator); return err }); err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: CodeInvalidRuleset, Message: "plan the kernel guard: " + err.Error()}
		}
		return refuse(pe)
	}
	if len(plan.Uncovered) > 0 && !req.Force {
		return refuse(&Error{Code: CodeUnguarded, Message: fmt.Sprintf(
			"the kernel guard cannot cover %s of this ruleset, so if the revert timer died the host could stay locked out: %s; change the ruleset, or pass --force to rely on the revert timer alone for these",
			plural(len(plan.Uncovered), "base chain"), strings.Join(chainNames(plan.Uncovered, true), "; "))})
	}
	if len(plan.Uncovered) > 0 {
		e.logf(req.TxID, "warning", "forced: the guard does not cover %s", strings.Join(chainNames(plan.Uncovered, true), "; "))
	}
	var snap *Snapshot
	if err := e.phase(rep, "snapshot", func() (err error) { snap, err = e.fw.Snapshot(ctx); return err }); err != nil {
		return refuse(&Error{Code: CodeSnapshot, Message: "take snapshot: " + err.Error()})
	}
	if err := e.phase(rep, "validate-snapshot", func() error { return e.fw.ValidateSnapshot(ctx, snap) }); err != nil {
		return refuse(&Error{Code: CodeSnapshot, Message: "the snapshot would not restore, so nothing can be armed: " + err.Error()})
	}

	token := make([]byte, 32)
	if _, err := io.ReadFull(e.env.Rand, token); err != nil {
		return fmt.Errorf("generate token: %w", err)
	}
	tokenHex := hex.EncodeToString(token)
	sum := sha256.Sum256([]byte(tokenHex))
	now := e.now()
	r := &txRecord{
		ID: req.TxID, Origin: req.Origin, State: StateArmed, Step: stepArming,
		Format: req.Format, Persist: req.Persist, Operator: req.Operator,
		Created: now.UTC().Round(0), Deadline: now.Add(time.Duration(req.ConfirmTimeout)).UTC().Round(0),
		MonoDeadline:   e.clock.Monotonic() + time.Duration(req.ConfirmTimeout),
		ConfirmTimeout: req.ConfirmTimeout, TokenHash: hex.EncodeToString(sum[:]),
		BootID: det.BootID, Detect: det,
		GuardChains: plan.Covered, Unguarded: plan.Uncovered,
	}
	err = e.phase(rep, "record", func() error {
		if err := e.st.room(int64(len(req.Ruleset)) + snapshotSize(snap)); err != nil {
			return err
		}
		if err := e.st.createTx(r.ID); err != nil {
			return err
		}
		if err := writeFileAtomic(e.st.path(r.ID, rulesetFile), []byte(req.Ruleset), 0o600); err != nil {
			return err
		}
		if err := e.st.saveSnapshot(r.ID, snap); err != nil {
			return err
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
	if err := e.phase(rep, "arm", func() (err error) { t, err = e.armer.Arm(ctx, r.ID, time.Duration(req.ConfirmTimeout)); return err }); err != nil {
		r.State, r.Step = StateRefused, stepRefused
		r.Errors = append(r.Errors, err.Error())
		r.Outcome = "refused: the revert timer could not be armed"
		_ = e.save(r, "arm failed")
		rep.State = r.State
		e.logf(r.ID, "warning", "arm revert timer: %v", err)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("arm revert timer: %v: nothing was changed", err)}
	}
	r.Timer, r.Step = t, stepArmed
	rep.Snapshot = snap // the workstation keeps a copy in its run folder
	if err := e.save(r, "armed "+t.String()); err != nil {
		// the timer runs; a record without it makes the next begin revert
		// (a no-op) and go on: safe
		return fmt.Errorf("record armed timer: %w", err)
	}
	e.logf(r.ID, "info", "armed by %s: %s deadline %s, timer %s", r.Origin, r.Format, r.Deadline.Format(time.RFC3339), t)
	if err := e.st.prune(keepTx, r.ID); err != nil {
		e.logf(r.ID, "warning", "%v", err)
	}
	fill(rep, r)
	rep.Token = tokenHex
	return nil
}

// recordRefusal keeps a refused begin on disk for status (best effort).
func (e *engine) recordRefusal(req *Request, det *Detect, pe *Error) {
	if err := e.st.createTx(req.TxID); err != nil {
		return
	}
	now := e.now().UTC().Round(0)
	r := &txRecord{ID: req.TxID, Origin: req.Origin, State: StateRefused, Step: stepRefused, Format: req.Format,
		Operator: req.Operator, Created: now, ConfirmTimeout: req.ConfirmTimeout, Detect: det,
		Outcome: "refused: " + pe.Code, Errors: []string{pe.Error()}}
	if det != nil {
		r.BootID = det.BootID
	}
	_ = writeFileAtomic(e.st.path(r.ID, rulesetFile), []byte(req.Ruleset), 0o600)
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

// lockTx takes the host lock and loads the transaction under it.
func (e *engine) lockTx(ctx context.Context, id string) (*hostLock, *txRecord, error) {
	l, err := e.lock(ctx, e.env.LockWait)
	if err != nil {
		return nil, nil, err
	}
	r, err := e.loadTx(id)
	if err != nil {
		l.unlock()
		return nil, nil, err
	}
	return l, r, nil
}

// apply: guard + atomic swap of the staged ruleset.
func (e *engine) apply(ctx context.Context, req *Request, rep *Report) error {
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
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("transaction %s is %s, apply needs armed", r.ID, r.State)}
	}
	remaining := e.remaining(r)
	if remaining <= 0 {
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("the deadline of %s passed at %s: the revert is due; begin again with a longer confirm timeout", r.ID, r.Deadline.Format(time.RFC3339))}
	}
	if alive, err := e.armer.Alive(ctx, r.Timer); err != nil || !alive {
		e.revertLocked(ctx, r, "revert timer gone before apply")
		fill(rep, r)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("the revert timer %s of %s is gone (%v), so nothing was applied: begin again", r.Timer, r.ID, err)}
	}
	ruleset, err := e.st.loadRuleset(r.ID)
	if err != nil {
		return err
	}
	g := &Guard{TxID: r.ID, Addr: r.Operator.Addr, Port: r.Operator.SSHPort, Deadline: r.Deadline, Remaining: remaining, Chains: r.GuardChains}
	r.State, r.Step = StateApplied, stepApplying
	r.Guard = fmt.Sprintf("accept %s to port %d after %s in %s", g.Addr, g.Port, g.Deadline.Format(time.RFC3339), plural(len(g.Chains), "chain"))
	if len(g.Chains) == 0 {
		r.Guard = "none needed: the ruleset leaves no base chain the operator's SSH crosses changed"
	}
	if err := e.save(r, ""); err != nil {
		return err
	}
	err = e.phase(rep, "apply", func() error { return e.fw.Apply(ctx, r.Format, ruleset, g) })
	if err != nil {
		e.logf(r.ID, "warning", "apply failed, restoring the snapshot now: %v", err)
		var ok bool
		var werr error
		_ = e.phase(rep, "restore", func() error { ok, werr = e.revertLocked(ctx, r, "apply failed: "+err.Error()); return nil })
		fill(rep, r)
		rep.Verified = &ok
		if werr != nil {
			return werr
		}
		return &Error{Code: CodeApplyFailed, Message: fmt.Sprintf("apply %s ruleset: %v; the snapshot was restored (state %s)", r.Format, err, r.State)}
	}
	_ = e.phase(rep, "verify", func() error {
		ok, diff, err := e.fw.Contains(ctx, r.Format, ruleset)
		if err != nil {
			e.logf(r.ID, "warning", "verify apply: %v", err)
			return nil
		}
		rep.Verified = &ok
		if !ok {
			e.logf(r.ID, "warning", "live ruleset does not hold the applied one:\n%s", diff)
		}
		return nil
	})
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
	e.logf(r.ID, "info", "applied with guard (%s)", r.Guard)
	fill(rep, r)
	return nil
}

// remaining is the time left until r's deadline: on CLOCK_MONOTONIC when
// r was begun in this boot (immune to wall-clock steps, like the timers),
// else on the wall clock.
func (e *engine) remaining(r *txRecord) time.Duration {
	if r.MonoDeadline > 0 {
		if boot, err := e.env.BootID(); err == nil && boot == r.BootID {
			return r.MonoDeadline - e.clock.Monotonic()
		}
	}
	return r.Deadline.Sub(e.now())
}

// checkToken compares the sha256 of token with the recorded hash in
// constant time.
func checkToken(r *txRecord, token string) bool {
	want, err := hex.DecodeString(r.TokenHash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// confirm: token, drop the guard, record confirmed, disarm, persist.
func (e *engine) confirm(ctx context.Context, req *Request, rep *Report) error {
	l, r, err := e.lockTx(ctx, req.TxID)
	if err != nil {
		return err
	}
	defer l.unlock()
	fill(rep, r)
	if !checkToken(r, req.Token) {
		e.logf(r.ID, "warning", "confirm with a wrong token from %s", req.Origin)
		return &Error{Code: CodeBadToken, Message: "the confirm token does not match this transaction"}
	}
	if _, err := e.rebootSettle(r); err != nil {
		return err
	}
	fill(rep, r)
	switch r.State {
	case StateApplied:
	case StateConfirmed:
		return nil // a retried confirm whose report was lost
	case StateReverted, StateRevertFailed:
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("transaction %s was already %s: the revert won; begin again", r.ID, r.State)}
	default:
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("transaction %s is %s, confirm needs applied", r.ID, r.State)}
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
	ruleset, err := e.st.loadRuleset(r.ID)
	if err != nil {
		return err
	}
	r.Step = stepConfirming
	if err := e.save(r, "confirm by "+req.Origin); err != nil {
		return err
	}
	if err := e.phase(rep, "drop-guard", func() error { return e.fw.Apply(ctx, r.Format, ruleset, nil) }); err != nil {
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
	// From here the record is the arbiter: a timer that still fires finds
	// it confirmed and does nothing, so a failed disarm is only noise.
	_ = e.phase(rep, "disarm", func() error {
		if err := e.armer.Disarm(ctx, r.Timer); err != nil {
			e.logf(r.ID, "warning", "%v", err)
		}
		return nil
	})
	e.logf(r.ID, "info", "confirmed by %s", req.Origin)
	fill(rep, r)
	if !r.Persist {
		return nil
	}
	var files []string
	err = e.phase(rep, "persist", func() (err error) { files, err = e.fw.Persist(ctx, r.Format, ruleset); return err })
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
	fill(rep, r)
	switch r.State {
	case StateArmed, StateApplied:
		alive, err := e.armer.Alive(ctx, r.Timer)
		if err != nil {
			return err
		}
		rep.TimerAlive = &alive
		rep.Overdue = e.overdue(r)
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
	var ok bool
	var werr error
	_ = e.phase(rep, "restore", func() error { ok, werr = e.revertLocked(ctx, r, "deadline reached without confirm"); return nil })
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

// errMessage is an *Error's message, else err's text.
func errMessage(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}

// originUser is the user@workstation part of an origin ("user@ws run ID").
func originUser(origin string) string {
	u, _, _ := strings.Cut(origin, " ")
	return u
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func takenAt(snap *Snapshot) string {
	if snap.Taken.IsZero() {
		return ""
	}
	return " taken " + snap.Taken.UTC().Format(time.RFC3339)
}

// uploadStale is how old a helper upload's temp file must be before begin
// removes it: younger ones may be an upload in flight from another
// workstation (uploads do not take the host lock).
const uploadStale = 10 * time.Minute

// cleanUploads removes bin/SHA.tmp-* files that a killed upload left
// behind (best effort, logged).
func (e *engine) cleanUploads() {
	dir := filepath.Join(e.st.dir, "bin")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, ent := range ents {
		if !strings.Contains(ent.Name(), ".tmp-") {
			continue
		}
		fi, err := ent.Info()
		if err != nil || e.now().Sub(fi.ModTime()) < uploadStale {
			continue
		}
		if err := os.Remove(filepath.Join(dir, ent.Name())); err == nil {
			e.logf("", "info", "removed %s, left by an interrupted helper upload", filepath.Join(dir, ent.Name()))
		}
	}
}
