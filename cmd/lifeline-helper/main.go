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
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "lifeline-helper: find own binary: %v\n", err)
		return exitFailed
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
		// The timer starts this binary directly, without the wrapper's
		// hash check: check it here. A mismatch is logged loudly but the
		// revert still runs: not reverting is worse.
		if msg := selfCheck(exe); msg != "" {
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

// selfCheck compares the sha256 of exe with its file name when that is a
// hash (as under /var/lib/lifeline/bin): "" when they match or the name is
// not a hash, else a message saying the binary was tampered with.
func selfCheck(exe string) string {
	name := filepath.Base(exe)
	if b, err := hex.DecodeString(name); err != nil || len(b) != sha256.Size {
		return ""
	}
	f, err := os.Open(exe)
	if err != nil {
		return fmt.Sprintf("lifeline-helper: cannot check %s against its sha256: %v", exe, err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return fmt.Sprintf("lifeline-helper: cannot check %s against its sha256: %v", exe, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != name {
		return fmt.Sprintf("lifeline-helper: %s does not match its sha256 (it is %s): tampered with or corrupt", exe, got)
	}
	return ""
}
