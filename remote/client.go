package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Client is one SSH connection (with its jump chain) to a host. It
// implements [Runner]: each Run is a new session channel. Safe for
// concurrent use. Close closes the whole chain.
type Client struct {
	name  string
	hc    *HostConfig
	ssh   *ssh.Client
	chain []*ssh.Client // hops then the final connection
	log   func(string, ...any)

	closeOnce sync.Once
	closed    chan struct{}
	lost      atomic.Value // error: why the connection died (keepalive)

	sftpMu   sync.Mutex
	sftpDone bool
	sftp     *sftp.Client
}

var _ Runner = (*Client)(nil)

// Host is the target's name (alias or inventory name).
func (c *Client) Host() string { return c.name }

// Config is the resolved configuration the connection was opened with.
func (c *Client) Config() *HostConfig { return c.hc }

// Close closes the connection and every jump hop, last hop first.
// Idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		// The connection first: sftp's Close waits for its reader, which
		// on a silent link ends only when the connection does.
		err = c.closeChain()
		c.sftpMu.Lock()
		if c.sftp != nil {
			c.sftp.Close()
		}
		c.sftpMu.Unlock()
	})
	return err
}

func (c *Client) closeChain() error {
	var first error
	for i := len(c.chain) - 1; i >= 0; i-- {
		if err := c.chain[i].Close(); err != nil && first == nil && !errors.Is(err, io.EOF) {
			first = err
		}
	}
	return first
}

// keepalive sends keepalive@openssh.com every interval (each under a timer
// of one interval) and closes the connection after countMax misses.
func (c *Client) keepalive(interval time.Duration, countMax int) {
	if countMax <= 0 {
		countMax = 3
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	misses := 0
	for {
		select {
		case <-c.closed:
			return
		case <-tick.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		ok := false
		select {
		case err := <-done:
			ok = err == nil
		case <-time.After(interval):
		case <-c.closed:
			return
		}
		if ok {
			misses = 0
			continue
		}
		misses++
		if misses >= countMax {
			c.lost.Store(&causeError{kind: ErrTimeout, cause: fmt.Errorf("%d keepalives unanswered (every %s)", misses, interval)})
			if c.log != nil {
				c.log("%s: connection lost: %d keepalives unanswered", c.name, misses)
			}
			c.Close()
			return
		}
	}
}

// Run runs cmd.Command in a new session. Stdout and stderr stream to the
// writers as they arrive. When ctx ends the remote process is sent KILL,
// the session is closed and Run returns an error wrapping ctx.Err(). A
// non-zero exit is an *ExitError; a broken connection a *HostError.
func (c *Client) Run(ctx context.Context, cmd Cmd) error {
	select {
	case <-c.closed:
		return c.execErr(cmd, errors.New("connection closed"))
	default:
	}
	// Opening the channel and sending the exec request wait for the server
	// and ignore ctx: on a link that went silent they block until TCP gives
	// up (minutes). Watch ctx meanwhile and close the connection if it ends:
	// a connection that cannot open a session in time is of no further use.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	sess, err := c.ssh.NewSession()
	if err != nil {
		stop()
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %q: open session: %w", c.name, shortCmd(cmd.Command), ctx.Err())
		}
		return c.execErr(cmd, err)
	}
	defer sess.Close()
	tail := new(StderrTail)
	sess.Stdout = cmd.Stdout
	if sess.Stdout == nil {
		sess.Stdout = io.Discard
	}
	if cmd.Stderr != nil {
		sess.Stderr = io.MultiWriter(tail, cmd.Stderr)
	} else {
		sess.Stderr = tail
	}
	// Copy stdin ourselves: Session.Wait would wait for a stdin reader
	// that never ends.
	stdin, err := sess.StdinPipe()
	if err != nil {
		return c.execErr(cmd, err)
	}
	if cmd.Pty != nil {
		err = startPty(sess, cmd)
	} else {
		err = sess.Start(cmd.Command)
	}
	if !stop() {
		// ctx ended while the session was being opened: the connection
		// is closed (or closing)
		return fmt.Errorf("%s: %q: start: %w", c.name, shortCmd(cmd.Command), ctx.Err())
	}
	if err != nil {
		return c.execErr(cmd, err)
	}
	go func() {
		if cmd.Stdin != nil {
			_, _ = io.Copy(stdin, cmd.Stdin)
		}
		stdin.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Signal and Close only queue packets; if the session has not
		// ended 2s later the link is dead: close the connection so that
		// nothing of it lingers.
		go func() {
			_ = sess.Signal(ssh.SIGKILL)
			sess.Close()
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			c.Close()
		}
		return fmt.Errorf("%s: %q: %w", c.name, shortCmd(cmd.Command), ctx.Err())
	}
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		x := &ExitError{Host: c.name, Command: cmd.Command, Status: ee.ExitStatus(), Stderr: tail.String()}
		if ee.Signal() != "" {
			x.Status, x.Signal = -1, ee.Signal()
		}
		return x
	}
	return c.execErr(cmd, err)
}

