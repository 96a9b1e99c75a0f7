package remote_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/remote/remotetest"
)

// tcpProxy is a ProxyCommand that connects to %h:%p with bash's /dev/tcp
// and appends its pid to log: one line per invocation.
func tcpProxy(log string) string {
	return `ProxyCommand bash -c 'echo $$ >> ` + log + `; exec 3<>/dev/tcp/%h/%p; cat <&3 & exec cat >&3'`
}

func pids(t *testing.T, log string) []int {
	t.Helper()
	b, _ := os.ReadFile(log)
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("bad pid line %q in %s", f, log)
		}
		out = append(out, n)
	}
	return out
}

func TestProxyCommand(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	log := filepath.Join(t.TempDir(), "proxy.log")
	d := dialer(t, remote.Options{}, srv.SSHConfig("viaproxy", tcpProxy(log)))
	c, err := dial(t, d, "viaproxy")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background(), remote.Cmd{Command: "true"}); err != nil {
		t.Fatalf("Run through the ProxyCommand: %v", err)
	}
	p := pids(t, log)
	if len(p) != 1 {
		t.Fatalf("ProxyCommand ran %d times, want 1", len(p))
	}
	if err := syscall.Kill(p[0], 0); err != nil {
		t.Fatalf("ProxyCommand (pid %d) not running while connected: %v", p[0], err)
	}
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for syscall.Kill(p[0], 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("ProxyCommand (pid %d) still running after Close", p[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A second Dial runs the command again: a fresh connection.
	if _, err := dial(t, d, "viaproxy"); err != nil {
		t.Fatal(err)
	}
	if n := len(pids(t, log)); n != 2 {
		t.Fatalf("ProxyCommand ran %d times after two dials, want 2", n)
	}
}

func TestProxyCommandJumpHost(t *testing.T) {
	j1 := remotetest.StartServer(t, remotetest.ServerOptions{})
	dst := remotetest.StartServer(t, remotetest.ServerOptions{})
	log := filepath.Join(t.TempDir(), "proxy.log")
	d := dialer(t, remote.Options{}, j1.SSHConfig("j1", tcpProxy(log)), dst.SSHConfig("inner", "ProxyJump j1"))
	c, err := dial(t, d, "inner")
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := c.SSHConnection(context.Background())
	if err != nil || port != dst.Port {
		t.Fatalf("SSHConnection port = %d, %v; want %d", port, err, dst.Port)
	}
	if n := len(pids(t, log)); n != 1 {
		t.Fatalf("the jump host's ProxyCommand ran %d times, want 1", n)
	}
}

func TestProxyCommandFailures(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	tests := []struct {
		name, block, want string
		is                error
	}{
		{"exits", "ProxyCommand echo no route to the bastion >&2; exit 3", "no route to the bastion", remote.ErrUnreachable},
		{"fdpass", "ProxyCommand nc %h %p\n  ProxyUseFdpass yes", "ProxyUseFdpass", nil},
		{"token", "ProxyCommand nc %h %p %k", "unknown token %k", remote.ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dialer(t, remote.Options{}, srv.SSHConfig("h", tt.block))
			_, err := dial(t, d, "h")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial = %v, want an error saying %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Dial = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
}
