package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// Connect opens the first connection and probes the host: how it sees the
// operator (for the kernel guard), its uid (sudo or not), its arch (which
// helper). Nothing is changed on the host.
func (h *Tx) Connect(ctx context.Context) error {
	err := h.phase(PhaseConnect, func() (err error) {
		h.c1, err = h.dial(ctx)
		return err
	})
	if err != nil {
		return h.endBeforeBegin(ctx, err, connectHint(err))
	}
	if err := h.phase(PhaseProbe, func() error { return h.probe(ctx, h.c1) }); err != nil {
		h.Close()
		return h.endBeforeBegin(ctx, err, "")
	}
	h.p1 = h.priv(h.c1)
	return nil
}

// Close closes the first connection. Idempotent.
func (h *Tx) Close() {
	if h.c1 != nil {
		h.c1.Close()
		h.c1, h.p1 = nil, nil
	}
}

// Begin locks the host, has it check the change, snapshot and arm its
// revert timer. Until the host answers, nothing changed; once it answered
// "armed", the protocol must run to its end.
func (h *Tx) Begin(ctx context.Context) error {
	txID := NewTxID(h.s.opts.Now())
	h.res.TxID = txID
	req := &wire.Request{
		Version: wire.ProtocolVersion, TxID: txID, Origin: h.s.opts.Origin,
		Begin: &wire.BeginArgs{ConfirmTimeout: wire.Duration(h.s.opts.ConfirmTimeout), Operator: h.op, Change: h.ch.Wire()},
	}
	if req.Begin.Change.Kind == wire.ChangeRuleset && !h.s.opts.NoPreflight {
		// the host evaluates the ruleset against this connection's path
		// and refuses a certain lockout (--force: ForceLockout)
		req.Begin.Preflight = &wire.PreflightArgs{Paths: h.paths()}
	}
	if cc, ok := h.ch.(*CommandChange); ok && cc.Rules != nil && !h.s.opts.NoPreflight {
		// exec --rules: the ruleset the command is meant to leave, for
		// the begin to validate and preflight before anything is armed
		req.Begin.Preflight = &wire.PreflightArgs{Change: wire.Change{Kind: wire.ChangeRuleset, Ruleset: cc.Rules}, Paths: h.paths()}
	}
	if ctx.Err() != nil {
		return h.endBeforeBegin(ctx, ctx.Err(), "")
	}
	// Once sent, a begin is not cancelled: an interrupted begin could arm
	// the host without lifeline learning the token, leaving a transaction
	// only its timer can end. It is bounded by its own timeout instead.
	var rep *wire.Report
	err := h.phase(PhaseBegin, func() (err error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), beginTimeout)
		defer cancel()
		rep, err = h.call(bctx, h.p1, wire.VerbBegin, req)
		return err
	})
	if err != nil {
		// The begin may have armed the host even though its answer was lost
		// (connection dropped mid-call): that host reverts by itself at its
		// deadline, but we cannot tell; say so instead of claiming refused.
		var ee *remote.ExitError
		// the helper was killed mid-begin: the signal, or a wrapper's
		// (sudo, sh) 128+N for it; the helper's own exits are below 100
		died := errors.As(err, &ee) && (ee.Signal != "" || ee.Status > 128)
		if !isTransport(err) && !died {
			h.end(Refused, err, transportHint(err)) // e.g. no passwordless sudo
			return h.ended()
		}
		if died && h.endLostBegin(ctx, txID, err) {
			return h.ended()
		}
		h.end(Unknown, err, fmt.Sprintf("the begin of tx %s may have armed the host; if it did, the host restores its snapshot by itself within %s", txID, h.s.opts.ConfirmTimeout))
		return h.ended()
	}
	h.absorb(rep)
	h.res.Warnings = append(h.res.Warnings, rep.Warnings...) // e.g. a state folder the host repaired
	if rep.Error != nil || rep.State != wire.StateArmed {
		h.res.Holder = holderOf(rep)
		h.end(Refused, reportErr(rep), refusalHint(rep))
		return h.ended()
	}
	if rep.Begin == nil || rep.Begin.Token == "" {
		h.end(Unknown, fmt.Errorf("tx %s: the host answered armed without a token", txID), fmt.Sprintf("the host restores its snapshot by itself within %s", h.s.opts.ConfirmTimeout))
		return h.ended()
	}
	h.token = rep.Begin.Token
	h.res.GuardChains, h.res.Unguarded = rep.GuardChains, rep.Unguarded
	if len(rep.Unguarded) > 0 {
		h.event(PhaseBegin, "info", "WARNING --force: the kernel guard does not cover "+strings.Join(rep.Unguarded, "; ")+"; only the revert timer protects them")
	}
	h.res.Snapshot = rep.Begin.Snapshot
	h.res.Deadline = rep.Deadline
	h.localDL = h.s.opts.Now().Add(rep.Deadline.Sub(rep.Now))
	h.s.keepTx(h)
	h.event(PhaseBegin, "info", fmt.Sprintf("armed tx %s, deadline %s (%s)", txID, rep.Deadline.Format(time.RFC3339), rep.Timer))
	return nil
}

