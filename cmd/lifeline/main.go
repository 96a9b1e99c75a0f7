// Command lifeline changes firewalls on remote Linux hosts over SSH without
// ever locking the operator out. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes: the one switch, documented in the root command's help.
const (
	exitOK        = 0
	exitFailure   = 1   // some host did not end confirmed / the command failed on some host
	exitUsage     = 2   // bad flags, unknown target, unreadable file
	exitCancelled = 130 // interrupted (Ctrl-C)
)

// globals are the flags every command shares.
type globals struct {
	inventory string // -i
	sshConfig string // -F
	acceptNew bool   // --accept-new
	jsonOut   bool   // --json
	verbose   bool   // -v
	// jsonStream is apply's --json-stream: JSON lines as things happen.
	jsonStream bool
	stdout     io.Writer
	stderr     io.Writer
	stdin      io.Reader
	// args are the command line (main sets them): a flag error can come
	// before --json is parsed, and is still printed as JSON then.
	args []string

	printerOnce sync.Once
	out         printer // see printer(); every command's output goes through it
}

// subcommands is filled by each command's file (init), so that every command
// lives in its own file and the root does not change when one is added.
var subcommands []func(*globals) *cobra.Command

// usageError marks an error caused by how lifeline was called (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// failedError marks a command that ran but did not succeed on every host;
// its details were already printed (exit 1, no extra message).
type failedError struct{ msg string }

func (e failedError) Error() string { return e.msg }

// failedCodeError is a failedError with an exit status of its own
// (conntrack: 2 when a host could not be asked).
type failedCodeError struct {
	failedError
	code int
}

func (e failedCodeError) Unwrap() error { return e.failedError }

// shellExitError passes a confirmed shell's non-zero exit status through
// as lifeline's own.
type shellExitError struct{ code int }

func (e shellExitError) Error() string { return fmt.Sprintf("the shell exited %d", e.code) }

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "lifeline",
		Short: "Change firewalls over SSH without locking yourself out",
		Long: `lifeline changes the firewall (nftables or iptables) of one host or a whole
fleet over SSH. Every change is a transaction: the host snapshots its ruleset,
arms a revert timer and a kernel guard, applies the change atomically, and
keeps it only when a fresh SSH connection proves you can still get in.

Exit codes:
  0    every host ended as asked (confirmed, or the command succeeded)
  1    at least one host failed, reverted, was refused or is unknown
  2    usage error: unknown or bad flag, missing argument, unknown target,
       unreadable file (conntrack: also a host that could not be asked)
  130  interrupted

Output: results go to stdout, diagnostics to stderr. With --json, stdout
holds exactly one JSON document: the command's result or, when the command
failed before having one, an error object:

  {"error": {"message": "...", "hint": "...", "code": "usage", "exit": 2}}

code is usage (exit 2), failed (1: some host did not end as asked), error
(1: the command itself failed) or interrupted (130); hint is there when
there is something to do. apply --json-stream prints one JSON object per
line instead: {"type":"event",...} as hosts progress, then one
{"type":"result",...} or {"type":"error","error":{...}}.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetIn(g.stdin)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.inventory, "inventory", "i", os.Getenv("LIFELINE_INVENTORY"), "inventory file: lifeline YAML, Ansible INI or Ansible YAML (default: $LIFELINE_INVENTORY)")
	pf.StringVarP(&g.sshConfig, "ssh-config", "F", "", "ssh_config file (default: ~/.ssh/config and /etc/ssh/ssh_config)")
	pf.BoolVar(&g.acceptNew, "accept-new", false, "trust and record unknown host keys (like StrictHostKeyChecking=accept-new); a changed key is still refused")
	pf.BoolVar(&g.jsonOut, "json", false, "print machine-readable JSON on stdout")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "print diagnostics (config resolution, timings) on stderr")
	for _, sub := range subcommands {
		root.AddCommand(sub(g))
	}
	setupCompletion(g, root)
	showVersion := root.Flags().Bool("version", false, "print the version (as lifeline version does) and exit")
	// Every way of calling lifeline wrongly exits 2: a bad flag or flag
	// value, a wrong number of arguments, an unknown command.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		g.jsonFromArgs()
		return usageError{fmt.Errorf("%w (hint: %s --help)", err, c.CommandPath())}
	})
	argsAreUsage(root)
	root.Args = cobra.ArbitraryArgs
	root.SuggestionsMinimumDistance = 2
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if *showVersion && len(args) == 0 {
			return printVersion(g)
		}
		if len(args) == 0 {
			return cmd.Help()
		}
		hint := "lifeline --help lists the commands"
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			hint = "did you mean " + strings.Join(s, ", ") + "?"
		}
		return usagef("unknown command %q (hint: %s)", args[0], hint)
	}
	// root runs only to refuse unknown commands: its usage keeps showing
	// "lifeline [command]" alone
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable .HasParent}}", 1))
	return root
}

// argsAreUsage makes the argument check of cmd and every command below it
// return usage errors.
func argsAreUsage(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				name := strings.TrimPrefix(c.CommandPath(), "lifeline ")
				return usageError{fmt.Errorf("%s: %w (hint: %s --help)", name, err, c.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		argsAreUsage(sub)
	}
}

// jsonFromArgs sets --json and --json-stream from the raw command line
// when flag parsing stopped before reaching them.
func (g *globals) jsonFromArgs() {
	for _, a := range g.args {
		switch a {
		case "--":
			return
		case "--json", "--json=true":
			g.jsonOut = true
		case "--json-stream", "--json-stream=true":
			g.jsonStream = true
		}
	}
}

func main() {
	if runHidden() {
		return
	}
	g := &globals{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, args: os.Args[1:]}
	ctx, stop := interruptContext(g.stderr)
	defer stop()
	root := newRootCmd(g)
	err := root.ExecuteContext(ctx)
	os.Exit(exitCode(g, err))
}

// interruptContext cancels on the first SIGINT/SIGTERM (stop scheduling, let
// in-flight transactions finish their protocol) and exits 130 on the second.
func interruptContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		fmt.Fprintln(stderr, "lifeline: interrupted: no new hosts will start; hosts in flight finish their transaction (press Ctrl-C again to quit now)")
		cancel()
		<-ch
		fmt.Fprintln(stderr, "lifeline: interrupted again: quitting; armed hosts revert by themselves at their deadline")
		os.Exit(exitCancelled)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// exitCode is the one switch from a command's error to the exit status;
// it has the printer print the error (see printer.Error).
func exitCode(g *globals, err error) int {
	if err == nil {
		return exitOK
	}
	var fe failedError
	var ue usageError
	var se shellExitError
	var fc failedCodeError
	code := exitFailure
	switch {
	case errors.As(err, &se):
		return se.code // the shell's own status: nothing to print
	case errors.As(err, &fc):
		code = fc.code
	case errors.As(err, &fe):
		code = exitFailure
	case errors.As(err, &ue):
		code = exitUsage
	case errors.Is(err, context.Canceled):
		code = exitCancelled
	}
	g.printer().Error(err, code)
	return code
}
