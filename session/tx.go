package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/lifeline-dev/lifeline/internal/helperbin"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

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

// Tx is one host's guarded transaction, driven step by step:
//
//	Connect → Begin → Change → Check → Confirm
//
// with Watch (prove the host reverted by itself), Abort (revert now) and
// Extend (a later deadline) on the side. Each step records what it saw in
// the Result and, when it fails, ends the transaction with the outcome it
// can prove and returns a non-nil error: the caller stops there. Until
// Begin answers "armed", nothing changed on the host; from then on the
// caller must run the protocol to its end (Confirm, or Watch/Abort) even
// if the operator cancels: use a context that outlives the cancellation
// (see [Session.Apply]).
//
// A Tx is not safe for concurrent use; run one per host.
type Tx struct {
	s      *Session
	t      Target
	ch     Change
	res    *Result
	start  time.Time
	helper string // path on host
	// helperIntact: the slow check found the helper's file intact after a
	// call died; later crashes are not the file's and are not checked again
	helperIntact bool
	sha          string
	data         []byte
	op           wire.Operator
	uid          int
	token        string
	localDL      time.Time     // the host's deadline on the workstation's clock
	c1           remote.Runner // the first connection (nil before Connect, after Close)
	// leaseFailing: the last heartbeat's fresh connection failed (shell);
	// kept with the token, so that a confirm from elsewhere is refused
	leaseFailing bool
	p1           remote.Runner // c1, privileged (sudo -n unless root)
}

// NewTx prepares the transaction of change ch on host t; nothing is sent
// before Connect.
func (s *Session) NewTx(t Target, ch Change) *Tx {
	return &Tx{s: s, t: t, ch: ch, start: s.opts.Now(), res: &Result{Host: t.Name, Timings: []Timing{}}}
}

// Result is what the transaction saw so far (final once a step failed or
// Confirm returned).
func (h *Tx) Result() *Result { return h.res }

// Apply runs the whole transaction of the target's ruleset on one host and
// returns its result; it never returns nil. Cancelling ctx stops a host
// that has not begun; once the host holds an armed transaction, Apply
// finishes the protocol (confirm or watch the revert) regardless of ctx.
func (s *Session) Apply(ctx context.Context, t Target) *Result {
	if s.opts.Block != nil {
		return s.Block(ctx, t, *s.opts.Block)
	}
	var ch Change = s.rulesetChange(t)
	if s.opts.NewChange != nil {
		ch = s.opts.NewChange(t)
	}
	h := s.NewTx(t, ch)
	h.run(ctx)
	s.settleKept(h)
	h.res.Took = s.opts.Now().Sub(h.start)
	s.save(h.res)
	return h.res
}

// run is the whole protocol, one step after the other.
func (h *Tx) run(ctx context.Context) {
	if h.Connect(ctx) != nil {
		return
	}
	defer h.Close()
	if h.s.opts.DryRun {
		h.dryRun(ctx, h.p1)
		return
	}
	h.transact(ctx)
}

// transact runs the protocol on a connected host: Begin, Change, Check,
// then Confirm (or, NoConfirm, leaves it armed).
func (h *Tx) transact(ctx context.Context) {
	if h.Begin(ctx) != nil {
		return
	}
	// From here on the host is armed: finish the protocol even if the
	// operator presses Ctrl-C, bounded by the deadline plus the grace.
	pctx, cancel := h.protocolContext(ctx)
	defer cancel()
	if h.Change(pctx) != nil {
		return
	}
	// the change may have taken long (a shell whose heartbeats moved the
	// deadline): the rest runs under the deadline as it is now
	pctx, cancel = h.protocolContext(ctx)
	defer cancel()
	if h.Check(pctx) != nil {
		return
	}
	if h.s.opts.Undo {
		_ = h.Undo(pctx)
		return
	}
	if h.s.opts.NoConfirm {
		h.end(Armed, nil, fmt.Sprintf("left armed as asked: keep it with `lifeline confirm %s`, undo it with `lifeline abort %s`; the host reverts by itself at %s (host clock)",
			h.t.Name, h.t.Name, h.res.Deadline.Format(time.RFC3339)))
		return
	}
	_ = h.Confirm(pctx)
}

// protocolContext outlives ctx's cancellation, bounded by the host's
// deadline plus the revert grace: what an armed host's protocol runs under.
func (h *Tx) protocolContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.WithoutCancel(ctx), h.localDL.Add(h.s.opts.RevertGrace+30*time.Second))
}

func (h *Tx) event(phase, status, msg string) {
	if h.s.opts.Events != nil {
		h.s.opts.Events(Event{Host: h.t.Name, Phase: phase, Status: status, Msg: msg, At: h.s.opts.Now()})
	}
}

// phase times fn as one named phase.
func (h *Tx) phase(name string, fn func() error) error {
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

func (h *Tx) end(o Outcome, err error, hint string) {
	h.res.Outcome = o
	if err != nil {
		h.res.Err = err
		h.res.Error = err.Error()
	}
	h.res.Hint = hint
	h.event(h.res.Phase, "end", string(o))
}

// ended is the error a step returns after it ended the transaction.
func (h *Tx) ended() error {
	if h.res.Err != nil {
		return h.res.Err
	}
	return fmt.Errorf("%s: %s", h.t.Name, h.res.Outcome)
}

// beginTimeout bounds the begin call (helper upload included): detect,
// validate, snapshot and arm take a few seconds even on a slow host.
const beginTimeout = 2 * time.Minute

// endBeforeBegin ends a host that failed or was interrupted before its
// begin was sent: nothing changed on it.
func (h *Tx) endBeforeBegin(ctx context.Context, err error, hint string) error {
	if ctx.Err() != nil {
		h.end(Skipped, fmt.Errorf("interrupted before begin, nothing changed: %w", err), "")
		return h.ended()
	}
	h.end(Refused, err, hint)
	return h.ended()
}
