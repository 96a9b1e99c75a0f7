package remote

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Token expansion as ssh_config(5) TOKENS and ENVIRONMENT VARIABLES
// define it (OpenSSH 9.2):
//
//   - CertificateFile, IdentityAgent, IdentityFile and UserKnownHostsFile:
//     a leading ~ (the passwd home, as ssh uses), %% %C %d %h %i %k %L %l
//     %n %p %r %u, and ${ENV}; so does Match exec (without ${ENV}).
//   - ProxyCommand: %% %h %n %p %r.
//   - HostName: %% %h.
//   - HostKeyAlias, ProxyJump, User and Port take none (ssh 9.2 refuses
//     a ProxyJump with %, and takes HostKeyAlias literally).

// fileTokens are the tokens file-name keywords accept.
const fileTokens = "CdhikLlnpru"

// proxyTokens are the tokens ProxyCommand accepts.
const proxyTokens = "hnpr"

// tokenValues are the values of the % tokens for one host.
type tokenValues struct {
	host, port, ruser, alias, keyAlias string
	luser, home, uid, thisHost         string
}

func (tv tokenValues) value(c byte) string {
	switch c {
	case 'h':
		return tv.host
	case 'p':
		return tv.port
	case 'r':
		return tv.ruser
	case 'n':
		return tv.alias
	case 'k':
		return tv.keyAlias
	case 'u':
		return tv.luser
	case 'd':
		return tv.home
	case 'i':
		return tv.uid
	case 'l':
		return tv.thisHost
	case 'L':
		short, _, _ := strings.Cut(tv.thisHost, ".")
		return short
	case 'C':
		sum := sha1.Sum([]byte(tv.thisHost + tv.host + tv.port + tv.ruser))
		return hex.EncodeToString(sum[:])
	}
	return ""
}

// expandPercent expands %X for the tokens in allowed and %%; any other
// token is an error, as in ssh.
func expandPercent(s string, tv tokenValues, allowed string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("invalid format %q: ends with %%", s)
		}
		i++
		c := s[i]
		switch {
		case c == '%':
			b.WriteByte('%')
		case strings.IndexByte(allowed, c) >= 0:
			b.WriteString(tv.value(c))
		default:
			return "", fmt.Errorf("unknown token %%%c in %q", c, s)
		}
	}
	return b.String(), nil
}

// expandDollar expands ${NAME}; an unset variable is an error.
func expandDollar(s string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		name := s[i+2 : i+end]
		v, ok := os.LookupEnv(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set (in %q)", name, s)
		}
		b.WriteString(s[:i])
		b.WriteString(v)
		s = s[i+end+1:]
	}
}

// tildeExpand is tilde_expand_filename: ~ is the passwd home directory
// (not $HOME), ~user that user's.
func tildeExpand(s string) (string, error) {
	if !strings.HasPrefix(s, "~") {
		return s, nil
	}
	name, rest, slash := strings.Cut(s[1:], "/")
	home := localPasswd().home
	if name != "" {
		h, ok := userHome(name)
		if !ok {
			return "", fmt.Errorf("no such user %q in %q", name, s)
		}
		home = h
	}
	if !slash {
		return home, nil
	}
	return strings.TrimSuffix(home, "/") + "/" + rest, nil
}

// expandFile expands a file-name setting: ~, then tokens and ${ENV}
// (default_client_percent_dollar_expand).
func expandFile(key, s string, tv tokenValues) (string, error) {
	out, err := tildeExpand(s)
	if err == nil {
		out, err = expandDollar(out)
	}
	if err == nil {
		out, err = expandPercent(out, tv, fileTokens)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return out, nil
}

// expandHostName expands HostName's %h (the name being resolved) and %%.
func expandHostName(hn, host string) string {
	out, err := expandPercent(hn, tokenValues{host: host}, "h")
	if err != nil {
		return hn
	}
	return out
}

// thisHost is gethostname(), as %l uses it.
func thisHost() string {
	h, _ := os.Hostname()
	return h
}
