package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/shquote"
)

// Sudo wraps r so that every command runs as root through
// `sudo -n sh -c '<command>'`. Use it when the login user is not root
// ([Privileged] decides). A sudo that wants a password or denies the user
// yields a *HostError wrapping ErrNoSudo.
func Sudo(r Runner) Runner { return &sudoRunner{r: r} }

type sudoRunner struct{ r Runner }

var _ Runner = (*sudoRunner)(nil)

func (s *sudoRunner) Host() string { return s.r.Host() }
func (s *sudoRunner) Close() error { return s.r.Close() }

// SudoCommand is the command line Sudo sends for command.
func SudoCommand(command string) string { return "sudo -n sh -c " + shquote.Quote(command) }

func (s *sudoRunner) Run(ctx context.Context, cmd Cmd) error {
	inner := cmd
	inner.Command = SudoCommand(cmd.Command)
	err := s.r.Run(ctx, inner)
	var ee *ExitError
	if !errors.As(err, &ee) {
		return err
	}
	if msg, ok := sudoRefusal(ee); ok {
		hint := "allow the login user passwordless sudo (NOPASSWD in sudoers) or log in as root"
		if strings.Contains(msg, "tty") {
			// requiretty: lifeline never asks for a tty (it would mix the
			// helper's report with terminal output)
			hint = "sudo on the host wants a tty (Defaults requiretty): allow the login user sudo without one (Defaults:USER !requiretty) with NOPASSWD in sudoers, or log in as root"
		}
		return &HostError{Host: s.r.Host(), Phase: "exec", Err: &causeError{kind: ErrNoSudo, cause: errors.New(msg)}, Hint: hint}
	}
	ee.Command = cmd.Command
	return ee
}

// sudoRefusal recognises sudo's own refusal (exit 1, stderr from sudo
// about a password or sudoers) as opposed to the command failing.
func sudoRefusal(ee *ExitError) (string, bool) {
	if ee.Status != 1 {
		return "", false
	}
	first, _, _ := strings.Cut(strings.TrimSpace(ee.Stderr), "\n")
	if !strings.HasPrefix(first, "sudo: ") {
		return "", false
	}
	for _, s := range []string{"password is required", "sudoers", "not allowed", "terminal is required", "may not run sudo", "must have a tty"} {
		if strings.Contains(first, s) {
			return first, true
		}
	}
	return "", false
}

// Privileged returns a Runner that runs commands as root on c's host: c
// itself when the login user is root, Sudo(c) otherwise after checking
// that passwordless sudo works (ErrNoSudo when it does not).
func Privileged(ctx context.Context, c *Client) (Runner, error) {
	return privileged(ctx, c)
}

func privileged(ctx context.Context, r Runner) (Runner, error) {
	out, err := Output(ctx, r, "id -u", nil)
	if err != nil {
		return nil, fmt.Errorf("check user on %s: %w", r.Host(), err)
	}
	if string(bytes.TrimSpace(out)) == "0" {
		return r, nil
	}
	s := Sudo(r)
	out, err = Output(ctx, s, "id -u", nil)
	if err != nil {
		return nil, err
	}
	if got := string(bytes.TrimSpace(out)); got != "0" {
		return nil, &HostError{Host: r.Host(), Phase: "exec", Err: &causeError{kind: ErrNoSudo, cause: fmt.Errorf("sudo ran as uid %s, not root", got)}}
	}
	return s, nil
}

// Output runs command on r with stdin and returns its stdout.
func Output(ctx context.Context, r Runner, command string, stdin []byte) ([]byte, error) {
	var out bytes.Buffer
	cmd := Cmd{Command: command, Stdout: &out}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := r.Run(ctx, cmd)
	return out.Bytes(), err
}
