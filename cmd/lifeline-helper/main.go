// Command lifeline-helper is lifeline's on-host helper: a small static
// binary the workstation uploads and runs over SSH.
//
//	lifeline-helper VERB [--state-dir /var/lib/lifeline] [--tx ID] [--gen N]
//
// Workstation verbs (detect, diff, begin, stage, extend, confirm, status,
// abort) read one wire.Request as JSON on stdin (empty stdin is an empty
// request) and write one wire.Report as JSON on stdout. The trace verb
// reads one Request line, then streams wire.TraceLine JSON lines until
// its duration passes or its stdin closes. Internal verbs
// (revert, watchdog) are started by the host's own timer with --tx and
// --gen (the timer's generation) and read nothing.
//
// Exit status: 0 whenever a Report was written, refusals included; 2 for a
// usage error; 1 when no report could be produced (stderr says why).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lifeline-dev/lifeline/revert"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "usage: lifeline-helper VERB [--state-dir DIR] [--tx ID] [--gen N] < request.json")
		return exitUsage
	}
	verb := args[0]
	internal := verb == revert.VerbRevert || verb == revert.VerbWatchdog
	// The watchdog outlives the SSH session, and a verb that started should
	// finish rather than die half-way when the session drops: ignore hangups.
	signal.Ignore(syscall.SIGHUP)
	fs := flag.NewFlagSet("lifeline-helper "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", revert.DefaultStateDir, "state folder (lock, transactions)")
	txID := fs.String("tx", "", "transaction id (internal verbs; overrides the request's)")
	gen := fs.Int("gen", 0, "internal verbs: the timer generation that runs them (0 at begin, +1 per extend)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lifeline-helper: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}

	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "lifeline-helper: find own binary: %v\n", err)
		return exitFailed
	}
	// Before reading the request or touching anything: is this file the
	// helper its name promises, in folders only root controls? The
	// workstation's wrapper only checked (with shell builtins) that it is
	// an executable regular file, not a symlink.
	self := calledAs(os.Args[0], exe)
	if !internal {
		if why := selfCheck(self, "/proc/self/exe"); why != "" {
			msg := fmt.Sprintf("lifeline: helper %s: %s: moved aside", self, why)
			if err := moveAside(self); err != nil {
				msg = fmt.Sprintf("lifeline: helper %s: %s: could not move it aside (%v)", self, why, err)
			}
			fmt.Fprintln(stderr, msg)
			return revert.ExitHelperTampered
		}
	}
	repaired, derr := secureHelperDirs(self)
	if derr != nil && !internal {
		if verb == revert.VerbTrace {
			fmt.Fprintf(stderr, "lifeline-helper: %v\n", derr)
			return exitFailed
		}
		pe, ok := derr.(*revert.Error)
		if !ok {
			pe = &revert.Error{Code: revert.CodeInternal, Message: derr.Error()}
		}
		host, _ := os.Hostname()
		return writeReport(stdout, stderr, &revert.Report{Version: revert.ProtocolVersion, Verb: verb, Hostname: host, State: revert.StateNone, Error: pe})
	}

	req := &revert.Request{}
	if !internal && verb != revert.VerbTrace { // trace reads its own request line
		if err := readRequest(stdin, req); err != nil {
			fmt.Fprintf(stderr, "lifeline-helper: read request: %v\n", err)
			return exitFailed
		}
	}
	if *txID != "" {
		req.TxID = *txID
	}
	if internal {
		req.TimerGen = *gen
	}
	if internal && req.TxID == "" {
		fmt.Fprintf(stderr, "lifeline-helper: %s needs --tx ID\n", verb)
		return exitUsage
	}

	// the watchdog runs in /: keep its state dir meaningful there
	if abs, err := filepath.Abs(*stateDir); err == nil {
		*stateDir = abs
	}
	env := revert.Env{
		StateDir: *stateDir,
		Firewall: newFirewall(*stateDir),
		Armer:    revert.NewArmer(revert.ArmerOptions{Exe: exe, StateDir: *stateDir, Env: os.Environ()}),
	}
	// syslog is a bonus: a host without /dev/log still gets the tx log
	if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "lifeline-helper"); err == nil {
		defer w.Close()
		env.Syslog = w
	}
	if internal {
		// The timer starts this binary directly, without the wrapper: a
		// failed check is logged loudly but the revert still runs: not
		// reverting is worse. (The state folder's own check in
		// revert.Handle still refuses records another user could write.)
		msgs := repaired
		if derr != nil {
			msgs = append(msgs, derr.Error())
		}
		if why := selfCheck(self, "/proc/self/exe"); why != "" {
			msgs = append(msgs, "lifeline-helper: "+self+": "+why)
		}
		for _, msg := range msgs {
			fmt.Fprintln(stderr, msg)
			if env.Syslog != nil {
				_ = env.Syslog.Crit(msg + ": running the " + verb + " anyway")
			}
		}
	}
	if verb == revert.VerbTrace {
		// A workstation that went away closes our stdout: get EPIPE
		// rather than die of SIGPIPE with the trace rules still in.
		signal.Ignore(syscall.SIGPIPE)
		if err := revert.Trace(context.Background(), *txID, stdin, stdout, env); err != nil {
			fmt.Fprintf(stderr, "lifeline-helper: write trace report: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	rep := revert.Handle(context.Background(), verb, req, env)
	rep.Warnings = append(repaired, rep.Warnings...)
	return writeReport(stdout, stderr, rep)
}

func writeReport(stdout, stderr io.Writer, rep *revert.Report) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		fmt.Fprintf(stderr, "lifeline-helper: write report: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// readRequest decodes one Request; empty input is an empty Request.
func readRequest(r io.Reader, req *revert.Request) error {
	err := json.NewDecoder(r).Decode(req)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// calledAs is the path the helper was started by: argv[0] when it is an
// absolute path named by a hash (the wrapper and the timer exec the file
// by its full path), else exe. Unlike /proc/self/exe it keeps the name
// when another helper process moved the file aside meanwhile, so that the
// check is not skipped for want of a hash name.
func calledAs(arg0, exe string) string {
	if b, err := hex.DecodeString(filepath.Base(arg0)); err == nil && len(b) == sha256.Size && filepath.IsAbs(arg0) {
		return arg0
	}
	return exe
}

// selfCheck checks the helper file exe when its name is a sha256 (as
// under /var/lib/lifeline/bin, where the workstation runs it): the file is
// a regular file owned by root (or the user running it) that group and
// others cannot write, and image (the running program: /proc/self/exe)
// hashes to that name. It returns "" when all holds or the name is not a
// hash (a helper run by hand), else why not, for a message.
func selfCheck(exe, image string) string {
	name := filepath.Base(exe)
	if b, err := hex.DecodeString(name); err != nil || len(b) != sha256.Size {
		return ""
	}
	fi, err := os.Lstat(exe)
	if err != nil {
		return fmt.Sprintf("cannot check it: %v", err)
	}
	if why := fileTrust(fi); why != "" {
		return why
	}
	f, err := os.Open(image)
	if err != nil {
		return fmt.Sprintf("cannot check it against its sha256: %v", err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return fmt.Sprintf("cannot check it against its sha256: %v", err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != name {
		return "it does not match its sha256 (it is " + got + "): tampered with or corrupt"
	}
	return ""
}

// fileTrust says why the helper file fi cannot be trusted, "" if it can.
func fileTrust(fi os.FileInfo) string {
	if !fi.Mode().IsRegular() {
		return "it is not a regular file"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("it is owned by uid %d, not root", st.Uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Sprintf("it is writable by group or others (mode %04o)", perm)
	}
	return ""
}

// moveAside renames the helper file exe to exe.tampered-EPOCH, as the
// wrapper does, so that the workstation uploads a fresh one and the odd
// file stays for inspection.
func moveAside(exe string) error {
	return os.Rename(exe, fmt.Sprintf("%s.tampered-%d", exe, time.Now().Unix()))
}

// secureHelperDirs checks the helper's folder and the one above it (the
// state folder under /var/lib/lifeline) by revert's trust rule, repairing
// a too-open mode of a folder root owns. Only for a helper named by its
// hash, as the workstation runs it.
func secureHelperDirs(exe string) (repaired []string, err error) {
	name := filepath.Base(exe)
	if b, err := hex.DecodeString(name); err != nil || len(b) != sha256.Size {
		return nil, nil
	}
	dir := filepath.Dir(exe)
	for _, d := range []string{filepath.Dir(dir), dir} {
		w, err := revert.SecureDir(d)
		if err != nil {
			return repaired, err
		}
		if w != "" {
			repaired = append(repaired, w)
		}
	}
	return repaired, nil
}
