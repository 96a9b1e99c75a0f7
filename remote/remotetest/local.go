package remotetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
)

// LocalRunner runs commands on this machine with /bin/sh -c, in their own
// process group (killed as a whole when ctx ends).
type LocalRunner struct {
	Name string // Host(); "local" when empty
	// Env, when set, replaces the environment.
	Env []string
}

var _ remote.Runner = (*LocalRunner)(nil)

// NewLocal returns a LocalRunner named host.
func NewLocal(host string) *LocalRunner { return &LocalRunner{Name: host} }

// Host is the runner's name.
func (l *LocalRunner) Host() string {
	if l.Name == "" {
		return "local"
	}
	return l.Name
}

// Close does nothing.
func (l *LocalRunner) Close() error { return nil }

// Run runs cmd.Command with /bin/sh -c.
func (l *LocalRunner) Run(ctx context.Context, cmd remote.Cmd) error {
	c := exec.Command("/bin/sh", "-c", cmd.Command)
	c.Env = l.Env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.WaitDelay = 2 * time.Second
	c.Stdin = cmd.Stdin
	c.Stdout = cmd.Stdout
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	t := new(remote.StderrTail)
	if cmd.Stderr != nil {
		c.Stderr = io.MultiWriter(t, cmd.Stderr)
	} else {
		c.Stderr = t
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("%s: start %q: %w", l.Host(), cmd.Command, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s: %q: %w", l.Host(), cmd.Command, ctx.Err())
	}
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		x := &remote.ExitError{Host: l.Host(), Command: cmd.Command, Status: ee.ExitCode(), Stderr: t.String()}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			x.Status, x.Signal = -1, signalName(ws.Signal())
		}
		return x
	}
	return fmt.Errorf("%s: %q: %w", l.Host(), cmd.Command, err)
}
