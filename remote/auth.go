package remote

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keySource gathers the signers offered to one hop, in OpenSSH's order:
// agent keys (only those matching an IdentityFile when IdentitiesOnly),
// then identity files not already in the agent; a key is offered with its
// certificates first: those of CertificateFile that certify it, and
// FILE-cert.pub. PubkeyAcceptedAlgorithms drops or narrows keys.
type keySource struct {
	host     string
	files    []string
	certs    []string // CertificateFile: offered with the key (agent's or file's) they certify
	agent    string   // IdentityAgent: "" or SSH_AUTH_SOCK (the environment's), none, $VAR, or a socket path
	only     bool
	accepted string // PubkeyAcceptedAlgorithms
	log      func(string, ...any)

	mu        sync.Mutex
	problems  []string // encrypted or unreadable keys, for the error message
	encrypted []string
	agentConn net.Conn
	offered   int
}

func (k *keySource) signers() ([]ssh.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []ssh.Signer
	// Public halves of the identity files (for IdentitiesOnly and dedup).
	type fileKey struct {
		path string
		pub  ssh.PublicKey
	}
	var fileKeys []fileKey
	for _, f := range k.files {
		var pub ssh.PublicKey
		if b, err := os.ReadFile(f + ".pub"); err == nil {
			pub, _, _, _, _ = ssh.ParseAuthorizedKey(b)
		}
		fileKeys = append(fileKeys, fileKey{f, pub})
	}
	certs := k.loadCerts()
	withCerts := func(s ssh.Signer) []ssh.Signer {
		var out []ssh.Signer
		for _, c := range certs {
			if bytes.Equal(c.Key.Marshal(), s.PublicKey().Marshal()) {
				if cs, err := ssh.NewCertSigner(c, s); err == nil {
					k.logf("%s: offering certificate %s (CertificateFile)", k.host, describeKey(c))
					out = append(out, cs)
				}
			}
		}
		return append(out, s)
	}
	inAgent := map[string]bool{}
	if sock := k.agentSocket(); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			k.logf("ssh-agent at %s: %v", sock, err)
		} else {
			k.agentConn = conn
			ag := agent.NewClient(conn)
			sigs, err := ag.Signers()
			if err != nil {
				k.logf("ssh-agent: list keys: %v", err)
			}
			for _, s := range sigs {
				pub := s.PublicKey()
				base := pub
				if c, ok := pub.(*ssh.Certificate); ok {
					base = c.Key
				}
				matchesFile := false
				for _, fk := range fileKeys {
					if fk.pub != nil && bytes.Equal(fk.pub.Marshal(), base.Marshal()) {
						matchesFile = true
					}
				}
				if k.only && !matchesFile {
					continue
				}
				inAgent[string(base.Marshal())] = true
				k.logf("%s: offering agent key %s", k.host, describeKey(pub))
				out = append(out, withCerts(s)...)
			}
		}
	}
	for _, fk := range fileKeys {
		if fk.pub != nil && inAgent[string(fk.pub.Marshal())] {
			continue
		}
		b, err := os.ReadFile(fk.path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				k.problems = append(k.problems, fmt.Sprintf("%s: %v", fk.path, err))
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			k.encrypted = append(k.encrypted, fk.path)
			continue
		}
		if err != nil {
			k.problems = append(k.problems, fmt.Sprintf("%s: %v", fk.path, err))
			continue
		}
		if inAgent[string(s.PublicKey().Marshal())] {
			continue
		}
		if cb, err := os.ReadFile(fk.path + "-cert.pub"); err == nil {
			if cpub, _, _, _, err := ssh.ParseAuthorizedKey(cb); err == nil {
				if cert, ok := cpub.(*ssh.Certificate); ok {
					if cs, err := ssh.NewCertSigner(cert, s); err == nil {
						k.logf("%s: offering certificate %s", k.host, fk.path+"-cert.pub")
						out = append(out, cs)
					}
				}
			}
		}
		k.logf("%s: offering key %s (%s)", k.host, fk.path, describeKey(s.PublicKey()))
		out = append(out, withCerts(s)...)
	}
	var kept []ssh.Signer
	for _, s := range out {
		if r := restrictSigner(s, k.accepted); r != nil {
			kept = append(kept, r)
		} else {
			k.logf("%s: not offering %s: not in PubkeyAcceptedAlgorithms", k.host, describeKey(s.PublicKey()))
		}
	}
	k.offered = len(kept)
	return kept, nil
}

// agentSocket is the agent's socket path per IdentityAgent ("" = none).
func (k *keySource) agentSocket() string {
	switch {
	case k.agent == "none":
		return ""
	case k.agent == "" || k.agent == "SSH_AUTH_SOCK":
		return os.Getenv("SSH_AUTH_SOCK")
	case strings.HasPrefix(k.agent, "$"):
		return os.Getenv(strings.TrimPrefix(k.agent, "$"))
	}
	return k.agent
}

// loadCerts reads the CertificateFiles; a missing file is skipped (as
// ssh does), an unreadable one is noted.
func (k *keySource) loadCerts() []*ssh.Certificate {
	var out []*ssh.Certificate
	for _, f := range k.certs {
		b, err := os.ReadFile(f)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				k.problems = append(k.problems, fmt.Sprintf("%s: %v", f, err))
			}
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		c, ok := pub.(*ssh.Certificate)
		if err != nil || !ok {
			k.problems = append(k.problems, fmt.Sprintf("%s: not an SSH certificate", f))
			continue
		}
		out = append(out, c)
	}
	return out
}

func (k *keySource) logf(format string, args ...any) {
	if k.log != nil {
		k.log(format, args...)
	}
}

func (k *keySource) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.agentConn != nil {
		k.agentConn.Close()
		k.agentConn = nil
	}
}

// failure explains a refused authentication, with a hint.
func (k *keySource) failure(user string, cause error) (error, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := &causeError{kind: ErrAuth, cause: fmt.Errorf("user %s: %w", user, cause)}
	switch {
	case len(k.encrypted) > 0:
		return err, fmt.Sprintf("%s is encrypted: add it to ssh-agent (ssh-add %s)", k.encrypted[0], k.encrypted[0])
	case k.offered == 0 && len(k.problems) > 0:
		return err, "no usable key: " + k.problems[0]
	case k.offered == 0:
		return err, "no key to offer: start ssh-agent and ssh-add a key, or set IdentityFile"
	}
	return err, "check the user and that one of your keys is in its authorized_keys"
}
