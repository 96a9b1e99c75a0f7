package remote_test

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/remote/remotetest"
)

// TestCertificateFile: a key the server does not know logs in only with
// the certificate CertificateFile names (at a path FILE-cert.pub lookup
// would not find), and PubkeyAcceptedAlgorithms can rule it out.
func TestCertificateFile(t *testing.T) {
	_, userCA := newEd25519(t)
	srv := remotetest.StartServer(t, remotetest.ServerOptions{UserCA: userCA.PublicKey()})
	priv, signer := newEd25519(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "id_deploy")
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := signCert(t, userCA, signer.PublicKey(), ssh.UserCert, "root")
	certFile := filepath.Join(dir, "certs", "deploy-"+itoa(srv.Port)+".cert")
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(srv.SSHConfig("h1"), srv.ClientKeyFile, key, 1)
	tests := []struct {
		name  string
		extra string
		ok    bool
	}{
		{"with CertificateFile (tokens expanded)", "CertificateFile " + filepath.Join(dir, "certs", "deploy-%p.cert"), true},
		{"without", "", false},
		{"certificate algorithm not accepted", "CertificateFile " + certFile + "\n  PubkeyAcceptedAlgorithms -ssh-ed25519-cert-v01@openssh.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dialer(t, remote.Options{}, base+"  "+tt.extra+"\n")
			_, err := dial(t, d, "h1")
			if tt.ok && err != nil || !tt.ok && !errors.Is(err, remote.ErrAuth) {
				t.Fatalf("Dial = %v, want ok=%v (else ErrAuth)", err, tt.ok)
			}
		})
	}
}

// TestIdentityAgent: IdentityAgent none keeps the agent out; a socket
// path uses that agent even with SSH_AUTH_SOCK unset.
func TestIdentityAgent(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	raw, err := ssh.ParseRawPrivateKey(mustRead(t, srv.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	startAgent(t, kr)
	sock := os.Getenv("SSH_AUTH_SOCK")
	cfg := strings.Replace(srv.SSHConfig("h1"), "IdentitiesOnly yes", "IdentitiesOnly no", 1)
	cfg = strings.Replace(cfg, srv.ClientKeyFile, filepath.Join(t.TempDir(), "missing"), 1)
	tests := []struct {
		name, agentLine, env string
		ok                   bool
	}{
		{"none", "IdentityAgent none", sock, false},
		{"socket path", "IdentityAgent " + sock, "", true},
		{"SSH_AUTH_SOCK", "IdentityAgent SSH_AUTH_SOCK", sock, true},
		{"environment variable", "IdentityAgent $LIFELINE_TEST_AGENT", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("LIFELINE_TEST_AGENT", sock)
			d := remote.NewDialer(remote.Options{ConfigFiles: []string{writeConfig(t, cfg+"  "+tt.agentLine+"\n")}, Log: t.Logf})
			t.Setenv("SSH_AUTH_SOCK", tt.env)
			_, err := dial(t, d, "h1")
			if tt.ok && err != nil || !tt.ok && !errors.Is(err, remote.ErrAuth) {
				t.Fatalf("Dial = %v, want ok=%v (else ErrAuth)", err, tt.ok)
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConnAlgorithms: Ciphers, KexAlgorithms and MACs reach the handshake;
// a list lifeline cannot implement at all is refused by name.
func TestConnAlgorithms(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	tests := []struct {
		name, extra, wantErr string
	}{
		{"restricted", "Ciphers aes128-ctr\n  KexAlgorithms curve25519-sha256\n  MACs hmac-sha2-256", ""},
		{"modifiers", "Ciphers -chacha20-poly1305@openssh.com\n  KexAlgorithms ^curve25519-sha256", ""},
		{"unknown only", "Ciphers made-up-cipher", "Ciphers made-up-cipher"},
		{"none in common with the server", "KexAlgorithms diffie-hellman-group1-sha1", "handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dialer(t, remote.Options{}, srv.SSHConfig("h1", tt.extra))
			_, err := dial(t, d, "h1")
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Dial = %v, want error %q", err, tt.wantErr)
			}
		})
	}
}
