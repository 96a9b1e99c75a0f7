package remote

import (
	"bufio"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// MismatchError details a refused host key: which host, what it offered
// and what known_hosts holds (file:line). It wraps ErrHostKeyMismatch.
type MismatchError struct {
	Host    string // lookup name: HostName or HostKeyAlias, with [ ]:port when not 22
	Offered string // key type and SHA256 fingerprint the host offered
	Known   []string
	Revoked bool
}

func (e *MismatchError) Error() string {
	if e.Revoked {
		return fmt.Sprintf("host key mismatch: %s offered a REVOKED key %s (%s)", e.Host, e.Offered, strings.Join(e.Known, ", "))
	}
	return fmt.Sprintf("host key mismatch: %s offered %s, known_hosts has %s", e.Host, e.Offered, strings.Join(e.Known, ", "))
}

func (e *MismatchError) Is(target error) bool { return target == ErrHostKeyMismatch }

// UnknownKeyError is a host without a known_hosts entry; wraps ErrHostKeyUnknown.
type UnknownKeyError struct {
	Host    string
	Offered string
	Files   []string
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("host key unknown: %s offered %s, not in %s", e.Host, e.Offered, strings.Join(e.Files, ", "))
}

func (e *UnknownKeyError) Is(target error) bool { return target == ErrHostKeyUnknown }

func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// knownHostsMu serialises appends to known_hosts files within this process.
var knownHostsMu sync.Mutex

// hostKeyCheck builds the host key callback and the HostKeyAlgorithms for
// one hop. lookup is host:port as known_hosts knows it.
type hostKeyCheck struct {
	lookup    string
	files     []string // existing, readable known_hosts files
	writeTo   string   // first user known_hosts file (accept-new)
	acceptNew bool
	cb        ssh.HostKeyCallback
	log       func(string, ...any)
}

func newHostKeyCheck(hc *HostConfig, log func(string, ...any)) (*hostKeyCheck, error) {
	name := hc.HostName
	if hc.HostKeyAlias != "" {
		name = hc.HostKeyAlias
	}
	k := &hostKeyCheck{lookup: joinHostPort(name, hc.Port), log: log}
	k.acceptNew = hc.StrictHostKeyChecking == "accept-new" || hc.StrictHostKeyChecking == "no"
	if len(hc.UserKnownHostsFiles) > 0 {
		k.writeTo = hc.UserKnownHostsFiles[0]
	}
	for _, f := range append(append([]string(nil), hc.UserKnownHostsFiles...), hc.GlobalKnownHostsFiles...) {
		if _, err := os.Stat(f); err == nil {
			k.files = append(k.files, f)
		}
	}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *hostKeyCheck) reload() error {
	if len(k.files) == 0 {
		k.cb = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
		return nil
	}
	cb, err := knownhosts.New(k.files...)
	if err != nil {
		return fmt.Errorf("read known_hosts: %w", err)
	}
	k.cb = cb
	return nil
}

// placeholderAddr is handed to knownhosts, which prefers the hostname
// argument and only parses this one.
var placeholderAddr = &net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 22}

// knownKeys lists what known_hosts holds for the host (plain keys only).
func (k *hostKeyCheck) knownKeys() []knownhosts.KnownKey {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(probeKey))
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if errors.As(k.cb(k.lookup, placeholderAddr, probe), &ke) {
		return ke.Want
	}
	return nil
}

// algorithms returns HostKeyAlgorithms for the host: those of its known
// keys (so a host known only by ed25519 is asked for ed25519), preceded by
// certificate algorithms when a @cert-authority line covers the host. nil
// means "any" (unknown host).
func (k *hostKeyCheck) algorithms() []string {
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	if k.hasCertAuthority() {
		add(ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01)
	}
	for _, kk := range k.knownKeys() {
		switch t := kk.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	if len(algos) == 0 {
		// Unknown host: plain keys only, so that what accept-new records
		// is a key, never a certificate.
		return []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return algos
}

// hasCertAuthority reports whether some @cert-authority line's host
// patterns match the lookup name.
func (k *hostKeyCheck) hasCertAuthority() bool {
	host, port, _ := net.SplitHostPort(k.lookup)
	for _, f := range k.files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 || fields[0] != "@cert-authority" {
				continue
			}
			if hostPatternsMatch(fields[1], host, port) {
				fh.Close()
				return true
			}
		}
		fh.Close()
	}
	return false
}

