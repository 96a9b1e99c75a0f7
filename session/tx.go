package session

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dev/lifeline/internal/helperbin"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// errHelperMissing means the host has no (intact) helper of that hash.
var errHelperMissing = errors.New("helper missing or corrupt on host")

// tamperedError: the helper on the host did not match its hash.
type tamperedError struct{ path string }

func (e *tamperedError) Error() string {
	return "the helper " + e.path + " on the host does not match its sha256"
}
func (e *tamperedError) Is(target error) bool { return target == errHelperMissing }

// Session runs guarded changes. It is safe for concurrent use: Apply may run
// for many hosts at once.
type Session struct {
	dialer Dialer
	opts   Options
}

// New returns a Session.
func New(d Dialer, o Options) *Session {
	if o.ConfirmTimeout <= 0 {
		o.ConfirmTimeout = 60 * time.Second
	}
	if o.RevertGrace <= 0 {
		o.RevertGrace = 45 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Helper == nil {
		o.Helper = func(arch string) ([]byte, string, error) {
			h, err := helperbin.Get(arch)
			if err != nil {
				return nil, "", err
			}
			return h.Data, h.SHA256, nil
		}
	}
	return &Session{dialer: d, opts: o}
}

// NewTxID returns a fresh transaction id: time-sortable and unique.
func NewTxID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// hostTx is one host's transaction in flight.
type hostTx struct {
	s       *Session
	t       Target
	res     *Result
	start   time.Time
	mu      sync.Mutex
	helper  string // path on host
	sha     string
	data    []byte
	op      wire.Operator
	uid     int
	token   string
	localDL time.Time // the host's deadline on the workstation's clock
}

// Apply runs the whole transaction on one host and returns its result; it
// never returns nil. Cancelling ctx stops a host that has not begun; once
// the host holds an armed transaction, Apply finishes the protocol (confirm
// or watch the revert) regardless of ctx.
func (s *Session) Apply(ctx context.Context, t Target) *Result {
	h := &hostTx{s: s, t: t, start: s.opts.Now(), res: &Result{Host: t.Name, Timings: []Timing{}}}
	h.run(ctx)
	h.res.Took = s.opts.Now().Sub(h.start)
	s.save(h.res)
	return h.res
}

func (h *hostTx) event(phase, status, msg string) {
	if h.s.opts.Events != nil {
		h.s.opts.Events(Event{Host: h.t.Name, Phase: phase, Status: status, Msg: msg, At: h.s.opts.Now()})
	}
}

// phase times fn as one named phase.
func (h *hostTx) phase(name string, fn func() error) error {
	h.res.Phase = name
	h.event(name, "start", "")
	t0 := h.s.opts.Now()
	err := fn()
	h.res.Timings = append(h.res.Timings, Timing{Phase: name, Took: h.s.opts.Now().Sub(t0)})
	if err != nil {
		h.event(name, "fail", err.Error())
	} else {
		h.event(name, "done", "")
	}
	return err
}

func (h *hostTx) end(o Outcome, err error, hint string) {
	h.res.Outcome = o
	if err != nil {
		h.res.Err = err
		h.res.Error = err.Error()
	}
	h.res.Hint = hint
	h.event(h.res.Phase, "end", string(o))
}

func (h *hostTx) dial(ctx context.Context) (remote.Runner, error) {
	h.res.Connections++
	return h.s.dialer.Dial(ctx, h.t.SSH)
}

// priv wraps a connection for privileged steps: root as is, else sudo -n.
func (h *hostTx) priv(c remote.Runner) remote.Runner {
	if h.uid == 0 {
		return c
	}
	return remote.Sudo(c)
}

func (h *hostTx) run(ctx context.Context) {
	var c1 remote.Runner
	err := h.phase(PhaseConnect, func() (err error) {
		c1, err = h.dial(ctx)
		return err
	})
	if err != nil {
		h.endBeforeBegin(ctx, err, connectHint(err))
		return
	}
	defer c1.Close()

	if err := h.phase(PhaseProbe, func() error { return h.probe(ctx, c1) }); err != nil {
		h.endBeforeBegin(ctx, err, "")
		return
	}
	p1 := h.priv(c1)

	if h.s.opts.DryRun {
		h.dryRun(ctx, p1)
		return
	}

	// begin: lock, validate, snapshot, arm. Until the host answers, nothing
	// changed; once it answered "armed", the protocol runs to its end.
	txID := NewTxID(h.s.opts.Now())
	h.res.TxID = txID
	req := &wire.Request{
		Version: wire.ProtocolVersion, TxID: txID, Origin: h.s.opts.Origin,
		Format: h.t.Format, Ruleset: h.t.Ruleset,
		ConfirmTimeout: wire.Duration(h.s.opts.ConfirmTimeout),
		Persist:        h.s.opts.Persist, Operator: h.op,
		FormatExplicit: h.t.FormatExplicit, MaxRulesetSize: h.s.opts.MaxRulesetSize,
		Force: h.s.opts.Force,
	}
	if ctx.Err() != nil {
		h.endBeforeBegin(ctx, ctx.Err(), "")
		return
	}
	// Once sent, a begin is not cancelled: an interrupted begin could arm
	// the host without lifeline learning the token, leaving a transaction
	// only its timer can end. It is bounded by its own timeout instead.
	var rep *wire.Report
	err = h.phase(PhaseBegin, func() (err error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), beginTimeout)
		defer cancel()
		rep, err = h.call(bctx, p1, wire.VerbBegin, req)
		return err
	})
	if err != nil {
		// The begin may have armed the host even though its answer was lost
		// (connection dropped mid-call): that host reverts by itself at its
		// deadline, but we cannot tell; say so instead of claiming refused.
		if !isTransport(err) {
			h.end(Refused, err, "")
			return
		}
		h.end(Unknown, err, fmt.Sprintf("the begin of tx %s may have armed the host; if it did, the host restores its snapshot by itself within %s", txID, h.s.opts.ConfirmTimeout))
		return
	}
	h.absorb(rep)
	if rep.Error != nil || rep.State != wire.StateArmed {
		h.res.Holder = holderOf(rep)
		h.end(Refused, reportErr(rep), refusalHint(rep))
		return
	}
	h.token = rep.Token
	h.res.GuardChains, h.res.Unguarded = rep.GuardChains, rep.Unguarded
	if len(rep.Unguarded) > 0 {
		h.event(PhaseBegin, "info", "WARNING --force: the kernel guard does not cover "+strings.Join(rep.Unguarded, "; ")+"; only the revert timer protects them")
	}
	h.res.Snapshot = rep.Snapshot
	h.res.Deadline = rep.Deadline
	h.localDL = h.s.opts.Now().Add(rep.Deadline.Sub(rep.Now))
	h.event(PhaseBegin, "info", fmt.Sprintf("armed tx %s, deadline %s (%s)", txID, rep.Deadline.Format(time.RFC3339), rep.Timer))

	// From here on the host is armed: finish the protocol even if the
	// operator presses Ctrl-C, bounded by the deadline plus the grace.
	pctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), h.localDL.Add(h.s.opts.RevertGrace+30*time.Second))
	defer cancel()

	err = h.phase(PhaseApply, func() (err error) {
		rep, err = h.call(pctx, p1, wire.VerbApply, &wire.Request{Version: wire.ProtocolVersion, TxID: txID})
		return err
	})
	if err == nil {
		h.absorb(rep)
		if rep.Error != nil {
			// apply failed on the host and the helper restored the snapshot.
			switch rep.State {
			case wire.StateReverted:
				hint := "the host restored its snapshot at once"
				if rep.Error.Code == wire.CodeApplyFailed {
					hint = "the ruleset failed to load; " + hint
				}
				h.end(Reverted, reportErr(rep), hint)
			case wire.StateRevertFailed:
				h.end(RevertFailed, reportErr(rep), recoveryHint(h.t.Name))
			default:
				if rep.Error.Code == wire.CodeStateWrite {
					h.end(NeedsRecovery, reportErr(rep), stateHint(h.t.Name))
				} else {
					h.end(Refused, reportErr(rep), "")
				}
			}
			return
		}
	}
	if err != nil {
		// The apply may have locked our own connection out mid-answer.
		h.event(PhaseApply, "info", "no answer from apply; checking with a fresh connection")
		h.lockedOut(pctx, nil, fmt.Errorf("locked out: apply: %w", err))
		return
	}

	// checks from the workstation, then confirm over a NEW connection.
	if len(h.s.opts.Checks) > 0 {
		if err := h.phase(PhaseCheck, func() error { return h.checks(pctx) }); err != nil {
			h.lockedOut(pctx, p1, fmt.Errorf("not confirmed: %w", err))
			return
		}
	}
	err = h.phase(PhaseConfirm, func() (err error) {
		rep, err = h.confirm(pctx)
		return err
	})
	switch {
	case err == nil && rep.State == wire.StateConfirmed:
		h.end(Confirmed, nil, "")
	case errors.As(err, new(*lockedOutError)):
		h.lockedOut(pctx, p1, fmt.Errorf("locked out: %w", err))
	case rep != nil && rep.Error != nil && rep.Error.Code == wire.CodeTooLate && rep.Reboot:
		h.res.Reboot = true
		h.end(Reverted, err, "the host rebooted before the confirm and booted its persisted config (reverted by reboot)")
	case rep != nil && rep.Error != nil && rep.Error.Code == wire.CodeTooLate:
		h.end(Reverted, err, "the confirmation came after the deadline; raise --confirm-timeout")
	default:
		h.lockedOut(pctx, p1, fmt.Errorf("not confirmed: %w", err))
	}
}

