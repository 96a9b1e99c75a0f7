// Package remotetest holds test doubles for [remote.Runner]: a mock that
// matches exact command strings and fails the test on anything else, a
// runner that executes locally with /bin/sh, an in-process SSH server, and
// the conformance suite every Runner must pass.
package remotetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
)

// Reply is what the mock answers to one command.
type Reply struct {
	Stdout string
	Stderr string
	Status int           // non-zero: Run returns *remote.ExitError
	Err    error         // returned as is (e.g. a transport *remote.HostError)
	Delay  time.Duration // wait this long (or until ctx ends) before answering
}

// Call is one recorded Run.
type Call struct {
	Command string
	Stdin   []byte
}

type expectation struct {
	command string
	match   func(string) bool
	reply   Reply
	used    int
}

// Mock is a Runner that answers only commands it was told about: any
// other command fails the test. An expectation may be used any number of
// times; one never used fails the test at cleanup (so a removed call is
// noticed too). Safe for concurrent use.
type Mock struct {
	t     testing.TB
	host  string
	mu    sync.Mutex
	exp   []*expectation
	calls []Call
}

var _ remote.Runner = (*Mock)(nil)

// New returns a mock for host, checked at the end of t.
func New(t testing.TB, host string) *Mock {
	m := &Mock{t: t, host: host}
	t.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, e := range m.exp {
			if e.used == 0 {
				t.Errorf("remotetest: %s: expected command never ran: %q", host, e.command)
			}
		}
	})
	return m
}

// Expect answers command (matched exactly) with r.
func (m *Mock) Expect(command string, r Reply) *Mock {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exp = append(m.exp, &expectation{command: command, reply: r})
	return m
}

// ExpectFunc answers every command match accepts with r; desc names it in
// messages. Use it for commands with random parts (upload temp names).
func (m *Mock) ExpectFunc(desc string, match func(command string) bool, r Reply) *Mock {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exp = append(m.exp, &expectation{command: desc, match: match, reply: r})
	return m
}

// Calls returns the commands run so far, in order.
func (m *Mock) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// Commands returns the command strings run so far, in order.
func (m *Mock) Commands() []string {
	var out []string
	for _, c := range m.Calls() {
		out = append(out, c.Command)
	}
	return out
}

// Host is the mock's host name.
func (m *Mock) Host() string { return m.host }

// Close does nothing.
func (m *Mock) Close() error { return nil }

// ErrUnexpected is returned (and the test failed) for an unknown command.
var ErrUnexpected = errors.New("remotetest: unexpected command")

// Run answers cmd from the expectations.
func (m *Mock) Run(ctx context.Context, cmd remote.Cmd) error {
	var stdin []byte
	if cmd.Stdin != nil {
		stdin, _ = io.ReadAll(cmd.Stdin)
	}
	m.mu.Lock()
	m.calls = append(m.calls, Call{Command: cmd.Command, Stdin: stdin})
	var hit *expectation
	for _, e := range m.exp {
		if (e.match == nil && e.command == cmd.Command) || (e.match != nil && e.match(cmd.Command)) {
			hit = e
			break
		}
	}
	if hit != nil {
		hit.used++
	}
	m.mu.Unlock()
	if hit == nil {
		m.t.Errorf("remotetest: %s: unexpected command %q", m.host, cmd.Command)
		return fmt.Errorf("%s: %q: %w", m.host, cmd.Command, ErrUnexpected)
	}
	r := hit.reply
	if r.Delay > 0 {
		select {
		case <-time.After(r.Delay):
		case <-ctx.Done():
			return fmt.Errorf("%s: %q: %w", m.host, cmd.Command, ctx.Err())
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %q: %w", m.host, cmd.Command, ctx.Err())
	}
	if cmd.Stdout != nil {
		_, _ = io.WriteString(cmd.Stdout, r.Stdout)
	}
	if cmd.Stderr != nil {
		_, _ = io.WriteString(cmd.Stderr, r.Stderr)
	}
	if r.Err != nil {
		return r.Err
	}
	if r.Status != 0 {
		var tail remote.StderrTail
		_, _ = io.WriteString(&tail, r.Stderr)
		return &remote.ExitError{Host: m.host, Command: cmd.Command, Status: r.Status, Stderr: tail.String()}
	}
	return nil
}