// endLostBegin ends a begin whose helper died before it answered, over
// the first connection (which still works): the host may have armed txID.
// Not recorded: refused. Armed (nothing applied yet): aborted, so that the
// host is not held until the deadline by a tx nobody can confirm, then
// refused. Reports false when it cannot tell.
func (h *Tx) endLostBegin(ctx context.Context, txID string, cause error) bool {
	ask := func(verb string) (*wire.Report, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		return h.call(actx, h.p1, verb, &wire.Request{Version: wire.ProtocolVersion, TxID: txID, Origin: h.s.opts.Origin})
	}
	rep, err := ask(wire.VerbStatus)
	switch {
	case err != nil:
		return false
	case rep.Error != nil && rep.Error.Code == wire.CodeNoTx:
		h.end(Refused, cause, fmt.Sprintf("the helper died before it recorded tx %s: nothing was changed", txID))
		return true
	case rep.State == wire.StateArmed:
		if rep, err = ask(wire.VerbAbort); err != nil || rep.Error != nil || rep.State != wire.StateReverted {
			return false
		}
		h.end(Refused, cause, fmt.Sprintf("the helper died after it armed tx %s; lifeline aborted that tx: nothing was changed", txID))
		return true
	case rep.State == wire.StateReverted || rep.State == wire.StateRefused:
		h.end(Refused, cause, fmt.Sprintf("the helper died during the begin; tx %s is %s: nothing was changed", txID, rep.State))
		return true
	}
	return false
}

