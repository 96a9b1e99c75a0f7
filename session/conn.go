package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/helperbin"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// errHelperMissing means the host has no (intact) helper of that hash.
var errHelperMissing = errors.New("helper missing or corrupt on host")

// tamperedError: the helper file on the host was not the one its name
// promises (see wire.ExitHelperTampered); why is the first line the
// wrapper or the helper wrote about it.
type tamperedError struct{ path, why string }

func (e *tamperedError) Error() string {
	return "the helper " + e.path + " on the host does not match its sha256"
}
func (e *tamperedError) Is(target error) bool { return target == errHelperMissing }

func (h *Tx) dial(ctx context.Context) (remote.Runner, error) {
	h.res.Connections++
	return h.s.dialer.Dial(ctx, h.t.SSH)
}

// priv wraps a connection for privileged steps: root as is, else sudo -n.
func (h *Tx) priv(c remote.Runner) remote.Runner {
	if h.uid == 0 {
		return c
	}
	return remote.Sudo(c)
}

// probe reads, as the login user, how the host sees us, its uid and arch,
// and picks the helper.
func (h *Tx) probe(ctx context.Context, c remote.Runner) error {
	out, err := remote.Output(ctx, c, `printf '%s\n' "$SSH_CONNECTION"; id -u; uname -m`, nil)
	h.res.RoundTrips++
	h.res.HostProcesses += 3 // the shell, id, uname
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3 {
		return fmt.Errorf("probe: unexpected answer %q", out)
	}
	f := strings.Fields(lines[0])
	if len(f) != 4 {
		return fmt.Errorf("probe: SSH_CONNECTION not set by the host's sshd (got %q): cannot place the kernel guard", lines[0])
	}
	port, _ := strconv.Atoi(f[3])
	sport, _ := strconv.Atoi(f[1])
	h.op = wire.Operator{Addr: f[0], SSHPort: port, HostAddr: f[2], SrcPort: sport}
	if h.uid, err = strconv.Atoi(strings.TrimSpace(lines[1])); err != nil {
		return fmt.Errorf("probe: id -u: %q", lines[1])
	}
	arch := helperbin.Arch(lines[2])
	data, sha, err := h.s.opts.Helper(arch)
	if err != nil {
		return fmt.Errorf("%s (uname -m: %s): %w", h.t.Name, strings.TrimSpace(lines[2]), err)
	}
	h.data, h.sha, h.helper = data, sha, wire.HelperPath(sha)
	return nil
}

// call runs one helper verb: verify the helper's sha256, run it with req on
// stdin, decode its report. A missing or corrupt helper is uploaded once and
// the call repeated.
func (h *Tx) call(ctx context.Context, r remote.Runner, verb string, req *wire.Request) (*wire.Report, error) {
	rep, err := h.callOnce(ctx, r, verb, req)
	var te *tamperedError
	if errors.As(err, &te) {
		w := fmt.Sprintf("%s was modified on the host (it may be an attack or a corrupt disk): kept as %s.tampered-* for inspection, and replaced by a fresh upload", te.path, te.path)
		if te.why != "" {
			w += " (" + te.why + ")"
		}
		h.res.Warnings = append(h.res.Warnings, w)
		h.event(h.res.Phase, "info", "WARNING: "+w)
	}
	if errors.Is(err, errHelperMissing) {
		if uerr := h.phase(PhaseUpload, func() error { return h.upload(ctx, r) }); uerr != nil {
			return nil, &notSentError{uerr}
		}
		rep, err = h.callOnce(ctx, r, verb, req)
	}
	return rep, err
}

func (h *Tx) callOnce(ctx context.Context, r remote.Runner, verb string, req *wire.Request) (*wire.Report, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := wire.HelperCommand(h.sha, verb)
	h.res.RoundTrips++
	h.res.HostProcesses++ // the shell, which execs the helper
	out, err := remote.Output(ctx, r, cmd, in)
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Status == wire.ExitHelperMissing {
		return nil, errHelperMissing
	}
	if errors.As(err, &ee) && ee.Status == wire.ExitHelperTampered {
		why, _, _ := strings.Cut(strings.TrimSpace(ee.Stderr), "\n")
		if len(why) > 300 {
			why = why[:300] + "..."
		}
		return nil, &tamperedError{h.helper, why}
	}
	if errors.As(err, &ee) && unstarted(ee) && ctx.Err() == nil && !h.helperIntact {
		if verr := h.verifyHelper(ctx, r, err); verr != nil {
			return nil, verr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("helper %s: %w", verb, err)
	}
	var rep wire.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("helper %s: %w: %v (%.200q)", verb, errUnreadable, err, out)
	}
	if rep.Version != wire.ProtocolVersion {
		return nil, fmt.Errorf("helper %s: protocol version %d, want %d", verb, rep.Version, wire.ProtocolVersion)
	}
	return &rep, nil
}

