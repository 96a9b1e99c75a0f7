package remote

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Each is wrapped in a [*HostError] naming the host and the
// phase; test with errors.Is. The comment says whether retrying can help.
var (
	// ErrHostKeyMismatch: the host offered a key that differs from the one
	// known_hosts holds for it (or a revoked key). Never retry: a person must
	// check whether the host was reinstalled or someone is in the middle.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrHostKeyUnknown: known_hosts holds no key for the host and
	// accept-new is off. Do not retry; record the key (--accept-new or
	// ssh-keyscan) first.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrAuth: the host refused every key we offered, or a key could not be
	// used (encrypted, unreadable). Do not retry.
	ErrAuth = errors.New("authentication failed")
	// ErrTimeout: connect, handshake or authentication did not finish within
	// the connect timeout, or keepalives went unanswered. Retrying is fine.
	ErrTimeout = errors.New("timed out")
	// ErrUnreachable: TCP connect refused or failed, name not resolved, a
	// jump host could not open the next hop, or the connection dropped.
	// Retrying is fine.
	ErrUnreachable = errors.New("unreachable")
	// ErrNoSudo: the login user is not root and `sudo -n` refused (a
	// password is required, or the user may not use sudo). Do not retry;
	// grant NOPASSWD sudo or log in as root.
	ErrNoSudo = errors.New("no passwordless sudo")
)

// HostError is a transport failure on one host in one phase: "resolve",
// "dial", "handshake", "auth" or "exec". Err wraps one of the sentinel
// errors above when the cause is classified.
type HostError struct {
	Host  string
	Phase string
	Addr  string // host:port dialed ("" when not yet known)
	Via   string // the jump host the connection went through, if any
	Err   error
	Hint  string // what a person can do about it, if anything
}

func (e *HostError) Error() string {
	var b strings.Builder
	b.WriteString(e.Host)
	b.WriteString(": ")
	switch e.Phase {
	case "dial":
		b.WriteString("connect to")
	case "handshake":
		b.WriteString("handshake with")
	case "auth":
		b.WriteString("authenticate to")
	default:
		b.WriteString(e.Phase)
	}
	if e.Addr != "" {
		b.WriteString(" " + e.Addr)
	}
	if e.Via != "" {
		b.WriteString(" via " + e.Via)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Hint != "" {
		b.WriteString(" (hint: " + e.Hint + ")")
	}
	return b.String()
}

func (e *HostError) Unwrap() error { return e.Err }

// Retryable reports whether err is a transport failure that may succeed on
// a later attempt (timeouts, unreachable hosts).
func Retryable(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable)
}

// timeoutError is ErrTimeout with the duration it took.
type timeoutError struct{ after string }

func (e timeoutError) Error() string { return "timed out after " + e.after }
func (e timeoutError) Is(target error) bool {
	return target == ErrTimeout
}

// causeError is a sentinel with the underlying cause kept for the message.
type causeError struct {
	kind  error
	cause error
}

func (e *causeError) Error() string { return fmt.Sprintf("%v: %v", e.kind, e.cause) }
func (e *causeError) Is(target error) bool {
	return target == e.kind
}
func (e *causeError) Unwrap() error { return e.cause }