// Change has the host stage the change under the kernel guard, then makes
// the workstation's part of it (a command, a session) over the first
// connection.
func (h *Tx) Change(ctx context.Context) error {
	var rep *wire.Report
	err := h.phase(h.ch.Phase(), func() (err error) {
		rep, err = h.call(ctx, h.p1, wire.VerbStage, &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID})
		return err
	})
	if err != nil {
		// The stage may have locked our own connection out mid-answer.
		h.event(h.ch.Phase(), "info", "no answer from "+h.ch.Phase()+"; checking with a fresh connection")
		h.Watch(ctx, nil, fmt.Errorf("locked out: %s: %w", h.ch.Phase(), err))
		return h.ended()
	}
	h.absorb(rep)
	if rep.Error != nil {
		// the stage failed on the host and the helper restored the snapshot
		switch rep.State {
		case wire.StateReverted:
			hint := "the host restored its snapshot at once"
			if rep.Error.Code == wire.CodeApplyFailed {
				hint = h.ch.FailedHint() + hint
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
		return h.ended()
	}
	if err := h.ch.Make(ctx, h, h.p1); err != nil {
		// the change may have taken long (a shell): the deadline moved
		wctx, cancel := h.protocolContext(ctx)
		defer cancel()
		h.Watch(wctx, h.p1, fmt.Errorf("not confirmed: %w", err))
		return h.ended()
	}
	return nil
}

// Check runs the --check probes from the workstation; a failed one reverts.
func (h *Tx) Check(ctx context.Context) error {
	if len(h.s.opts.Checks) == 0 {
		return nil
	}
	if err := h.phase(PhaseCheck, func() error { return h.checks(ctx) }); err != nil {
		h.Watch(ctx, h.p1, fmt.Errorf("not confirmed: %w", err))
		return h.ended()
	}
	return nil
}

// Confirm proves access over a NEW connection and confirms over it, or, when
// that fails, watches the host revert (see Watch).
func (h *Tx) Confirm(ctx context.Context) error {
	var rep *wire.Report
	err := h.phase(PhaseConfirm, func() (err error) {
		rep, err = h.confirm(ctx)
		return err
	})
	switch {
	case err == nil && rep.State == wire.StateConfirmed:
		if rep.Live != nil && h.s.opts.History != nil {
			h.s.opts.History(h.t, h.res.TxID, h.s.opts.Origin, rep.Live)
		}
		h.res.Warnings = append(h.res.Warnings, rep.Warnings...)
		hint := ""
		if rep.Reboot {
			// a retried confirm: the host rebooted after the first one was
			// recorded, before the change was persisted
			h.res.Reboot = true
			hint = "confirmed, but the host rebooted before the change was persisted: its boot config is live, not this change; apply it again"
		}
		h.end(Confirmed, nil, hint)
		h.s.dropTx(h)
		return nil
	case errors.As(err, new(*lockedOutError)):
		h.Watch(ctx, h.p1, fmt.Errorf("locked out: %w", err))
	case rep != nil && rep.Error != nil && rep.Error.Code == wire.CodeTooLate && rep.Reboot:
		h.res.Reboot = true
		h.end(Reverted, err, "the host rebooted before the confirm and booted its persisted config (reverted by reboot)")
	case rep != nil && rep.Error != nil && rep.Error.Code == wire.CodeTooLate:
		h.end(Reverted, err, "the confirmation came after the deadline; raise --confirm-timeout")
	default:
		h.Watch(ctx, h.p1, fmt.Errorf("not confirmed: %w", err))
	}
	return h.ended()
}

// confirm sends the confirm over a fresh connection. One that fails for a
// network reason (an sshd restarting, a lost SYN) is retried with backoff
// until the deadline minus a margin, so that one refused connection does
// not revert a good change; only then is the operator locked out. A
// confirm is idempotent on the host, so one whose answer was lost is
// simply sent again.
func (h *Tx) confirm(ctx context.Context) (*wire.Report, error) {
	req := &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID, Token: h.token, Origin: h.s.opts.Origin}
	if h.s.opts.History != nil {
		req.Read = &wire.StateArgs{} // the state after the confirm, in the same helper run
	}
	return h.fresh(ctx, wire.VerbConfirm, req)
}

