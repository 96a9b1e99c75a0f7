package remote

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProxyCommand: ssh runs the command with `$SHELL -c "exec CMD"` (tokens
// %h %n %p %r expanded) and speaks SSH over its stdin and stdout; so does
// lifeline. The connection is a net.Conn over two pipes; closing it
// closes the pipes and kills the process by its pid. The command's stderr
// goes to the diagnostics (-v) and into the error when the connection
// fails.

// proxyConn is a net.Conn over a ProxyCommand's stdin and stdout.
type proxyConn struct {
	r, w   *os.File // our ends: read its stdout, write its stdin
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{} // closed when the process has exited
	once   sync.Once
	name   string
}

var _ net.Conn = (*proxyConn)(nil)

// expandProxyCommand is expand_proxy_command: "exec " + the command, with
// %h %n %p %r and %% expanded.
func expandProxyCommand(hc *HostConfig) (string, error) {
	tv := tokenValues{host: hc.HostName, alias: hc.Alias, port: strconv.Itoa(hc.Port), ruser: hc.User}
	cmd, err := expandPercent("exec "+hc.ProxyCommand, tv, proxyTokens)
	if err != nil {
		return "", fmt.Errorf("ProxyCommand: %w", err)
	}
	return cmd, nil
}

// startProxyCommand starts hc's ProxyCommand; log receives its stderr.
func startProxyCommand(hc *HostConfig, log func(string, ...any)) (*proxyConn, error) {
	line, err := expandProxyCommand(hc)
	if err != nil {
		return nil, err
	}
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	c := &proxyConn{r: outR, w: inW, stderr: &tailBuffer{max: 4096, log: log, prefix: hc.Alias + ": ProxyCommand: "}, done: make(chan struct{}), name: hc.Alias}
	c.cmd = exec.Command(shell, "-c", line)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = inR, outW, c.stderr
	c.cmd.WaitDelay = 2 * time.Second
	if err := c.cmd.Start(); err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
		return nil, fmt.Errorf("ProxyCommand %q: %w", hc.ProxyCommand, err)
	}
	inR.Close()
	outW.Close()
	if log != nil {
		log("%s: ProxyCommand started (pid %d): %s", hc.Alias, c.cmd.Process.Pid, line)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *proxyConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *proxyConn) Write(b []byte) (int, error) { return c.w.Write(b) }

// Close closes the pipes, gives the process a moment to end by itself
// (most proxies exit at EOF; a failing one finishes its message), then
// kills it by its pid. Safe to call more than once.
func (c *proxyConn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.r.Close()
		select {
		case <-c.done:
			return
		case <-time.After(300 * time.Millisecond):
		}
		_ = c.cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
	})
	return nil
}

// exitText describes how the command ended and its last stderr, for an
// error message ("" while it still runs).
func (c *proxyConn) exitText() string {
	select {
	case <-c.done:
	case <-time.After(200 * time.Millisecond):
		if s := c.stderr.String(); s != "" {
			return "ProxyCommand stderr: " + s
		}
		return ""
	}
	s := "ProxyCommand exited: " + c.cmd.ProcessState.String()
	if e := c.stderr.String(); e != "" {
		s += ": " + e
	}
	return s
}

func (c *proxyConn) LocalAddr() net.Addr                { return proxyAddr("proxycommand") }
func (c *proxyConn) RemoteAddr() net.Addr               { return proxyAddr(c.name) }
func (c *proxyConn) SetDeadline(t time.Time) error      { c.r.SetDeadline(t); return c.w.SetDeadline(t) }
func (c *proxyConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *proxyConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

type proxyAddr string

func (a proxyAddr) Network() string { return "proxycommand" }
func (a proxyAddr) String() string  { return string(a) }

// tailBuffer keeps the last max bytes written and logs each line.
type tailBuffer struct {
	mu     sync.Mutex
	buf    []byte
	max    int
	log    func(string, ...any)
	prefix string
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	if t.log != nil {
		for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			if l != "" {
				t.log("%s%s", t.prefix, l)
			}
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// dialProxy starts the ProxyCommand under ctx: a cancelled ctx closes it.
func dialProxy(ctx context.Context, hc *HostConfig, log func(string, ...any)) (*proxyConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return startProxyCommand(hc, log)
}
