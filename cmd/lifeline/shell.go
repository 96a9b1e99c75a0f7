package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/session"
)

type shellOptions struct {
	window      time.Duration
	heartbeat   time.Duration
	revertGrace time.Duration
	protect     []string
	onRevert    []string
	yes         bool
	force       bool
}

func init() { subcommands = append(subcommands, newShellCmd) }

// minHeartbeat keeps lifeline's fresh connections under the rate limits
// hosts put on new SSH connections: ufw limit (6 in 30 s from one address),
// fail2ban's sshd jail, sshd's MaxStartups.
const minHeartbeat = 5 * time.Second

func newShellCmd(g *globals) *cobra.Command {
	o := &shellOptions{}
	cmd := &cobra.Command{
		Use:   "shell HOST",
		Short: "An interactive SSH session in which every change is guarded: cut off, the host reverts by itself",
		Long: `shell opens a real interactive SSH session (a terminal, your login shell,
window resizes, Ctrl-C on the host) inside a guarded transaction:

  begin (snapshot every firewall family and the --protect files, arm the
  revert for now + --window) → your session → at exit, what changed, then
  "keep these changes?" → confirm from a NEW connection, or revert now

While the session is open, every --heartbeat lifeline proves that a fresh
connection (new TCP, new handshake, same jump path, never this session's)
still gets in, and only then moves the host's deadline --window ahead. When
a heartbeat fails, a warning appears on its own line with the time left;
fix what you broke, or the host reverts. If you are cut off (laptop dies,
network gone, ssh client killed), the heartbeats stop and the host reverts
by itself at the deadline: the firewall, the protected files, then each
--on-revert command, in that order.

What a revert restores: the netfilter state of every family (Docker and
kube-proxy chains kept live), and the files named with --protect (content,
mode, owner; removed if they did not exist). Not packages or services
(hence --on-revert, e.g. 'systemctl restart ssh'), nor routes and addresses
unless a protected file and an on-revert command bring them back.

Each heartbeat is one new SSH connection: keep --heartbeat at 5s or more
(the default 15s stays well under ufw limit's 6 per 30 s, fail2ban's sshd
jail and sshd's MaxStartups).`,
		Example: `  lifeline shell web01
  lifeline shell web01 --window 2m --protect /etc/ssh/sshd_config --on-revert 'systemctl restart ssh'
  lifeline shell db01 --yes          # keep the changes at exit without asking`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShell(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.window, "window", 60*time.Second, "how long the host waits for the next proof before it reverts (5s to 24h)")
	f.DurationVar(&o.heartbeat, "heartbeat", 15*time.Second, "how often a fresh connection proves access and renews the window (at least 5s, at most half the window)")
	f.StringArrayVar(&o.protect, "protect", nil, "a file (absolute path) restored with the firewall on revert: content, mode, owner; removed if it did not exist (repeatable)")
	f.StringArrayVar(&o.onRevert, "on-revert", nil, "a command (sh -c, as root) every revert runs after restoring, e.g. 'systemctl restart ssh' (repeatable, in order)")
	f.BoolVar(&o.yes, "yes", false, "keep the changes at exit without asking (a fresh connection must still get in)")
	f.BoolVar(&o.force, "force", false, "open the shell even when the live ruleset has base chains the kernel guard cannot cover")
	f.DurationVar(&o.revertGrace, "revert-grace", 45*time.Second, "when locked out, how long after the deadline to keep looking for the host's own revert (1s to 1h)")
	return cmd
}

func runShell(ctx context.Context, g *globals, o *shellOptions, pattern string) error {
	if err := checkWindow("--window", o.window, o.revertGrace); err != nil {
		return err
	}
	if o.heartbeat < minHeartbeat || o.heartbeat > o.window/2 {
		return usagef("--heartbeat %s: want at least %s and at most half the --window (%s), so that a lost heartbeat can be retried before the deadline", o.heartbeat, minHeartbeat, o.window/2)
	}
	inv, hosts, err := resolveTargets(g, pattern, "")
	if err != nil {
		return err
	}
	if len(hosts) != 1 {
		return usagef("shell needs exactly one host; %q is %d", pattern, len(hosts))
	}
	h := hosts[0]

	in := newLineFeed(g.stdin)
	fd, isTTY := terminalFd(g.stdin)
	width, height := 80, 24
	if isTTY {
		if w, ht, err := term.GetSize(fd); err == nil {
			width, height = w, ht
		}
	}
	resize := make(chan remote.WindowSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for range winch {
			if w, ht, err := term.GetSize(fd); err == nil {
				select {
				case resize <- remote.WindowSize{Width: w, Height: ht}:
				default:
				}
			}
		}
	}()

	var restore func()
	notify := func(msg string) {
		fmt.Fprintf(g.stderr, "\r\n\x1b[1;33mlifeline: %s\x1b[0m\r\n", textsafe.Escape(msg))
	}
	stdin := in.session()
	ch := &session.ShellChange{
		Window: o.window, Heartbeat: o.heartbeat, Force: o.force,
		Term:  remote.Pty{Term: os.Getenv("TERM"), Width: width, Height: height, Resize: resize},
		Stdin: stdin, Stdout: g.stdout, Stderr: g.stderr,
		Notify:     notify,
		Protection: session.Protection{Protect: o.protect, OnRevert: o.onRevert},
		Decide: func(changes string) bool {
			fmt.Fprintf(g.stderr, "lifeline: what changed on %s since the shell began:\n%s", h.Name, textsafe.Text(ensureNL(changes)))
			if o.yes {
				return true
			}
			fmt.Fprintf(g.stderr, "keep these changes on %s? [y/N] ", h.Name)
			ans, _ := in.line()
			a := strings.ToLower(strings.TrimSpace(ans))
			return a == "y" || a == "yes"
		},
	}
	runID, runDir, endRun := startRun(g)
	defer endRun()
	s := session.New(sessionDialer{newDialer(g, inv)}, session.Options{
		ConfirmTimeout: o.window, RevertGrace: o.revertGrace,
		Origin: origin(runID) + " shell", RunID: runID, RunDir: runDir, History: historyHook(g),
		NewChange: func(session.Target) session.Change { return ch },
		Events: func(e session.Event) {
			// before the session and after it: progress on stderr
			if e.Status == "fail" || e.Phase == session.PhaseBegin && e.Status == "info" {
				fmt.Fprintf(g.stderr, "lifeline: %s: %s\r\n", textsafe.Escape(e.Host), oneLine(textsafe.Text(e.Msg)))
			}
		},
	})
	tx := session.Target{Name: h.Name, SSH: targetOf(h)}
	ch.OnStart = func() {
		if isTTY { // raw only while the session runs: Ctrl-C goes to the host
			if st, err := term.MakeRaw(fd); err == nil {
				restore = func() { _ = term.Restore(fd, st) }
			}
		}
	}
	ch.OnEnd = func() {
		close(stdin.ended)
		if restore != nil {
			restore()
			restore = nil
		}
	}
	r := s.Apply(ctx, tx)
	if restore != nil {
		restore()
	}
	fmt.Fprintf(g.stderr, "lifeline: %s: %s (tx %s)%s\n", textsafe.Escape(r.Host), r.Outcome, r.TxID, errSuffix(r))
	switch {
	case r.Outcome == session.Confirmed && ch.Exit != 0:
		return shellExitError{ch.Exit}
	case r.Outcome == session.Confirmed, r.Outcome == session.Reverted && ch.Declined:
		return nil
	}
	return failedError{"lifeline: the shell's changes were not kept"}
}

func errSuffix(r *session.Result) string {
	s := ""
	if r.Error != "" {
		s += ": " + oneLine(textsafe.Text(r.Error))
	}
	if r.Hint != "" {
		s += " (hint: " + oneLine(textsafe.Text(r.Hint)) + ")"
	}
	return s
}

func ensureNL(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// terminalFd is stdin's file descriptor when it is a terminal.
func terminalFd(r io.Reader) (int, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

// lineFeed reads stdin once, in one goroutine, and hands it to the shell
// session while it runs (which ends the session's stdin when it closes),
// then to the "keep?" question: no keystroke is eaten by a copy that
// outlived the session.
type lineFeed struct {
	ch  chan []byte
	buf []byte
	eof bool
}

func newLineFeed(r io.Reader) *lineFeed {
	f := &lineFeed{ch: make(chan []byte, 16)}
	go func() {
		for {
			b := make([]byte, 4096)
			n, err := r.Read(b)
			if n > 0 {
				f.ch <- b[:n]
			}
			if err != nil {
				close(f.ch)
				return
			}
		}
	}()
	return f
}

// session is the shell's stdin: it ends (io.EOF) once ended is closed.
func (f *lineFeed) session() *sessionReader { return &sessionReader{f: f, ended: make(chan struct{})} }

// line reads up to a newline (or the end of input).
func (f *lineFeed) line() (string, error) {
	for {
		if i := strings.IndexByte(string(f.buf), '\n'); i >= 0 {
			l := string(f.buf[:i])
			f.buf = f.buf[i+1:]
			return l, nil
		}
		if f.eof {
			l := string(f.buf)
			f.buf = nil
			return l, io.EOF
		}
		b, ok := <-f.ch
		if !ok {
			f.eof = true
			continue
		}
		f.buf = append(f.buf, b...)
	}
}

type sessionReader struct {
	f     *lineFeed
	ended chan struct{}
}

func (s *sessionReader) Read(p []byte) (int, error) {
	select {
	case <-s.ended:
		return 0, io.EOF
	default:
	}
	if len(s.f.buf) > 0 {
		n := copy(p, s.f.buf)
		s.f.buf = s.f.buf[n:]
		return n, nil
	}
	select {
	case b, ok := <-s.f.ch:
		if !ok {
			return 0, io.EOF
		}
		n := copy(p, b)
		s.f.buf = append(s.f.buf, b[n:]...)
		return n, nil
	case <-s.ended:
		return 0, io.EOF
	}
}
