package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// CommandResult is what a guarded command did on a host.
type CommandResult struct {
	Command string `json:"command"`
	// Exit is the command's exit status (-1: it did not finish: the
	// connection dropped or it was killed).
	Exit   int    `json:"exit"`
	Stdout string `json:"stdout,omitempty"` // the last MaxOutput bytes
	Stderr string `json:"stderr,omitempty"`
	// Kept: it exited non-zero and KeepOnError kept the change anyway.
	Kept bool `json:"kept_on_error,omitempty"`
	// Changes: what the command changed, as the host sees it: the diff of
	// the firewall from the snapshot, and the protected files changed.
	Changes string `json:"changes,omitempty"`
}

// MaxOutput bounds what a Result keeps of a command's stdout and stderr
// each (the tail: errors come last).
const MaxOutput = 64 << 10

// CommandChange runs one shell command on the host (privileged: root, or
// through sudo -n) while the host is guarded: exec. The host snapshots
// every firewall family before, and restores them if the command fails or
// a fresh connection cannot get in afterwards.
type CommandChange struct {
	Command string // one POSIX shell command line, run by sh -c
	// KeepOnError confirms the change even when the command exits
	// non-zero (when a fresh connection still gets in).
	KeepOnError bool
	Force       bool
	// Rules is the ruleset the command is meant to leave (exec --rules):
	// the host's begin validates it and evaluates it against this
	// connection's SSH path, and refuses a certain lockout before anything
	// is armed or runs (Force overrides). nil: no preflight (the command's
	// effect is not known in advance; the guard and the fresh confirm
	// protect it).
	Rules *wire.RulesetChange
	Protection
}

var _ Change = (*CommandChange)(nil)

func (c *CommandChange) Wire() wire.Change {
	return c.wire(wire.Change{Kind: wire.ChangeGuarded, Force: c.Force, ForceLockout: c.Force && c.Rules != nil})
}
func (c *CommandChange) Phase() string      { return PhaseStage }
func (c *CommandChange) FailedHint() string { return "the kernel guard could not be installed; " }

// Make runs the command, streams its output as events (one per line) and
// keeps its tail and exit status in the result. A non-zero exit is an
// error (the engine reverts) unless KeepOnError.
func (c *CommandChange) Make(ctx context.Context, tx *Tx, r remote.Runner) error {
	res := &CommandResult{Command: c.Command, Exit: -1}
	tx.res.Command = res
	return tx.phase(PhaseChange, func() error {
		out := &lineEvents{tx: tx, stream: "stdout"}
		errw := &lineEvents{tx: tx, stream: "stderr"}
		err := r.Run(ctx, remote.Cmd{Command: c.Command, Stdout: out, Stderr: errw})
		out.flush()
		errw.flush()
		res.Stdout, res.Stderr = out.tail.String(), errw.tail.String()
		if d := tx.changes(ctx); d != noChanges {
			res.Changes = d
		}
		var ee *remote.ExitError
		switch {
		case err == nil:
			res.Exit = 0
			return nil
		case errors.As(err, &ee) && ee.Status >= 0:
			res.Exit = ee.Status
			if c.KeepOnError {
				res.Kept = true
				tx.event(PhaseChange, "info", fmt.Sprintf("the command exited %d; --keep-on-error: keeping the change if a fresh connection gets in", ee.Status))
				return nil
			}
			return fmt.Errorf("the command exited %d", ee.Status)
		}
		return fmt.Errorf("the command did not finish: %w", err)
	})
}

// lineEvents turns a command's output into one event per line and keeps
// its last MaxOutput bytes.
type lineEvents struct {
	tx     *Tx
	stream string
	mu     sync.Mutex
	part   []byte
	tail   tailBuffer
}

func (w *lineEvents) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail.Write(p)
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.tx.event(PhaseChange, "output", w.stream+": "+strings.TrimRight(string(w.part[:i]), "\r"))
		w.part = w.part[i+1:]
	}
	if len(w.part) > 4096 { // a very long line: show it in pieces
		w.tx.event(PhaseChange, "output", w.stream+": "+string(w.part))
		w.part = w.part[:0]
	}
	return len(p), nil
}

func (w *lineEvents) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.part) > 0 {
		w.tx.event(PhaseChange, "output", w.stream+": "+string(w.part))
		w.part = nil
	}
}

// tailBuffer keeps the last MaxOutput bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) {
	t.b = append(t.b, p...)
	if n := len(t.b); n > MaxOutput {
		t.b = append(t.b[:0], t.b[n-MaxOutput:]...)
	}
}

func (t *tailBuffer) String() string { return string(t.b) }

var _ io.Writer = (*lineEvents)(nil)
