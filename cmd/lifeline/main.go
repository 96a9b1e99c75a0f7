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
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
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
	stdout    io.Writer
	stderr    io.Writer
	stdin     io.Reader
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
  2    usage error: bad flag, unknown target, unreadable file
  130  interrupted`,
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
	return root
}

func main() {
	if runHidden() {
		return
	}
	g := &globals{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
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

func exitCode(g *globals, err error) int {
	if err == nil {
		return exitOK
	}
	var fe failedError
	var ue usageError
	switch {
	case errors.As(err, &fe):
		return exitFailure
	case errors.As(err, &ue):
		printError(g, err)
		return exitUsage
	case errors.Is(err, context.Canceled):
		printError(g, err)
		return exitCancelled
	default:
		printError(g, err)
		return exitFailure
	}
}

// printError prints a command's error on stderr, escaped: it can quote
// input or a host's output (see textsafe).
func printError(g *globals, err error) {
	fmt.Fprintf(g.stderr, "lifeline: %s\n", textsafe.Text(err.Error()))
}
