// Package remote is lifeline's transport to hosts.
//
// # The one primitive
//
// Everything lifeline does on a host goes through [Runner.Run]: start one
// command with a context, optional stdin, and stdout/stderr writers. Upload,
// sudo and output capture are layered on top of it, so an SSH connection, a
// local exec (tests, the helper itself) and the command-matching mock in
// remotetest all behave alike.
//
// # Connecting
//
// A [Dialer] resolves a [Target] through ssh_config ([Dialer.Resolve]: the
// in-process parser when it is faithful, `ssh -G` otherwise, recorded in
// [HostConfig.Resolver]) and [Dialer.Dial] opens a fresh connection every
// time: new TCP connection, handshake and authentication through the same
// ProxyJump chain. Each hop is bounded by its ConnectTimeout (TCP, handshake
// and auth together) and by ctx. Host keys are checked strictly against
// known_hosts (hashed entries, @cert-authority, @revoked, [host]:port), with
// HostKeyAlgorithms taken from what known_hosts holds for the host;
// [Options.AcceptNew] records unknown keys, a changed key is always refused.
// Authentication uses ssh-agent keys and certificates, then identity files.
//
// # Privilege and files
//
// [Sudo] wraps a Runner in `sudo -n sh -c`; [Privileged] picks the client or
// Sudo(client) after checking `id -u`. [Upload] writes a file atomically
// (temp name, mode, rename) and verifies its sha256. [Output] captures
// stdout; [Quote] quotes for a POSIX shell.
//
// # Errors
//
// A command that ran and exited non-zero returns an [*ExitError] carrying the
// exit status and the tail of stderr; callers read those fields instead of
// matching strings. Transport failures are a [*HostError] naming the host,
// the phase and the address, wrapping one of ErrHostKeyMismatch,
// ErrHostKeyUnknown, ErrAuth (never worth retrying), ErrTimeout,
// ErrUnreachable (worth retrying, see [Retryable]) or ErrNoSudo. A
// cancelled ctx yields an error wrapping ctx.Err().
package remote

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Cmd is one command to run on a host. Command is a POSIX shell command
// line, interpreted by the host's login shell (SSH) or /bin/sh (local).
type Cmd struct {
	Command string
	Stdin   io.Reader // nil: empty stdin
	Stdout  io.Writer // nil: discarded
	Stderr  io.Writer // nil: kept only in the ExitError's tail
	// Pty, when set, runs the command on a pseudo-terminal (an empty
	// Command is the login shell): interactive sessions. Runners without
	// terminals (the mock, the local runner) refuse it.
	Pty *Pty
}

// Pty is the pseudo-terminal of an interactive command.
type Pty struct {
	Term          string            // $TERM, e.g. xterm-256color
	Width, Height int               // columns, rows
	Resize        <-chan WindowSize // window changes, until the command ends
}

// WindowSize is a terminal's size in columns and rows.
type WindowSize struct{ Width, Height int }

// Runner starts commands on one host.
//
// Run blocks until the command exits or ctx is done; when ctx is done the
// command is signalled and Run returns ctx.Err() wrapped. Run is safe for
// concurrent use (each call is its own SSH channel). Close releases the
// connection; Run after Close fails.
type Runner interface {
	Run(ctx context.Context, cmd Cmd) error
	// Host is the name the runner was opened for (inventory name or alias),
	// used in every error message.
	Host() string
	Close() error
}

// ExitError is a command that ran and exited non-zero (or was killed by a
// signal: Status is then -1 and Signal is set).
type ExitError struct {
	Host    string
	Command string
	Status  int
	Signal  string
	Stderr  string // last few KiB of stderr (see [StderrTail])
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 && len(msg) > 400 {
		msg = msg[i+1:]
	}
	how := fmt.Sprintf("exit status %d", e.Status)
	if e.Signal != "" {
		how = "killed by signal " + e.Signal
	}
	if msg == "" {
		return fmt.Sprintf("%s: %q: %s", e.Host, shortCmd(e.Command), how)
	}
	return fmt.Sprintf("%s: %q: %s: %s", e.Host, shortCmd(e.Command), how, msg)
}

func shortCmd(c string) string {
	if len(c) > 80 {
		return c[:77] + "..."
	}
	return c
}

// StderrTail is the writer a [Runner] copies a command's stderr to for
// [ExitError.Stderr]: it keeps the last 4 KiB written. Every Runner uses
// it, so that they all report the same tail. The zero value is ready to
// use; it is safe for concurrent use.
type StderrTail struct {
	mu  sync.Mutex
	buf []byte
}

// stderrTailSize is how many bytes of stderr a StderrTail keeps.
const stderrTailSize = 4096

func (t *StderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > stderrTailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-stderrTailSize:]...)
	}
	return len(p), nil
}

// String returns the bytes kept.
func (t *StderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