// hostPatternsMatch implements known_hosts host matching (patterns with
// * ? !, [host]:port, hashed |1|salt|hash).
func hostPatternsMatch(patterns, host, port string) bool {
	name := host
	if port != "22" {
		name = "[" + host + "]:" + port
	}
	matched := false
	for _, p := range strings.Split(patterns, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		var ok bool
		if strings.HasPrefix(p, "|1|") {
			parts := strings.Split(p[3:], "|")
			if len(parts) != 2 {
				continue
			}
			salt, err1 := base64.StdEncoding.DecodeString(parts[0])
			want, err2 := base64.StdEncoding.DecodeString(parts[1])
			if err1 != nil || err2 != nil {
				continue
			}
			m := hmac.New(sha1.New, salt)
			m.Write([]byte(name))
			ok = hmac.Equal(m.Sum(nil), want)
		} else {
			ok = wildcardMatch(p, name)
		}
		if ok && neg {
			return false
		}
		if ok {
			matched = true
		}
	}
	return matched
}

// callback is the ssh.HostKeyCallback for this hop. The address argument
// ssh passes is ignored: the lookup name is the HostName (or HostKeyAlias)
// and port, like OpenSSH with CheckHostIP=no.
func (k *hostKeyCheck) callback(_ string, _ net.Addr, key ssh.PublicKey) error {
	err := k.cb(k.lookup, placeholderAddr, key)
	if err == nil {
		return nil
	}
	var re *knownhosts.RevokedError
	if errors.As(err, &re) {
		return &MismatchError{Host: k.lookup, Offered: describeKey(key), Revoked: true,
			Known: []string{fmt.Sprintf("@revoked at %s:%d", re.Revoked.Filename, re.Revoked.Line)}}
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		if _, isCert := key.(*ssh.Certificate); isCert {
			if !k.hasCertAuthority() {
				return &UnknownKeyError{Host: k.lookup, Offered: describeKey(key) + " certificate", Files: k.files}
			}
			return &MismatchError{Host: k.lookup, Offered: describeKey(key) + " certificate", Known: []string{err.Error()}}
		}
		return err
	}
	if len(ke.Want) > 0 {
		me := &MismatchError{Host: k.lookup, Offered: describeKey(key)}
		for _, w := range ke.Want {
			me.Known = append(me.Known, fmt.Sprintf("%s (%s:%d)", describeKey(w.Key), w.Filename, w.Line))
		}
		return me
	}
	if !k.acceptNew || k.writeTo == "" {
		return &UnknownKeyError{Host: k.lookup, Offered: describeKey(key), Files: k.files}
	}
	if err := appendKnownHost(k.writeTo, k.lookup, key); err != nil {
		return fmt.Errorf("record host key of %s in %s: %w", k.lookup, k.writeTo, err)
	}
	if k.log != nil {
		k.log("%s: recorded new host key %s in %s", k.lookup, describeKey(key), k.writeTo)
	}
	return nil
}

func appendKnownHost(file, hostport string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		// Make sure we start on a new line.
		buf := make([]byte, 1)
		if r, err := os.Open(file); err == nil {
			if _, err := r.ReadAt(buf, st.Size()-1); err == nil && buf[0] != '\n' {
				line = "\n" + line
			}
			r.Close()
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// probeKey is a fixed ed25519 public key no host has: looking it up makes
// knownhosts list every key it holds for a host.
var probeKey = func() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}()

// wildcardMatch matches name against a known_hosts pattern where only *
// and ? are special.
func wildcardMatch(pattern, name string) bool {
	if pattern == "" {
		return name == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(name); i++ {
			if wildcardMatch(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	case '?':
		return name != "" && wildcardMatch(pattern[1:], name[1:])
	}
	return name != "" && pattern[0] == name[0] && wildcardMatch(pattern[1:], name[1:])
}
