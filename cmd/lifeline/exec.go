package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

type execOptions struct {
	rolloutFlags
	window      time.Duration
	keepOnError bool
	force       bool
	protect     []string
	onRevert    []string
	rules       string
	format      string
}

func init() { subcommands = append(subcommands, newExecCmd) }

func newExecCmd(g *globals) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec TARGET -- COMMAND...",
		Short: "Run a command on hosts as a guarded change; keep it only if a fresh SSH connection still gets in",
		Long: `exec runs COMMAND on every targeted host as one guarded transaction:

  connect → begin (lock, snapshot every firewall family, arm the revert
  timer) → stage (the kernel guard on the live ruleset) → COMMAND (as root:
  directly, or through sudo -n) → confirm from a NEW ssh connection

COMMAND's words are joined with spaces and run by sh -c on the host, like
ssh does: quote a pipeline or a list as one word ('iptables -F; iptables -P
INPUT DROP'). Its output is shown prefixed by the host and kept (the last
64 KiB of each stream) in the JSON report with its exit status.

Each host ends as exactly one of:
  confirmed   the command ran and a fresh connection proved access
  reverted    the command exited non-zero (unless --keep-on-error), or no
              fresh connection got in: the host restored its snapshot
  armed       --no-confirm: changed and left armed; lifeline confirm or
              lifeline abort it, or the host reverts by itself at the deadline
  refused     nothing changed (lock held, host key, auth, no sudo)
  unknown     unreachable past the deadline: the host restores itself

What a revert restores: the netfilter state of every family (nft and
iptables, legacy and nft) as it was at begin, with Docker/kube-proxy chains
kept live as with apply. It does not undo anything else the command did
(packages, services, routes), except the files named with --protect: those
it puts back too (content, mode, owner; a file that did not exist is
removed), then it runs each --on-revert command, in that order.

--rules FILE names the ruleset COMMAND is meant to leave (a file on this
machine, nft or iptables-save syntax; e.g. the file COMMAND loads with the
host's own tool). Before anything runs, each host's preflight evaluates it
against this connection's SSH path in a sandbox of the host's kernel, and a
host where it would certainly lock you out is refused, naming the rule
(--force runs it anyway, guarded as always). Without --rules nothing is
known of the command's effect in advance: the kernel guard and the fresh
connection protect it.

` + runsRetentionHelp,
		Example: `  # a rule typed by hand, guarded: a mistake reverts within 60 s
  lifeline exec web01 -- iptables -I INPUT -p tcp --dport 8080 -j ACCEPT

  # a whole fleet, a canary first, stop on the first failure
  lifeline -i hosts.ini exec web --serial 1,100% --max-fail 0 -- 'nft add rule inet filter input tcp dport 443 accept'

  # sshd's config: restored, and sshd restarted, if you lock yourself out
  lifeline exec web01 --protect /etc/ssh/sshd_config --on-revert 'systemctl restart ssh' -- \
    "sed -i 's/^#\\?Port .*/Port 2222/' /etc/ssh/sshd_config && systemctl restart ssh"

  # a ruleset loaded by the host's own tool, preflighted from the same file first
  lifeline exec db --rules new.v4 -- 'iptables-restore < /etc/iptables/new.v4'

  # look before keeping: leave the hosts armed, then confirm (or abort)
  lifeline exec db -- 'iptables-restore < /etc/iptables/new.v4' --no-confirm --window 5m
  lifeline confirm db`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return usagef("want TARGET -- COMMAND... (the -- is required, so that the command's own flags stay its own)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd.Context(), g, o, args[0], strings.Join(args[1:], " "))
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.window, "window", 60*time.Second, "revert deadline after begin, on the host's clock (5s to 24h): the command and the fresh connection must fit in it")
	f.BoolVar(&o.keepOnError, "keep-on-error", false, "keep the change even when the command exits non-zero (a fresh connection must still get in)")
	f.BoolVar(&g.jsonStream, "json-stream", false, "print every progress event (command output included) as one JSON line on stdout")
	f.StringArrayVar(&o.protect, "protect", nil, "a file (absolute path) the host snapshots with the firewall and restores on revert: content, mode, owner; removed if it did not exist (repeatable, at most 64, 1 MiB each)")
	f.StringArrayVar(&o.onRevert, "on-revert", nil, "a command (sh -c, as root) every revert runs after restoring the firewall and the protected files, e.g. 'systemctl restart ssh' (repeatable, in order)")
	o.rolloutFlags.add(f, "the command")
	f.BoolVar(&o.force, "force", false, "run even when the live ruleset has base chains the kernel guard cannot cover (only the revert timer then protects those), or when --rules would lock you out")
	f.StringVar(&o.rules, "rules", "", "the ruleset COMMAND is meant to leave (local file): preflighted on each host first; a certain lockout is refused before anything runs")
	f.StringVar(&o.format, "format", "", "--rules' format: nft, iptables or ip6tables (default: from the file name or content)")
	return cmd
}

func runExec(ctx context.Context, g *globals, o *execOptions, pattern, command string) error {
	if err := checkWindow("--window", o.window, o.revertGrace); err != nil {
		return err
	}
	if strings.TrimSpace(command) == "" {
		return usagef("empty command")
	}
	plan, inv, hosts, err := o.resolve(g, pattern)
	if err != nil || len(hosts) == 0 {
		return err
	}
	var rules *wire.RulesetChange
	if o.rules != "" {
		b, err := os.ReadFile(o.rules)
		if err != nil {
			return usagef("--rules: %v", err)
		}
		f, err := detectFormat(o.format, o.rules, string(b))
		if err != nil {
			return err
		}
		if err := wire.CheckRuleset(f, string(b), 0); err != nil {
			return usagef("--rules %s: %v", o.rules, err)
		}
		rules = &wire.RulesetChange{Format: f, Text: string(b), FormatExplicit: o.format != ""}
	} else if o.format != "" {
		return usagef("--format goes with --rules")
	}
	targets := sessionTargets(hosts)
	return runRollout(ctx, g, inv, targets, &o.rolloutFlags, plan, " exec", session.Options{
		ConfirmTimeout: o.window,
		NewChange: func(session.Target) session.Change {
			return &session.CommandChange{Command: command, KeepOnError: o.keepOnError, Force: o.force, Rules: rules,
				Protection: session.Protection{Protect: o.protect, OnRevert: o.onRevert}}
		},
	})
}
