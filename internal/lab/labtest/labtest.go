//go:build linux

// Package labtest starts a lab for a test and takes it down afterwards.
//
// The test binary is re-executed as each host's init unless Options.InitExe
// names a built lifeline binary, so a package using Start with the default
// must dispatch from TestMain:
//
//	func TestMain(m *testing.M) {
//		labtest.MaybeRunInit()
//		os.Exit(m.Run())
//	}
package labtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
)

// Options choose the lab's shape; zero values mean lab's defaults
// (3 hosts, mixed backends, this test binary as init).
type Options struct {
	Hosts   int
	Backend string
	InitExe string
	Systemd int // systemd hosts s01..: build or reuse the cached root first (EnsureSystemdRootfs)
}

// MaybeRunInit runs the lab init and never returns when this process was
// started as a lab host's init; otherwise it returns at once. Call it first
// in TestMain.
func MaybeRunInit() {
	if os.Getenv(lab.InitEnv) != "" {
		lab.RunInit()
	}
}

// Start brings a lab up in a fresh short temporary folder and registers its
// Down in t.Cleanup. When the test failed, the cleanup first logs the tail of
// every host's init and sshd logs. Start fails the test (never skips) when
// the machine cannot run a lab.
func Start(t testing.TB, o Options) *lab.Lab {
	t.Helper()
	if err := lab.CheckPrereqs(); err != nil {
		t.Fatalf("labtest: %v (run the tests as root; apt-get install openssh-server iptables nftables iproute2 sudo)", err)
	}
	dir, err := os.MkdirTemp("", "lab")
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logHostLogs(t, dir)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := lab.Down(ctx, dir); err != nil {
			t.Errorf("labtest: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	if o.Systemd > 0 {
		if err := lab.CheckSystemdPrereqs(); err != nil {
			t.Fatalf("labtest: %v", err)
		}
		// The first run on a machine builds the root (minutes); Up below
		// then finds it cached.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		start := time.Now()
		_, err := lab.EnsureSystemdRootfs(ctx, nil)
		cancel()
		if err != nil {
			t.Fatalf("labtest: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("labtest: built the systemd hosts' root in %v", d.Round(time.Second))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second+time.Duration(o.Systemd)*30*time.Second)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Dir: dir, Hosts: o.Hosts, Backend: o.Backend, InitExe: o.InitExe, Systemd: o.Systemd})
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	return l
}

func logHostLogs(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "hosts", "*", "*.log"))
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		t.Logf("labtest: %s:\n%s", f, b)
	}
}

// SSH runs the OpenSSH client with the lab's ssh_config: `ssh -F
// DIR/ssh_config HOST -- ARGS...`, and returns its stdout. A failure
// (including a 30 s timeout) fails the test with ssh's stderr.
func SSH(t testing.TB, l *lab.Lab, host string, args ...string) string {
	t.Helper()
	out, err := TrySSH(l, host, args...)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	return out
}

// TrySSH is SSH returning the error (an *SSHError) instead of failing.
func TrySSH(l *lab.Lab, host string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"-F", l.SSHConfig, host, "--"}, args...)
	cmd := exec.CommandContext(ctx, "ssh", argv...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &SSHError{Host: host, Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// SSHError is an OpenSSH client run that failed.
type SSHError struct {
	Host   string
	Args   []string
	Stderr string
	Err    error
}

func (e *SSHError) Error() string {
	return fmt.Sprintf("ssh %s %s: %v: %s", e.Host, strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

func (e *SSHError) Unwrap() error { return e.Err }
