package remote

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keySource gathers the signers offered to one hop, in OpenSSH's order:
// agent keys (only those matching an IdentityFile when IdentitiesOnly),
// then identity files not already in the agent, each with its certificate
// (FILE-cert.pub) when present.
type keySource struct {
	host  string
	files []string
	only  bool
	log   func(string, ...any)

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
	inAgent := map[string]bool{}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
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
				out = append(out, s)
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
		out = append(out, s)
	}
	k.offered = len(out)
	return out, nil
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
