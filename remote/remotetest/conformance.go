package remotetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/shquote"
	"github.com/lifeline-dev/lifeline/remote"
)

// Case is one conformance check: a command and what any Runner must make
// of it.
type Case struct {
	Name    string
	Command string
	Stdin   string
	Stdout  string // exact stdout
	Stderr  string // exact stderr
	Status  int    // 0, or the *remote.ExitError status
	Cancel  bool   // never ends by itself: Run must return soon after ctx ends
}

// Cases are the conformance cases, shared with runners that must be told
// the commands in advance (the mock).
var Cases = []Case{
	{Name: "stdout", Command: "echo hello", Stdout: "hello\n"},
	{Name: "stderr", Command: "echo oops >&2", Stderr: "oops\n"},
	{Name: "exit status", Command: "echo bad >&2; exit 3", Stderr: "bad\n", Status: 3},
	{Name: "stdin", Command: "cat", Stdin: "line1\nline2\n", Stdout: "line1\nline2\n"},
	{Name: "quoting", Command: "printf '%s\\n' " + shquote.Quote("a b") + " " + shquote.Quote("c'd $HOME"), Stdout: "a b\nc'd $HOME\n"},
	{Name: "large output", Command: "head -c 200000 /dev/zero | tr '\\0' x", Stdout: strings.Repeat("x", 200000)},
	{Name: "cancel", Command: "sleep 30", Cancel: true},
}

// Conformance runs the suite. newRunner returns the Runner under test for
// t; it is given the cases so that a mock can be told them.
func Conformance(t *testing.T, newRunner func(t *testing.T, cases []Case) remote.Runner) {
	t.Run("cases", func(t *testing.T) {
		r := newRunner(t, Cases)
		defer r.Close()
		if r.Host() == "" {
			t.Error("Host() is empty")
		}
		for _, c := range Cases {
			t.Run(c.Name, func(t *testing.T) { runCase(t, r, c) })
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		c := Cases[0]
		r := newRunner(t, []Case{c})
		defer r.Close()
		var wg sync.WaitGroup
		errs := make([]error, 8)
		outs := make([]bytes.Buffer, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				errs[i] = r.Run(ctx, remote.Cmd{Command: c.Command, Stdout: &outs[i]})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil || outs[i].String() != c.Stdout {
				t.Errorf("run %d: err=%v stdout=%q, want %q", i, err, outs[i].String(), c.Stdout)
			}
		}
	})
	t.Run("nil writers", func(t *testing.T) {
		c := Cases[2]
		r := newRunner(t, []Case{c})
		defer r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := r.Run(ctx, remote.Cmd{Command: c.Command})
		var ee *remote.ExitError
		if !errors.As(err, &ee) || ee.Status != c.Status || ee.Stderr != c.Stderr {
			t.Fatalf("Run(%q) = %v, want exit %d with stderr %q in the ExitError", c.Command, err, c.Status, c.Stderr)
		}
	})
}

func runCase(t *testing.T, r remote.Runner, c Case) {
	timeout := 20 * time.Second
	if c.Cancel {
		timeout = 300 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := remote.Cmd{Command: c.Command, Stdout: &stdout, Stderr: &stderr}
	if c.Stdin != "" {
		cmd.Stdin = strings.NewReader(c.Stdin)
	}
	start := time.Now()
	err := r.Run(ctx, cmd)
	took := time.Since(start)
	if c.Cancel {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run(%q) after ctx ended = %v, want an error wrapping context.DeadlineExceeded", c.Command, err)
		}
		if took > 5*time.Second {
			t.Fatalf("Run(%q) returned %s after ctx ended, want promptly", c.Command, took-timeout)
		}
		return
	}
	if got := stdout.String(); got != c.Stdout {
		t.Errorf("stdout = %.200q, want %.200q", got, c.Stdout)
	}
	if got := stderr.String(); got != c.Stderr {
		t.Errorf("stderr = %q, want %q", got, c.Stderr)
	}
	if c.Status == 0 {
		if err != nil {
			t.Fatalf("Run(%q) = %v, want nil", c.Command, err)
		}
		return
	}
	var ee *remote.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Run(%q) = %v (%T), want *remote.ExitError", c.Command, err, err)
	}
	if ee.Status != c.Status || ee.Host != r.Host() || ee.Command != c.Command || ee.Stderr != c.Stderr {
		t.Errorf("ExitError = %+v, want status %d host %q command %q stderr %q", *ee, c.Status, r.Host(), c.Command, c.Stderr)
	}
}
