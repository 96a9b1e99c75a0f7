package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dev/lifeline/internal/trace"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// TraceResult is what a trace saw on one host.
type TraceResult struct {
	Match    string           `json:"match"`
	Duration time.Duration    `json:"duration_ns"`
	Start    *wire.TraceStart `json:"start,omitempty"` // what the host installed (nil: it never started)
	trace.Summary
}

// TraceChange traces packets on a host while it is guarded: stage installs
// the kernel guard, Make runs the helper's trace verb, which adds the
// tracing rules, streams what the packets met, and removes the rules.
// Run it with Options.Undo: the host then restores its snapshot (taken
// before the trace rules went in) and verifies it, so the ruleset after a
// trace is exactly the one before; if the workstation dies, the revert
// timer does the same at the deadline.
type TraceChange struct {
	Match    wire.TraceMatch
	Duration time.Duration
	// OnStart and OnEvent receive the host's stream as it arrives (nil:
	// not wanted). Called from the host's goroutine.
	OnStart func(host string, s wire.TraceStart)
	OnEvent func(ev wire.TraceEvent)
}

var _ Change = (*TraceChange)(nil)

func (c *TraceChange) Wire() wire.Change  { return wire.Change{Kind: wire.ChangeGuarded} }
func (c *TraceChange) Phase() string      { return PhaseStage }
func (c *TraceChange) FailedHint() string { return "the kernel guard could not be installed; " }

// traceSlack bounds how long past its duration the trace verb may take
// (install, removal, a slow link) before the workstation gives up on it.
const traceSlack = 30 * time.Second

// Make runs the trace verb on r and waits for its report. The verb's stdin
// stays open while it runs: closing it (the workstation gone) stops the
// trace on the host.
func (c *TraceChange) Make(ctx context.Context, tx *Tx, r remote.Runner) error {
	res := &TraceResult{Match: trace.String(c.Match), Duration: c.Duration}
	tx.res.Trace = res
	return tx.phase(PhaseTrace, func() error {
		req, err := json.Marshal(&wire.Request{Version: wire.ProtocolVersion, TxID: tx.res.TxID,
			Trace: &wire.TraceArgs{Match: c.Match, Duration: wire.Duration(c.Duration)}})
		if err != nil {
			return err
		}
		stdin := &holdOpen{first: append(req, '\n'), closed: make(chan struct{})}
		out := &traceStream{c: c, tx: tx, res: res, done: stdin.close}
		var errb tailBuffer
		rctx, cancel := context.WithTimeout(ctx, c.Duration+traceSlack)
		defer cancel()
		tx.res.RoundTrips++
		err = r.Run(rctx, remote.Cmd{Command: wire.HelperCommand(tx.sha, wire.VerbTrace), Stdin: stdin, Stdout: out, Stderr: writerFunc(func(p []byte) (int, error) { errb.Write(p); return len(p), nil })})
		stdin.close()
		out.flush()
		res.Summary = out.sum.Summary()
		switch {
		case out.report != nil && out.report.Version != wire.ProtocolVersion:
			return fmt.Errorf("trace: helper protocol version %d, want %d", out.report.Version, wire.ProtocolVersion)
		case out.report != nil:
			tx.absorb(out.report)
			tx.res.Warnings = append(tx.res.Warnings, out.report.Warnings...)
			if err := reportErr(out.report); err != nil {
				return fmt.Errorf("trace: %w", err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("trace: %w", err)
		}
		return fmt.Errorf("trace: the helper ended without a report (%s)", strings.TrimSpace(errb.String()))
	})
}

// holdOpen is the trace verb's stdin: the request line, then nothing
// until close.
type holdOpen struct {
	first  []byte
	once   sync.Once
	closed chan struct{}
}

func (h *holdOpen) Read(p []byte) (int, error) {
	if len(h.first) > 0 {
		n := copy(p, h.first)
		h.first = h.first[n:]
		return n, nil
	}
	<-h.closed
	return 0, io.EOF
}

func (h *holdOpen) close() { h.once.Do(func() { close(h.closed) }) }

// traceStream reads the verb's TraceLines as they arrive.
type traceStream struct {
	c      *TraceChange
	tx     *Tx
	res    *TraceResult
	done   func() // the report arrived: close the verb's stdin
	mu     sync.Mutex
	part   []byte
	sum    trace.Summarizer
	report *wire.Report
	bad    int
}

func (s *traceStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part = append(s.part, p...)
	for {
		i := bytes.IndexByte(s.part, '\n')
		if i < 0 {
			break
		}
		s.line(s.part[:i])
		s.part = s.part[i+1:]
	}
	if len(s.part) > 4<<20 {
		return 0, errors.New("trace: a line over 4 MiB from the helper")
	}
	return len(p), nil
}

func (s *traceStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(bytes.TrimSpace(s.part)) > 0 {
		s.line(s.part)
	}
	s.part = nil
}

func (s *traceStream) line(b []byte) {
	var l wire.TraceLine
	if err := json.Unmarshal(b, &l); err != nil {
		s.bad++
		if s.bad == 1 {
			s.tx.event(PhaseTrace, "info", fmt.Sprintf("unreadable line from the helper: %.200q", b))
		}
		return
	}
	switch {
	case l.Start != nil:
		s.res.Start = l.Start
		if s.c.OnStart != nil {
			s.c.OnStart(s.tx.t.Name, *l.Start)
		}
	case l.Event != nil:
		l.Event.Host = s.tx.t.Name
		s.sum.Add(*l.Event)
		if s.c.OnEvent != nil {
			s.c.OnEvent(*l.Event)
		}
	case l.Report != nil:
		s.report = l.Report
		s.done()
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