// unstarted reports whether a helper call may have died before the
// helper's own check ran: killed by a signal (a truncated binary faults in
// its runtime), or sh could not execute it (126, 127), or sh read it as a
// script (2, a syntax error).
func unstarted(ee *remote.ExitError) bool {
	return ee.Signal != "" || ee.Status == 126 || ee.Status == 127 || ee.Status == 2
}

// verifyHelper checks the helper file the slow way after a call died
// without a report (see wire.HelperVerifyCommand): a *tamperedError or
// errHelperMissing when it was not intact (moved aside: upload and run
// again), nil when it is intact or cannot be checked (the call's own
// error stands).
func (h *Tx) verifyHelper(ctx context.Context, r remote.Runner, callErr error) error {
	h.res.RoundTrips++
	h.res.HostProcesses += 3 // the shell, sha256sum, cut
	_, err := remote.Output(ctx, r, wire.HelperVerifyCommand(h.sha), nil)
	var ee *remote.ExitError
	switch {
	case errors.As(err, &ee) && ee.Status == wire.ExitHelperTampered:
		why, _, _ := strings.Cut(strings.TrimSpace(ee.Stderr), "\n")
		var ce *remote.ExitError
		if errors.As(callErr, &ce) {
			how := fmt.Sprintf("exit status %d", ce.Status)
			if ce.Signal != "" {
				how = "killed by signal " + ce.Signal
			}
			why = fmt.Sprintf("it could not run (%s): %s", how, why)
		}
		return &tamperedError{h.helper, why}
	case errors.As(err, &ee) && ee.Status == wire.ExitHelperMissing:
		return errHelperMissing
	case err == nil:
		h.helperIntact = true // a later crash on this host is not the file's: no second check
	}
	return nil
}

func (h *Tx) upload(ctx context.Context, r remote.Runner) error {
	h.res.RoundTrips++
	if _, err := remote.Output(ctx, r, `umask 077; mkdir -p `+wire.HelperDir+` && chmod 0700 /var/lib/lifeline `+wire.HelperDir, nil); err != nil {
		return fmt.Errorf("create %s: %w", wire.HelperDir, err)
	}
	h.res.RoundTrips += 2            // write + verify
	h.res.HostProcesses += 3 + 1 + 2 // shell, mkdir, chmod; sftp-server; shell, sha256sum
	h.res.Uploaded += int64(len(h.data))
	if err := remote.Upload(ctx, r, h.data, h.helper, 0o700); err != nil {
		return fmt.Errorf("upload helper: %w", err)
	}
	return nil
}

func (h *Tx) absorb(rep *wire.Report) {
	h.res.HostPhases = append(h.res.HostPhases, rep.Phases...)
	if rep.Preflight != nil {
		h.res.Preflight = rep.Preflight
	}
	h.res.HostProcesses += rep.Spawned
	if rep.Begin != nil && rep.Begin.Detect != nil {
		h.res.Backends = rep.Begin.Detect.Active
	}
	if !rep.Deadline.IsZero() {
		h.res.Deadline = rep.Deadline
	}
}

// retryable reports whether a fresh connection's failure may be transient
// (network, timeout, a connection dropped mid-call) rather than a refusal
// that repeating cannot change (host key, authentication, no sudo).
func retryable(err error) bool {
	switch {
	case errors.Is(err, remote.ErrHostKeyMismatch), errors.Is(err, remote.ErrHostKeyUnknown),
		errors.Is(err, remote.ErrAuth), errors.Is(err, context.Canceled):
		return false
	}
	return isTransport(err)
}

// isTransport reports whether err is a connection problem (the command may
// or may not have run) rather than an answer from the host.
func isTransport(err error) bool {
	var ee *remote.ExitError
	var he *wire.Error
	switch {
	case errors.As(err, &ee), errors.As(err, &he), errors.As(err, new(*notSentError)),
		errors.Is(err, remote.ErrNoSudo), errors.Is(err, errHelperMissing):
		return false
	}
	return !errors.Is(err, errUnreadable)
}

// notSentError: the helper verb was never started (its upload failed).
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// errUnreadable marks a helper answer that arrived but could not be read.
var errUnreadable = errors.New("unreadable helper report")