// confirm proves access over a NEW connection and confirms over it. A
// fresh connection that fails for a network reason (an sshd restarting, a
// lost SYN) is retried with backoff until the deadline minus a margin, so
// that one refused connection does not revert a good change; only then is
// the operator locked out. A confirm is idempotent on the host, so one whose
// answer was lost is simply sent again.
func (h *hostTx) confirm(ctx context.Context) (*wire.Report, error) {
	margin := min(3*time.Second, h.s.opts.ConfirmTimeout/3)
	cctx, cancel := context.WithDeadline(ctx, h.localDL.Add(-margin))
	defer cancel()
	req := &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID, Token: h.token, Origin: h.s.opts.Origin}
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rep, err := h.confirmOnce(cctx, req)
		if err == nil {
			return rep, reportErr(rep)
		}
		if !retryable(err) || cctx.Err() != nil {
			if attempt > 1 {
				err = fmt.Errorf("%w (%d attempts)", err, attempt)
			}
			return nil, &lockedOutError{err}
		}
		h.event(PhaseConfirm, "info", fmt.Sprintf("fresh connection attempt %d failed (%v); retrying in %s", attempt, err, backoff))
		select {
		case <-time.After(backoff):
		case <-cctx.Done():
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (h *hostTx) confirmOnce(ctx context.Context, req *wire.Request) (*wire.Report, error) {
	c2, err := h.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c2.Close()
	rep, err := h.call(ctx, h.priv(c2), wire.VerbConfirm, req)
	if err != nil {
		return nil, err
	}
	h.absorb(rep)
	return rep, nil
}

// retryable reports whether a fresh connection's failure may be transient
// (network, timeout, a connection dropped mid-call) rather than a refusal
// that repeating cannot change (host key, authentication, no sudo).
func retryable(err error) bool {
	switch {
	case errors.Is(err, remote.ErrHostKeyMismatch), errors.Is(err, remote.ErrHostKeyUnknown),
		errors.Is(err, remote.ErrAuth), errors.Is(err, context.Canceled):
		return false
	}
	return isTransport(err)
}

// beginTimeout bounds the begin call (helper upload included): detect,
// validate, snapshot and arm take a few seconds even on a slow host.
const beginTimeout = 2 * time.Minute

// endBeforeBegin ends a host that failed or was interrupted before its
// begin was sent: nothing changed on it.
func (h *hostTx) endBeforeBegin(ctx context.Context, err error, hint string) {
	if ctx.Err() != nil {
		h.end(Skipped, fmt.Errorf("interrupted before begin, nothing changed: %w", err), "")
		return
	}
	h.end(Refused, err, hint)
}

// lockedOutError marks a confirm that could not reach the host.
type lockedOutError struct{ err error }

func (e *lockedOutError) Error() string { return "fresh connection failed: " + e.err.Error() }
func (e *lockedOutError) Unwrap() error { return e.err }

// lockedOut handles a host the operator could not prove access to: ask the
// first connection (if it still works) to revert now, otherwise wait past the
// deadline, reconnect, and report what the host did by itself.
func (h *hostTx) lockedOut(ctx context.Context, c1 remote.Runner, cause error) {
	h.res.Phase = PhaseRevert
	h.event(PhaseRevert, "info", strings.ToUpper(cause.Error()[:1])+cause.Error()[1:])
	h.res.Err, h.res.Error = cause, cause.Error()
	t0 := h.s.opts.Now()
	defer func() {
		h.res.Timings = append(h.res.Timings, Timing{Phase: PhaseRevert, Took: h.s.opts.Now().Sub(t0)})
	}()

	if c1 != nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := h.call(actx, c1, wire.VerbAbort, &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID})
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
func (h *hostTx) settled(rep *wire.Report) bool {
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
func (h *hostTx) statusFresh(ctx context.Context) (*wire.Report, error) {
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

// probe reads, as the login user, how the host sees us, its uid and arch,
// and picks the helper.
func (h *hostTx) probe(ctx context.Context, c remote.Runner) error {
	out, err := output(ctx, c, `printf '%s\n' "$SSH_CONNECTION"; id -u; uname -m`, nil)
	h.res.RoundTrips++
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3 {
		return fmt.Errorf("probe: unexpected answer %q", out)
	}
	f := strings.Fields(lines[0])
	if len(f) != 4 {
		return fmt.Errorf("probe: SSH_CONNECTION not set by the host's sshd (got %q): cannot place the kernel guard", lines[0])
	}
	port, _ := strconv.Atoi(f[3])
	h.op = wire.Operator{Addr: f[0], SSHPort: port}
	if h.uid, err = strconv.Atoi(strings.TrimSpace(lines[1])); err != nil {
		return fmt.Errorf("probe: id -u: %q", lines[1])
	}
	arch := helperbin.Arch(lines[2])
	data, sha, err := h.s.opts.Helper(arch)
	if err != nil {
		return fmt.Errorf("%s (uname -m: %s): %w", h.t.Name, strings.TrimSpace(lines[2]), err)
	}
	h.data, h.sha, h.helper = data, sha, wire.HelperPath(sha)
	return nil
}

// call runs one helper verb: verify the helper's sha256, run it with req on
// stdin, decode its report. A missing or corrupt helper is uploaded once and
// the call repeated.
func (h *hostTx) call(ctx context.Context, r remote.Runner, verb string, req *wire.Request) (*wire.Report, error) {
	rep, err := h.callOnce(ctx, r, verb, req)
	var te *tamperedError
	if errors.As(err, &te) {
		w := fmt.Sprintf("%s was modified on the host (it may be an attack or a corrupt disk): kept as %s.tampered-* for inspection, and replaced by a fresh upload", te.path, te.path)
		h.res.Warnings = append(h.res.Warnings, w)
		h.event(h.res.Phase, "info", "WARNING: "+w)
	}
	if errors.Is(err, errHelperMissing) {
		if uerr := h.phase(PhaseUpload, func() error { return h.upload(ctx, r) }); uerr != nil {
			return nil, &notSentError{uerr}
		}
		rep, err = h.callOnce(ctx, r, verb, req)
	}
	return rep, err
}

func (h *hostTx) callOnce(ctx context.Context, r remote.Runner, verb string, req *wire.Request) (*wire.Report, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := wire.HelperCommand(h.sha, verb)
	h.res.RoundTrips++
	out, err := output(ctx, r, cmd, in)
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Status == wire.ExitHelperMissing {
		return nil, errHelperMissing
	}
	if errors.As(err, &ee) && ee.Status == wire.ExitHelperTampered {
		return nil, &tamperedError{h.helper}
	}
	if err != nil {
		return nil, fmt.Errorf("helper %s: %w", verb, err)
	}
	var rep wire.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("helper %s: %w: %v (%.200q)", verb, errUnreadable, err, out)
	}
	if rep.Version != wire.ProtocolVersion {
		return nil, fmt.Errorf("helper %s: protocol version %d, want %d", verb, rep.Version, wire.ProtocolVersion)
	}
	return &rep, nil
}

func (h *hostTx) upload(ctx context.Context, r remote.Runner) error {
	h.res.RoundTrips++
	if _, err := output(ctx, r, `umask 077; mkdir -p `+wire.HelperDir+` && chmod 0700 /var/lib/lifeline `+wire.HelperDir, nil); err != nil {
		return fmt.Errorf("create %s: %w", wire.HelperDir, err)
	}
	h.res.RoundTrips += 2 // write + verify
	h.res.Uploaded += int64(len(h.data))
	if err := remote.Upload(ctx, r, h.data, h.helper, 0o700); err != nil {
		return fmt.Errorf("upload helper: %w", err)
	}
	return nil
}

func (h *hostTx) absorb(rep *wire.Report) {
	h.res.HostPhases = append(h.res.HostPhases, rep.Phases...)
	if rep.Detect != nil {
		h.res.Backends = rep.Detect.Active
	}
	if !rep.Deadline.IsZero() {
		h.res.Deadline = rep.Deadline
	}
}

func (h *hostTx) dryRun(ctx context.Context, r remote.Runner) {
	var rep *wire.Report
	err := h.phase(PhaseDiff, func() (err error) {
		rep, err = h.call(ctx, r, wire.VerbDiff, &wire.Request{Version: wire.ProtocolVersion, Format: h.t.Format, Ruleset: h.t.Ruleset, Operator: h.op, MaxRulesetSize: h.s.opts.MaxRulesetSize})
		return err
	})
	if err == nil {
		err = reportErr(rep)
	}
	if err != nil {
		h.end(Refused, err, "")
		return
	}
	h.absorb(rep)
	h.res.Diff = rep.Diff
	h.end(Planned, nil, "")
}

// checks runs the --check probes from the workstation.
func (h *hostTx) checks(ctx context.Context) error {
	for _, c := range h.s.opts.Checks {
		u, err := url.Parse(c)
		if err != nil || u.Scheme != "tcp" || u.Host == "" {
			return fmt.Errorf("check %q: want tcp://HOST:PORT", c)
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return fmt.Errorf("check %s: %w", c, err)
		}
		conn.Close()
	}
	return nil
}

func output(ctx context.Context, r remote.Runner, cmd string, stdin []byte) ([]byte, error) {
	var out bytes.Buffer
	c := remote.Cmd{Command: cmd, Stdout: &out}
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	err := r.Run(ctx, c)
	return out.Bytes(), err
}

func reportErr(rep *wire.Report) error {
	if rep == nil || rep.Error == nil {
		return nil
	}
	return rep.Error
}

func holderOf(rep *wire.Report) *wire.Holder {
	if rep.Error != nil {
		return rep.Error.Holder
	}
	return nil
}

func refusalHint(rep *wire.Report) string {
	if rep.Error == nil {
		return ""
	}
	switch rep.Error.Code {
	case wire.CodeLockHeld:
		if hd := rep.Error.Holder; hd != nil {
			return fmt.Sprintf("tx %s by %s holds the host until %s; wait for it to confirm or revert (if it is stuck past its deadline: lifeline status HOST --abort)", hd.TxID, hd.Origin, hd.Deadline.Format(time.RFC3339))
		}
		return "another lifeline helper is running on the host; try again in a moment"
	case wire.CodeNeedsRecovery:
		return "nothing was changed; see the differences, then restore the old transaction's snapshot with: lifeline status HOST --abort"
	case wire.CodeStateWrite:
		return "free space in /var/lib/lifeline on the host; nothing was changed"
	case wire.CodeInvalidRuleset:
		return "fix the ruleset; nothing was changed"
	case wire.CodeBackend:
		return "install the backend on the host, or pick another --format"
	case wire.CodeUnguarded:
		return "nothing was changed; write those tables as blocks, or pass --force to rely on the revert timer alone"
	}
	return ""
}

func stateHint(host string) string {
	return fmt.Sprintf("the host's state folder is full: free space in /var/lib/lifeline on %s, then check it with: lifeline status %s (its revert timer stays armed until the record can be written)", host, host)
}

func recoveryHint(host string) string {
	return fmt.Sprintf("inspect %s now (lifeline run %s -- nft list ruleset / iptables-save); its snapshot is in the tx folder under /var/lib/lifeline/tx", host, host)
}

func connectHint(err error) string {
	switch {
	case errors.Is(err, remote.ErrHostKeyMismatch):
		return "the host key changed: verify it out of band before editing known_hosts"
	case errors.Is(err, remote.ErrHostKeyUnknown):
		return "unknown host key: add it to known_hosts, or pass --accept-new"
	case errors.Is(err, remote.ErrAuth):
		return "check the user and key (ssh-add -l, IdentityFile)"
	}
	return ""
}

// isTransport reports whether err is a connection problem (the command may
// or may not have run) rather than an answer from the host.
func isTransport(err error) bool {
	var ee *remote.ExitError
	var he *wire.Error
	switch {
	case errors.As(err, &ee), errors.As(err, &he), errors.As(err, new(*notSentError)),
		errors.Is(err, remote.ErrNoSudo), errors.Is(err, errHelperMissing):
		return false
	}
	return !errors.Is(err, errUnreadable)
}

// notSentError: the helper verb was never started (its upload failed).
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// errUnreadable marks a helper answer that arrived but could not be read.
var errUnreadable = errors.New("unreadable helper report")

// HostStatus is a host's latest transaction as its helper reports it.
type HostStatus struct {
	Host       string       `json:"host"`
	TxID       string       `json:"tx_id,omitempty"`
	State      wire.State `json:"state"`
	Deadline   time.Time    `json:"deadline,omitzero"`
	Timer      string       `json:"timer,omitempty"`
	TimerAlive *bool        `json:"timer_alive,omitempty"`
	Verified   *bool        `json:"verified,omitempty"`
	Aborted    bool         `json:"aborted,omitempty"` // Status(abort=true) restored the snapshot
	// GuardChains are the base chains the tx's kernel guard covers;
	// Unguarded those a forced tx left to the revert timer alone.
	GuardChains []string `json:"guard_chains,omitempty"`
	Unguarded   []string `json:"unguarded,omitempty"`
	// Origin is who began the tx (user@workstation run ID).
	Origin string `json:"origin,omitempty"`
	// Reboot: reverted by a reboot; Verified compares with the boot config.
	Reboot bool `json:"reboot,omitempty"`
	// Overdue: still armed or applied well past the deadline (timer hung).
	Overdue bool `json:"overdue,omitempty"`
	// NeedsRecovery: armed or applied with its revert timer dead or
	// overdue: nothing will revert it by itself; status --abort does.
	NeedsRecovery bool `json:"needs_recovery,omitempty"`
	// Warnings from the host (e.g. aborting another operator's tx).
	Warnings []string `json:"warnings,omitempty"`
	// Now is the host's clock when it answered (for countdowns).
	Now   time.Time `json:"now,omitzero"`
	Error string    `json:"error,omitempty"`
	Err   error     `json:"-"`
}

// Bad reports whether the host needs the operator's attention: it could
// not be asked, its tx needs recovery, its revert failed, or the live
// ruleset is not the snapshot of a reverted tx.
func (st *HostStatus) Bad() bool {
	return st.Err != nil || st.NeedsRecovery || st.State == wire.StateRevertFailed ||
		(st.Verified != nil && !*st.Verified)
}

// Status asks a host for its latest transaction (the helper settles one
// left armed across a reboot as reverted). With abort, a transaction still
// armed or applied is reverted now: the recovery for needs-recovery.
func (s *Session) Status(ctx context.Context, t Target, abort bool) *HostStatus {
	h := &hostTx{s: s, t: t, start: s.opts.Now(), res: &Result{Host: t.Name}}
	st := &HostStatus{Host: t.Name}
	fail := func(err error) *HostStatus { st.Err, st.Error = err, err.Error(); return st }
	c, err := h.dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if err := h.probe(ctx, c); err != nil {
		return fail(err)
	}
	p := h.priv(c)
	rep, err := h.call(ctx, p, wire.VerbStatus, &wire.Request{Version: wire.ProtocolVersion})
	if err == nil && abort && (rep.State == wire.StateArmed || rep.State == wire.StateApplied) {
		st.Aborted = true
		rep, err = h.call(ctx, p, wire.VerbAbort, &wire.Request{Version: wire.ProtocolVersion, TxID: rep.TxID, Origin: s.opts.Origin})
	}
	if err != nil {
		return fail(err)
	}
	st.TxID, st.State, st.Deadline, st.Timer = rep.TxID, rep.State, rep.Deadline, rep.Timer
	st.TimerAlive, st.Verified = rep.TimerAlive, rep.Verified
	st.GuardChains, st.Unguarded = rep.GuardChains, rep.Unguarded
	st.Origin, st.Overdue, st.Warnings, st.Now, st.Reboot = rep.Origin, rep.Overdue, rep.Warnings, rep.Now, rep.Reboot
	if rep.State == wire.StateArmed || rep.State == wire.StateApplied {
		st.NeedsRecovery = rep.Overdue || (rep.TimerAlive != nil && !*rep.TimerAlive)
	}
	if rep.Error != nil {
		return fail(rep.Error)
	}
	return st
}
