package remote_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/remote/remotetest"
)

// writeConfig writes an ssh_config made of blocks and returns its path.
func writeConfig(t *testing.T, blocks ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(p, []byte(strings.Join(blocks, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func dialer(t *testing.T, o remote.Options, blocks ...string) *remote.Dialer {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	o.ConfigFiles = []string{writeConfig(t, blocks...)}
	o.Log = t.Logf
	return remote.NewDialer(o)
}

func dial(t *testing.T, d *remote.Dialer, name string) (*remote.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, remote.Target{Name: name})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestConformanceSSH(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	d := dialer(t, remote.Options{}, srv.SSHConfig("h1"))
	remotetest.Conformance(t, func(t *testing.T, _ []remotetest.Case) remote.Runner {
		c, err := dial(t, d, "h1")
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestHandshakeTimeout(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{Silent: true})
	d := dialer(t, remote.Options{}, srv.SSHConfig("mute", "ConnectTimeout 1"))
	start := time.Now()
	_, err := dial(t, d, "mute")
	took := time.Since(start)
	if !errors.Is(err, remote.ErrTimeout) || !remote.Retryable(err) {
		t.Fatalf("Dial to a silent host = %v, want ErrTimeout", err)
	}
	var he *remote.HostError
	if !errors.As(err, &he) || he.Phase != "handshake" || he.Host != "mute" {
		t.Fatalf("error %v: want a *HostError for mute in phase handshake", err)
	}
	if took > 3*time.Second {
		t.Fatalf("Dial took %s, want about the 1s ConnectTimeout", took)
	}
	t.Logf("%v (after %s)", err, took.Round(time.Millisecond))
}

func TestDialCancelled(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{Silent: true})
	d := dialer(t, remote.Options{}, srv.SSHConfig("mute", "ConnectTimeout 60"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Dial(ctx, remote.Target{Name: "mute"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("Dial with a cancelled ctx = %v after %s, want context.DeadlineExceeded promptly", err, time.Since(start))
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	d := dialer(t, remote.Options{}, "Host gone\n  HostName 127.0.0.1\n  Port "+itoa(port)+"\n")
	_, err = dial(t, d, "gone")
	if !errors.Is(err, remote.ErrUnreachable) {
		t.Fatalf("Dial to a closed port = %v, want ErrUnreachable", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestHostKeys(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	empty := filepath.Join(t.TempDir(), "known_hosts")

	t.Run("unknown refused", func(t *testing.T) {
		d := dialer(t, remote.Options{KnownHosts: []string{empty}}, srv.SSHConfig("h1"))
		_, err := dial(t, d, "h1")
		if !errors.Is(err, remote.ErrHostKeyUnknown) || remote.Retryable(err) {
			t.Fatalf("Dial with an empty known_hosts = %v, want ErrHostKeyUnknown", err)
		}
		if !strings.Contains(err.Error(), "--accept-new") {
			t.Errorf("error %q has no hint about --accept-new", err)
		}
	})
	t.Run("accept new records then strict", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "sub", "known_hosts")
		d := dialer(t, remote.Options{KnownHosts: []string{kh}, AcceptNew: true}, srv.SSHConfig("h1"))
		if _, err := dial(t, d, "h1"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(kh)
		if err != nil {
			t.Fatal(err)
		}
		want := "[127.0.0.1]:" + itoa(srv.Port) + " " + srv.HostKeys[0].PublicKey().Type()
		if !strings.HasPrefix(string(b), want) {
			t.Fatalf("known_hosts = %q, want a line starting %q", b, want)
		}
		strict := dialer(t, remote.Options{KnownHosts: []string{kh}}, srv.SSHConfig("h1"))
		if _, err := dial(t, strict, "h1"); err != nil {
			t.Fatalf("strict dial after accept-new: %v", err)
		}
	})
	t.Run("mismatch refused loudly", func(t *testing.T) {
		other := remotetest.NewHostKey(t, "ed25519")
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := "[127.0.0.1]:" + itoa(srv.Port) + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other.PublicKey())))
		if err := os.WriteFile(kh, []byte("# comment\n"+line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d := dialer(t, remote.Options{KnownHosts: []string{kh}, AcceptNew: true}, srv.SSHConfig("h1"))
		_, err := dial(t, d, "h1")
		if !errors.Is(err, remote.ErrHostKeyMismatch) {
			t.Fatalf("Dial with a changed key = %v, want ErrHostKeyMismatch", err)
		}
		msg := err.Error()
		for _, want := range []string{"h1", ssh.FingerprintSHA256(srv.HostKeys[0].PublicKey()), ssh.FingerprintSHA256(other.PublicKey()), kh + ":2", "ssh-ed25519"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not name %q", msg, want)
			}
		}
	})
	t.Run("algorithms from known_hosts", func(t *testing.T) {
		// The server prefers ecdsa; we know it only by ed25519.
		ec := remotetest.NewHostKey(t, "ecdsa")
		ed := remotetest.NewHostKey(t, "ed25519")
		both := remotetest.StartServer(t, remotetest.ServerOptions{HostKeys: []ssh.Signer{ec, ed}})
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := "[127.0.0.1]:" + itoa(both.Port) + " " + string(ssh.MarshalAuthorizedKey(ed.PublicKey()))
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		d := dialer(t, remote.Options{KnownHosts: []string{kh}}, both.SSHConfig("h2"))
		if _, err := dial(t, d, "h2"); err != nil {
			t.Fatalf("host known by ed25519 offering ecdsa first: %v", err)
		}
	})
	t.Run("hashed entry", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(kh, []byte("[127.0.0.1]:"+itoa(srv.Port)+" "+string(ssh.MarshalAuthorizedKey(srv.HostKeys[0].PublicKey()))), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ssh-keygen", "-H", "-f", kh)
		cmd.WaitDelay = time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -H: %v: %s (install openssh-client)", err, out)
		}
		b, _ := os.ReadFile(kh)
		if !strings.HasPrefix(string(b), "|1|") {
			t.Fatalf("known_hosts not hashed: %q", b)
		}
		d := dialer(t, remote.Options{KnownHosts: []string{kh}}, srv.SSHConfig("h1"))
		if _, err := dial(t, d, "h1"); err != nil {
			t.Fatalf("hashed known_hosts: %v", err)
		}
	})
}

func TestAuthFailure(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	enc := filepath.Join(dir, "enc")
	for _, c := range [][]string{{"-N", "", "-f", wrong}, {"-N", "secret", "-f", enc}} {
		cmd := exec.Command("ssh-keygen", append([]string{"-q", "-t", "ed25519"}, c...)...)
		cmd.WaitDelay = time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s (install openssh-client)", err, out)
		}
	}
	tests := []struct {
		name, key, wantInMsg string
	}{
		{"wrong key", wrong, "authorized_keys"},
		{"encrypted key", enc, enc + " is encrypted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.Replace(srv.SSHConfig("h1"), srv.ClientKeyFile, tc.key, 1)
			d := dialer(t, remote.Options{KnownHosts: []string{srv.KnownHosts}}, cfg)
			_, err := dial(t, d, "h1")
			var he *remote.HostError
			if !errors.Is(err, remote.ErrAuth) || !errors.As(err, &he) || he.Phase != "auth" {
				t.Fatalf("Dial = %v, want ErrAuth in phase auth", err)
			}
			if !strings.Contains(err.Error(), tc.wantInMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantInMsg)
			}
		})
	}
}

func TestProxyJumpChain(t *testing.T) {
	j1 := remotetest.StartServer(t, remotetest.ServerOptions{})
	j2 := remotetest.StartServer(t, remotetest.ServerOptions{})
	dst := remotetest.StartServer(t, remotetest.ServerOptions{})
	d := dialer(t, remote.Options{}, j1.SSHConfig("j1"), j2.SSHConfig("j2"), dst.SSHConfig("inner", "ProxyJump j1,j2"))
	c, err := dial(t, d, "inner")
	if err != nil {
		t.Fatal(err)
	}
	addr, port, err := c.SSHConnection(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1" || port != dst.Port {
		t.Fatalf("SSHConnection = %s %d, want 127.0.0.1 %d", addr, port, dst.Port)
	}
	// Closing the client closes the jump connections too: the jump host
	// sees no open connection afterwards, so new runs fail.
	c.Close()
	if err := c.Run(context.Background(), remote.Cmd{Command: "true"}); err == nil {
		t.Fatal("Run after Close succeeded")
	}
	// A jump host that is down: a clear error naming it.
	j2.Close()
	_, err = dial(t, d, "inner")
	if !errors.Is(err, remote.ErrUnreachable) || !strings.Contains(err.Error(), "j2") {
		t.Fatalf("Dial through a dead jump = %v, want ErrUnreachable naming j2", err)
	}
}

func TestKeepaliveDropsDeadConnection(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{IgnoreKeepalives: true})
	d := dialer(t, remote.Options{}, srv.SSHConfig("h1", "ServerAliveInterval 1", "ServerAliveCountMax 2"))
	c, err := dial(t, d, "h1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = c.Run(ctx, remote.Cmd{Command: "sleep 8"})
	if !errors.Is(err, remote.ErrTimeout) {
		t.Fatalf("Run on a connection whose keepalives go unanswered = %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("dead connection noticed after %s, want about 2-3s", took)
	}
}

func TestUpload(t *testing.T) {
	noSFTP := remotetest.StartServer(t, remotetest.ServerOptions{NoSFTP: true})
	withSFTP := remotetest.StartServer(t, remotetest.ServerOptions{})
	d := dialer(t, remote.Options{}, noSFTP.SSHConfig("plain"), withSFTP.SSHConfig("sftp"))
	runners := map[string]func(t *testing.T) remote.Runner{
		"local": func(t *testing.T) remote.Runner { return remotetest.NewLocal("local") },
		"ssh exec": func(t *testing.T) remote.Runner {
			c, err := dial(t, d, "plain")
			if err != nil {
				t.Fatal(err)
			}
			if c.HasSFTP() {
				t.Fatal("HasSFTP on a host without sftp")
			}
			return c
		},
		"ssh sftp": func(t *testing.T) remote.Runner {
			c, err := dial(t, d, "sftp")
			if err != nil {
				t.Fatal(err)
			}
			if !c.HasSFTP() {
				t.Fatal("no sftp on a host with sftp")
			}
			return c
		},
		"sudo over ssh": func(t *testing.T) remote.Runner {
			if _, err := exec.LookPath("sudo"); err != nil {
				t.Fatal("sudo not installed (apt-get install sudo)")
			}
			c, err := dial(t, d, "sftp")
			if err != nil {
				t.Fatal(err)
			}
			return remote.Sudo(c)
		},
	}
	for name, newRunner := range runners {
		t.Run(name, func(t *testing.T) {
			r := newRunner(t)
			dest := filepath.Join(t.TempDir(), "new dir", "bin", "helper")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i, data := range [][]byte{bytes.Repeat([]byte("lifeline"), 100000), []byte("second version\n")} {
				if err := remote.Upload(ctx, r, data, dest, 0o700); err != nil {
					t.Fatalf("upload %d: %v", i, err)
				}
				got, err := os.ReadFile(dest)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("upload %d: content differs (%d bytes, err %v)", i, len(got), err)
				}
				st, _ := os.Stat(dest)
				if st.Mode().Perm() != 0o700 {
					t.Errorf("mode = %v, want 0700", st.Mode().Perm())
				}
			}
			st, _ := os.Stat(filepath.Dir(dest))
			if st.Mode().Perm() != 0o700 {
				t.Errorf("created parent mode = %v, want 0700", st.Mode().Perm())
			}
			left, _ := filepath.Glob(dest + ".tmp-*")
			if len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// A link that goes silent after connect: opening a session waits for the
// server forever, so Run must end at ctx's deadline by closing the
// connection, not when TCP gives up minutes later.
func TestRunHonoursContextOnSilentLink(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	d := dialer(t, remote.Options{}, srv.SSHConfig("h1"))
	c, err := dial(t, d, "h1")
	if err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, remote.Cmd{Command: "true"}) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run on a silent link still blocked 10s after its 1s deadline")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run on a silent link = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("Run took %s after a 1s deadline", took)
	}
	// the connection is of no further use: later runs fail at once
	if err := c.Run(context.Background(), remote.Cmd{Command: "true"}); err == nil {
		t.Fatalf("Run on the closed connection succeeded")
	}
}