// fresh runs verb over a new connection, retried with backoff while the
// failure is a network one, until the deadline minus a margin. A failure
// that is not an answer from the host is a *lockedOutError.
func (h *Tx) fresh(ctx context.Context, verb string, req *wire.Request) (*wire.Report, error) {
	margin := min(3*time.Second, h.s.opts.ConfirmTimeout/3)
	cctx, cancel := context.WithDeadline(ctx, h.localDL.Add(-margin))
	defer cancel()
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rep, err := h.freshOnce(cctx, verb, req)
		if err == nil {
			return rep, reportErr(rep)
		}
		if !retryable(err) || cctx.Err() != nil {
			if attempt > 1 {
				err = fmt.Errorf("%w (%d attempts)", err, attempt)
			}
			return nil, &lockedOutError{err}
		}
		h.event(h.res.Phase, "info", fmt.Sprintf("fresh connection attempt %d failed (%v); retrying in %s", attempt, err, backoff))
		select {
		case <-time.After(backoff):
		case <-cctx.Done():
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (h *Tx) freshOnce(ctx context.Context, verb string, req *wire.Request) (*wire.Report, error) {
	c2, err := h.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c2.Close()
	rep, err := h.call(ctx, h.priv(c2), verb, req)
	if err != nil {
		return nil, err
	}
	h.absorb(rep)
	return rep, nil
}

// Extend moves the host's deadline to d from now (the host re-arms its
// timer and refreshes the kernel guard), over a fresh connection like the
// confirm: a host that can still be reached anew is one worth more time.
// It does not end the transaction: on an error the old deadline stands.
func (h *Tx) Extend(ctx context.Context, d time.Duration) error {
	req := &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID, Token: h.token, Origin: h.s.opts.Origin,
		Extend: &wire.ExtendArgs{ConfirmTimeout: wire.Duration(d)}}
	var rep *wire.Report
	err := h.phase(PhaseExtend, func() (err error) {
		rep, err = h.fresh(ctx, wire.VerbExtend, req)
		return err
	})
	if err != nil {
		if rep == nil {
			// the answer was lost: the host may hold the new deadline, so
			// whoever watches this tx must wait for the later of the two
			h.localDL = maxTime(h.localDL, h.s.opts.Now().Add(d))
		}
		return fmt.Errorf("%s: extend tx %s: %w", h.t.Name, h.res.TxID, err)
	}
	h.res.Deadline = rep.Deadline
	h.localDL = h.s.opts.Now().Add(rep.Deadline.Sub(rep.Now))
	h.res.Warnings = append(h.res.Warnings, rep.Warnings...)
	h.s.keepTx(h)
	h.event(PhaseExtend, "info", fmt.Sprintf("deadline now %s (%s)", rep.Deadline.Format(time.RFC3339), rep.Timer))
	return nil
}

// Abort has the host restore its snapshot now, over the first connection
// when it still works, else a fresh one, and ends the transaction with
// what the host reports.
func (h *Tx) Abort(ctx context.Context, why error) error {
	h.Watch(ctx, h.p1, why)
	return h.ended()
}

func (h *Tx) dryRun(ctx context.Context, r remote.Runner) {
	var rep *wire.Report
	c := h.ch.Wire()
	err := h.phase(PhaseDiff, func() (err error) {
		rep, err = h.call(ctx, r, wire.VerbDiff, &wire.Request{Version: wire.ProtocolVersion, Diff: &c})
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
	if rep.Diff != nil {
		h.res.Diff = rep.Diff.Diff
	}
	h.end(Planned, nil, "")
}

// checks runs the --check probes from the workstation.
func (h *Tx) checks(ctx context.Context) error {
	for _, c := range h.s.opts.Checks {
		addr, err := ParseCheck(c)
		if err != nil {
			return err
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("check %s: %w", c, err)
		}
		conn.Close()
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Undo ends a transaction whose change was only ever meant to be
// temporary (Options.Undo: trace) with an abort over the first
// connection: the host restores its snapshot now and verifies it. A
// restore the host verified is Restored; anything else goes to Watch,
// which reports what the host did by itself.
func (h *Tx) Undo(ctx context.Context) error {
	var rep *wire.Report
	err := h.phase(PhaseUndo, func() (err error) {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rep, err = h.call(actx, h.p1, wire.VerbAbort, &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID, Origin: h.s.opts.Origin})
		if err != nil {
			return err
		}
		h.absorb(rep)
		h.res.Warnings = append(h.res.Warnings, rep.Warnings...)
		if err := reportErr(rep); err != nil {
			return err
		}
		if rep.State != wire.StateReverted || rep.Verified == nil || !*rep.Verified {
			return fmt.Errorf("the host answered %s, verified %v", rep.State, rep.Verified != nil && *rep.Verified)
		}
		return nil
	})
	if err == nil {
		h.end(Restored, nil, "")
		h.s.dropTx(h)
		return nil
	}
	if rep != nil && rep.State == wire.StateReverted && rep.Verified != nil && !*rep.Verified {
		h.end(RevertFailed, fmt.Errorf("tx %s: restored, but the live ruleset does not equal the snapshot: %w", h.res.TxID, err), recoveryHint(h.t.Name))
		return h.ended()
	}
	h.Watch(ctx, nil, fmt.Errorf("restore the snapshot: %w", err))
	return h.ended()
}

// ParseCheck checks one --check probe, tcp://HOST:PORT, and returns the
// address to dial: HOST a DNS name (letters, digits, '.', '-', '_') or an
// IP address ([v6] in brackets), PORT 1 to 65535, nothing else (no user,
// path or query). Callers refuse a bad one before any host is touched.
func ParseCheck(c string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("--check %s: %s: want tcp://HOST:PORT, e.g. tcp://web01.example.com:443", textsafe.Quote(c), why)
	}
	u, err := url.Parse(c)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "tcp":
		return bad("the scheme must be tcp")
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return bad("only a host and a port")
	}
	host, port := u.Hostname(), u.Port()
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return bad("the port must be 1 to 65535")
	}
	if _, err := netip.ParseAddr(host); err != nil && inventory.CheckHostName(host) != nil {
		return bad("the host must be a DNS name or an IP address")
	}
	return net.JoinHostPort(host, port), nil
}
