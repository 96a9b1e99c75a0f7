package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// ShellChange is an interactive session on the host, guarded: whatever the
// operator changes while it is open is kept only if they say so at the end
// and a fresh connection still gets in; if they are cut off, the host
// reverts by itself.
//
// The lease: the host's deadline is Window from the last proof. Every
// Heartbeat a NEW connection (new TCP, new handshake, same jump path, never
// the session's own) extends it by another Window; a heartbeat that fails
// extends nothing, and Notify says so, with the time left, until one
// succeeds again.
type ShellChange struct {
	Window    time.Duration
	Heartbeat time.Duration
	Term      remote.Pty // TERM and size; Resize for window changes
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
	// Notify shows lifeline's own lines (heartbeat failures, recoveries)
	// to the operator, inside the session; called from another goroutine.
	Notify func(msg string)
	// Decide is asked at the end, with what changed, whether to keep it
	// (nil: never keep: revert).
	Decide func(changes string) bool
	Force  bool
	Protection
	// OnStart runs just before the session starts (the terminal goes
	// raw), OnEnd just after it ended (the terminal is restored, the
	// session's stdin ends); both may be nil.
	OnStart, OnEnd func()

	// Exit is the shell's exit status (after Make).
	Exit int
	// Declined: the operator chose not to keep the changes.
	Declined bool
}

var _ Change = (*ShellChange)(nil)

// errDeclined: the operator answered no at the end of the shell.
var errDeclined = errors.New("not kept: the operator declined the changes")

func (c *ShellChange) Wire() wire.Change {
	return c.wire(wire.Change{Kind: wire.ChangeGuarded, Force: c.Force})
}
func (c *ShellChange) Phase() string      { return PhaseStage }
func (c *ShellChange) FailedHint() string { return "the kernel guard could not be installed; " }

func (c *ShellChange) notify(format string, a ...any) {
	if c.Notify != nil {
		c.Notify(fmt.Sprintf(format, a...))
	}
}

// Make runs the interactive shell on the first connection (as the login
// user: sudo inside it as needed) while the heartbeats renew the lease,
// then shows what changed and asks whether to keep it.
func (c *ShellChange) Make(ctx context.Context, tx *Tx, _ remote.Runner) error {
	// the shell lasts as long as the operator wants: not bounded by the
	// protocol's deadline, which the heartbeats move
	sctx := context.WithoutCancel(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.heartbeats(sctx, tx, stop) }()
	err := tx.phase(PhaseChange, func() error {
		pty := c.Term
		if c.OnStart != nil {
			c.OnStart()
		}
		err := tx.c1.Run(sctx, remote.Cmd{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Pty: &pty})
		if c.OnEnd != nil {
			c.OnEnd()
		}
		// no heartbeat may touch the transaction once the phase ends
		close(stop)
		wg.Wait()
		return err
	})
	var ee *remote.ExitError
	switch {
	case err == nil:
		c.Exit = 0
	case errors.As(err, &ee):
		c.Exit = ee.Status
	default:
		// the session's own connection broke: the operator cannot say yes
		return fmt.Errorf("the shell's connection broke: %w", err)
	}
	changes := tx.changes(sctx)
	// prove a fresh connection once more before asking (and renew the
	// lease while the operator reads): no point asking to keep a lockout
	pctx, cancel := context.WithTimeout(sctx, max(c.Heartbeat, 10*time.Second))
	err = tx.Extend(pctx, c.Window)
	cancel()
	if err != nil {
		c.notify("a fresh connection to %s fails at the end of the shell (%v): not keeping the changes", tx.t.Name, cause(err))
		return fmt.Errorf("no fresh connection at the end of the shell: %w", err)
	}
	if c.Decide == nil || !c.Decide(changes) {
		c.Declined = true
		return errDeclined
	}
	return nil
}

// heartbeats renews the lease every Heartbeat over a fresh connection
// until stop.
func (c *ShellChange) heartbeats(ctx context.Context, tx *Tx, stop <-chan struct{}) {
	t := time.NewTicker(c.Heartbeat)
	defer t.Stop()
	failing := false
	lastChange := ""
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// one heartbeat gets one interval: the warning must not wait for
		// retries past the next one
		hctx, cancel := context.WithTimeout(ctx, c.Heartbeat)
		err := tx.Extend(hctx, c.Window)
		cancel()
		switch {
		case err != nil:
			left := time.Until(tx.localDL).Round(time.Second)
			c.notify("new SSH connections to %s are failing (%v): reverting in %s unless fixed; lifeline confirm is refused while this lasts", tx.t.Name, cause(err), max(left, 0))
			if !failing {
				tx.leaseFailing = true
				tx.s.keepTx(tx)
			}
			failing = true
		case failing:
			c.notify("new SSH connections to %s work again: the lease is renewed (%s)", tx.t.Name, c.Window)
			tx.leaseFailing = false
			tx.s.keepTx(tx)
			failing = false
		}
		// what changed so far, whenever it changes
		if sum := changeSummary(tx.changes(ctx)); sum != lastChange {
			if lastChange != "" || sum != "nothing changed yet" {
				c.notify("changed on %s since the shell began: %s", tx.t.Name, sum)
			}
			lastChange = sum
		}
	}
}

// changes is what the host says changed since the snapshot, asked over
// the first connection.
func (h *Tx) changes(ctx context.Context) string {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := h.call(rctx, h.p1, wire.VerbStatus, &wire.Request{Version: wire.ProtocolVersion, TxID: h.res.TxID})
	switch {
	case err != nil:
		return "(what changed could not be read: " + err.Error() + ")"
	case rep.Status == nil || rep.Status.Changes == "":
		return noChanges
	}
	return rep.Status.Changes
}

const noChanges = "(no change to the firewall or the protected files)"

// changeSummary is one line about a diff: lines added and removed, and the
// protected files changed.
func changeSummary(d string) string {
	if d == noChanges {
		return "nothing changed yet"
	}
	var add, del int
	var files []string
	for _, l := range strings.Split(d, "\n") {
		switch {
		case strings.HasPrefix(l, "changed: "):
			files = append(files, strings.TrimPrefix(l, "changed: "))
		case strings.HasPrefix(l, "+++ "), strings.HasPrefix(l, "--- "):
		case strings.HasPrefix(l, "+"):
			add++
		case strings.HasPrefix(l, "-"):
			del++
		}
	}
	s := fmt.Sprintf("the firewall: +%d -%d lines", add, del)
	if len(files) > 0 {
		s += "; files: " + strings.Join(files, ", ")
	}
	return s
}

// cause is the innermost error's text, for a one-line warning.
func cause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}