func (c *Client) execErr(cmd Cmd, err error) error {
	if lost, ok := c.lost.Load().(error); ok {
		err = lost
	} else {
		err = &causeError{kind: ErrUnreachable, cause: err}
	}
	return &HostError{Host: c.name, Phase: "exec", Err: fmt.Errorf("%q: %w", shortCmd(cmd.Command), err)}
}

// SSHConnection reports how the host sees this connection, from
// $SSH_CONNECTION: the client address (the operator's source address as
// the host's firewall sees it) and the server port.
func (c *Client) SSHConnection(ctx context.Context) (addr string, port int, err error) {
	out, err := Output(ctx, c, `echo "$SSH_CONNECTION"`, nil)
	if err != nil {
		return "", 0, err
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		return "", 0, fmt.Errorf("%s: unexpected $SSH_CONNECTION %q", c.name, strings.TrimSpace(string(out)))
	}
	port, err = strconv.Atoi(f[3])
	if err != nil {
		return "", 0, fmt.Errorf("%s: unexpected $SSH_CONNECTION %q", c.name, strings.TrimSpace(string(out)))
	}
	return f[0], port, nil
}

// HasSFTP reports whether the host offers the sftp subsystem. The first
// call opens it (bounded by the connect timeout); the answer is cached.
func (c *Client) HasSFTP() bool {
	s, _ := c.sftpClient()
	return s != nil
}

func (c *Client) sftpClient() (*sftp.Client, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftpDone {
		if c.sftp == nil {
			return nil, errors.New("no sftp subsystem")
		}
		return c.sftp, nil
	}
	type res struct {
		s   *sftp.Client
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := sftp.NewClient(c.ssh)
		ch <- res{s, err}
	}()
	timeout := c.hc.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	select {
	case r := <-ch:
		c.sftpDone = true
		c.sftp = r.s
		if r.err != nil && c.log != nil {
			c.log("%s: no sftp: %v", c.name, r.err)
		}
		return r.s, r.err
	case <-time.After(timeout):
		c.sftpDone = true
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, errors.New("sftp did not start in time")
	}
}

// startPty asks for a pseudo-terminal and starts cmd on it (the login shell
// when cmd.Command is empty), and forwards window changes while it runs.
func startPty(sess *ssh.Session, cmd Cmd) error {
	p := cmd.Pty
	term := p.Term
	if term == "" {
		term = "xterm"
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(term, max(p.Height, 1), max(p.Width, 1), modes); err != nil {
		return fmt.Errorf("request a terminal: %w", err)
	}
	var err error
	if cmd.Command == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(cmd.Command)
	}
	if err == nil && p.Resize != nil {
		go func() {
			for ws := range p.Resize {
				if sess.WindowChange(ws.Height, ws.Width) != nil {
					return
				}
			}
		}()
	}
	return err
}

// FirstHopSSHConnection is $SSH_CONNECTION as the first jump host of the
// chain sees the workstation ("CLIENT CPORT SERVER SPORT"), ok false when
// the connection is direct (no jump host). It opens one exec session on
// that hop, bounded by ctx.
func (c *Client) FirstHopSSHConnection(ctx context.Context) (string, bool, error) {
	if len(c.chain) < 2 {
		return "", false, nil
	}
	sess, err := c.chain[0].NewSession()
	if err != nil {
		return "", true, fmt.Errorf("%s: open a session on the first jump host: %w", c.name, err)
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	out, err := sess.Output(`printf '%s\n' "$SSH_CONNECTION"`)
	if err != nil {
		return "", true, fmt.Errorf("%s: read SSH_CONNECTION on the first jump host: %w", c.name, err)
	}
	return strings.TrimSpace(string(out)), true, nil
}
