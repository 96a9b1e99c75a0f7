package revert

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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
//	begin: detect/check change/snapshot    | nothing written, nothing live changed           | same
//	begin: tx folder, ruleset, snapshot    | folder without record: ignored, pruned later    | same
//	begin: current, record armed/arming    | no timer recorded: next begin finds it dead,    | boot id differs: status/begin mark it
//	                                       | marks it reverted (an armed tx changed nothing) | reverted ("reboot")
//	begin: timer armed, not yet recorded   | as above; the orphan timer later finds the      | timer gone with the boot; as above
//	                                       | record terminal and does nothing                |
//	begin: record armed/armed              | timer fires at the deadline: reverted           | reverted ("reboot")
//	stage: record applied/applying         | timer fires: snapshot restored, reverted        | old config boots; reverted ("reboot")
//	stage: change + guard live             | timer fires, reverted; the kernel guard opens   | old config boots; reverted ("reboot")
//	  (ruleset: Apply; guarded:            | the operator's path at the deadline anyway      |
//	  InstallGuard)                        |                                                 |
//	stage: record applied/applied          | same                                            | same
//	stage failed: record reverting         | restore may be half done: timer fires and       | old config boots; reverted ("reboot")
//	                                       | restores again (idempotent)                     |
//	extend: new timer armed, not recorded  | old timer fires at the old deadline: reverted;  | timers gone with the boot; reverted
//	                                       | the new one finds the record terminal           | ("reboot")
//	extend: record names the new timer     | old timer (older generation) finds a newer one  | same
//	                                       | recorded and does nothing; the new one reverts  |
//	                                       | at the new deadline (guard: old deadline, early)|
//	confirm: record applied/confirming     | timer fires: reverted (confirm never reported)  | old config boots; reverted ("reboot")
//	confirm: guard removed (RemoveGuard)   | timer fires: reverted                           | old config boots; reverted ("reboot")
//	confirm: record confirmed              | timer fires, finds confirmed: does nothing      | old config boots (not yet persisted):
//	                                       | (disarm missed: harmless)                       | record stays confirmed, live is old;
//	                                       |                                                 | workstation sees Persisted empty
//	confirm: disarmed                      | confirmed; persist missing (Persisted empty)    | as above
//	confirm: persisted, record persisted   | done                                            | new config boots
//	revert: record reverting               | timer/watchdog gone: next status or begin sees  | old config boots; reverted ("reboot")
//	                                       | a dead timer and finishes the decided revert    |
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
	rep.Protect = r.Protect
	rep.Created = r.Created
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

// lockTokened takes the host lock and loads the tx of a verb that needs its
// token (confirm, extend): a wrong token is refused before anything else,
// then the reboot rule is applied. On success the caller unlocks.
func (e *engine) lockTokened(ctx context.Context, req *Request, rep *Report, verb string) (*hostLock, *txRecord, error) {
	l, r, err := e.lockTx(ctx, req.TxID)
	if err != nil {
		return nil, nil, err
	}
	fill(rep, r)
	if !checkToken(r, req.Token) {
		l.unlock()
		e.logf(r.ID, "warning", "%s with a wrong token from %s", verb, req.Origin)
		return nil, nil, &Error{Code: CodeBadToken, Message: "the " + verb + " token does not match this transaction"}
	}
	if _, err := e.rebootSettle(r); err != nil {
		l.unlock()
		return nil, nil, err
	}
	fill(rep, r)
	return l, r, nil
}
