package remote_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/remote/remotetest"
)

func newEd25519(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

// startAgent serves keyring on a unix socket and points SSH_AUTH_SOCK at it.
func startAgent(t *testing.T, keyring agent.Agent) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func signCert(t *testing.T, ca ssh.Signer, key ssh.PublicKey, typ uint32, principals ...string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{Key: key, CertType: typ, KeyId: "test", ValidPrincipals: principals,
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgentAuth(t *testing.T) {
	_, userCA := newEd25519(t)
	srv := remotetest.StartServer(t, remotetest.ServerOptions{UserCA: userCA.PublicKey()})
	// No usable identity file: only the agent can log in.
	cfg := strings.Replace(srv.SSHConfig("h1"), "IdentitiesOnly yes", "IdentitiesOnly no", 1)
	cfg = strings.Replace(cfg, srv.ClientKeyFile, filepath.Join(t.TempDir(), "missing"), 1)

	t.Run("plain key", func(t *testing.T) {
		priv, err := os.ReadFile(srv.ClientKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ssh.ParseRawPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		kr := agent.NewKeyring()
		if err := kr.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
			t.Fatal(err)
		}
		startAgent(t, kr)
		d := remote.NewDialer(remote.Options{ConfigFiles: []string{writeConfig(t, cfg)}, Log: t.Logf})
		if _, err := dial(t, d, "h1"); err != nil {
			t.Fatalf("agent key: %v", err)
		}
	})
	t.Run("certificate", func(t *testing.T) {
		priv, signer := newEd25519(t)
		cert := signCert(t, userCA, signer.PublicKey(), ssh.UserCert, "root")
		kr := agent.NewKeyring()
		if err := kr.Add(agent.AddedKey{PrivateKey: priv, Certificate: cert}); err != nil {
			t.Fatal(err)
		}
		startAgent(t, kr)
		d := remote.NewDialer(remote.Options{ConfigFiles: []string{writeConfig(t, cfg)}, Log: t.Logf})
		if _, err := dial(t, d, "h1"); err != nil {
			t.Fatalf("agent certificate: %v", err)
		}
	})
	t.Run("identities only skips other agent keys", func(t *testing.T) {
		priv, _ := newEd25519(t)
		kr := agent.NewKeyring()
		if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
			t.Fatal(err)
		}
		startAgent(t, kr)
		only := strings.Replace(cfg, "IdentitiesOnly no", "IdentitiesOnly yes", 1)
		d := remote.NewDialer(remote.Options{ConfigFiles: []string{writeConfig(t, only)}, Log: t.Logf})
		if _, err := dial(t, d, "h1"); !errors.Is(err, remote.ErrAuth) {
			t.Fatalf("IdentitiesOnly with an unrelated agent key = %v, want ErrAuth", err)
		}
	})
}

func TestHostCertificateAndRevoked(t *testing.T) {
	_, hostCA := newEd25519(t)
	_, hostKey := newEd25519(t)
	cert := signCert(t, hostCA, hostKey.PublicKey(), ssh.HostCert, "127.0.0.1")
	certSigner, err := ssh.NewCertSigner(cert, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := remotetest.StartServer(t, remotetest.ServerOptions{HostKeys: []ssh.Signer{certSigner, hostKey}})
	port := strconv.Itoa(srv.Port)
	caLine := "@cert-authority [127.0.0.1]:" + port + " " + string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))
	tests := []struct {
		name    string
		kh      string
		wantErr error
	}{
		{"cert-authority", caLine, nil},
		{"other host's authority", "@cert-authority [10.9.9.9]:" + port + " " + string(ssh.MarshalAuthorizedKey(hostCA.PublicKey())), remote.ErrHostKeyUnknown},
		{"revoked key", caLine + "@revoked * " + string(ssh.MarshalAuthorizedKey(hostKey.PublicKey())), remote.ErrHostKeyMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(tc.kh), 0o600); err != nil {
				t.Fatal(err)
			}
			d := dialer(t, remote.Options{KnownHosts: []string{kh}}, srv.SSHConfig("h1"))
			_, err := dial(t, d, "h1")
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Dial = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestSSHConnectionDirect(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	d := dialer(t, remote.Options{}, srv.SSHConfig("h1"))
	c, err := dial(t, d, "h1")
	if err != nil {
		t.Fatal(err)
	}
	addr, port, err := c.SSHConnection(context.Background())
	if err != nil || addr != "127.0.0.1" || port != srv.Port {
		t.Fatalf("SSHConnection = %s %d %v, want 127.0.0.1 %d", addr, port, err, srv.Port)
	}
}
