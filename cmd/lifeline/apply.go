package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/runstore"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

type applyOptions struct {
	rolloutFlags
	confirmTimeout time.Duration
	format         string
	persist        bool
	dryRun         bool
	maxRulesetSize int64
	force          bool
	noPreflight    bool
}

func init() { subcommands = append(subcommands, newApplyCmd) }

func newApplyCmd(g *globals) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply TARGET [RULESET]",
		Short: "Apply a ruleset to hosts; keep it only if a fresh SSH connection still gets in",
		Long: `apply changes the firewall of every targeted host as one guarded transaction:

  connect → upload helper (once per version) → begin (lock, validate by a trial
  load in a private netns, preflight, snapshot, arm the revert timer) → apply
  (kernel guard + atomic swap) → confirm from a NEW ssh connection

The preflight sends your SSH path (as the host sees it) through the new
ruleset in that private netns: a ruleset that would certainly lock you out is
refused before anything changes, naming the rule that drops you (--force
applies it anyway, still guarded); see lifeline preflight.

Each host ends as exactly one of:
  confirmed        the new ruleset is live and a fresh connection proved access
  reverted         the host restored its snapshot by itself (or at once, when
                   the load failed)
  refused          nothing changed (bad ruleset, lock held, host key, auth)
  unknown          the host stayed unreachable past its deadline: it restores
                   itself, and its kernel guard re-opens your address to sshd

TARGET is a host, a group, a pattern (web:&prod, web:!web03, web*) or all,
from the inventory (-i); a bare ssh_config alias works without one. RULESET is
an nft file or an iptables-save file; without it each host's own ruleset from
the inventory (host, then group, then defaults) is used. The format is taken
from --format, else the file name (.nft, .v4/.ipt, .v6), else its content.

` + runsRetentionHelp,
		Example: `  # one host, 60 s to confirm, persisted only after the confirm
  lifeline -i lab/inventory.yaml apply h01 rules.nft --persist

  # see what would change, change nothing
  lifeline -i lab/inventory.yaml apply all rules.v4 --dry-run

  # a canary first, then half, then the rest; stop after a batch with a failure
  lifeline -i hosts.ini apply web rules.nft --serial 1,50%,100% --max-fail 0

  # extra proof before confirming: the web port must answer from here
  lifeline apply web01 web.nft --check tcp://web01.example.com:443`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 2 {
				file = args[1]
			}
			return runApply(cmd.Context(), g, o, args[0], file)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.confirmTimeout, "confirm-timeout", 60*time.Second, "revert deadline after begin, on the host's clock (5s to 24h)")
	f.StringVar(&o.format, "format", "", "ruleset format: nft, iptables or ip6tables (default: from the file name or content)")
	f.BoolVar(&o.persist, "persist", false, "after the confirm, write the ruleset where the host loads it at boot")
	f.BoolVar(&o.dryRun, "dry-run", false, "show per host the diff between the live ruleset and the new one; change nothing")
	f.BoolVar(&g.jsonStream, "json-stream", false, "print every progress event as one JSON line on stdout")
	f.BoolVar(&o.force, "force", false, "apply even when the preflight finds that the ruleset would lock you out, or when it has base chains the kernel guard cannot cover (the host names them); the revert timer still protects the change")
	f.BoolVar(&o.noPreflight, "no-preflight", false, "skip the preflight at begin (the sandbox check of your SSH path through the new ruleset); the change is still guarded by the revert")
	o.rolloutFlags.add(f, "the apply")
	f.Int64Var(&o.maxRulesetSize, "max-ruleset-size", wire.DefaultMaxRulesetSize, "largest ruleset in bytes that is sent; hosts refuse a larger one")
	return cmd
}

func runApply(ctx context.Context, g *globals, o *applyOptions, pattern, file string) error {
	if err := checkWindow("--confirm-timeout", o.confirmTimeout, o.revertGrace); err != nil {
		return err
	}
	plan, inv, hosts, err := o.resolve(g, pattern)
	if err != nil || len(hosts) == 0 {
		return err
	}
	targets, err := applyTargets(hosts, file, o.format, o.maxRulesetSize)
	if err != nil {
		return err
	}
	return runRollout(ctx, g, inv, targets, &o.rolloutFlags, plan, "", session.Options{
		ConfirmTimeout: o.confirmTimeout,
		Persist:        o.persist,
		MaxRulesetSize: o.maxRulesetSize,
		Force:          o.force,
		NoPreflight:    o.noPreflight,
		DryRun:         o.dryRun,
	})
}

// applyTargets pairs every host with its ruleset text and format.
func applyTargets(hosts []*inventory.Host, file, format string, maxSize int64) ([]session.Target, error) {
	cache := map[string]string{}
	read := func(p string) (string, error) {
		if s, ok := cache[p]; ok {
			return s, nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", usagef("read ruleset: %v", err)
		}
		cache[p] = string(b)
		return string(b), nil
	}
	var out []session.Target
	for _, h := range hosts {
		path := file
		if path == "" {
			path = h.Ruleset
		}
		if path == "" {
			return nil, usagef("no ruleset for host %s: give RULESET, or set `ruleset:` for the host or one of its groups in the inventory", h.Name)
		}
		text, err := read(path)
		if err != nil {
			return nil, err
		}
		f, err := detectFormat(format, path, text)
		if err != nil {
			return nil, err
		}
		// the hosts refuse these too; refusing here spares every connection
		if err := wire.CheckRuleset(f, text, maxSize); err != nil {
			var re *wire.Error
			if errors.As(err, &re) {
				err = errors.New(re.Message)
			}
			return nil, fmt.Errorf("ruleset %s: %w; nothing was changed", path, err)
		}
		out = append(out, session.Target{Name: h.Name, SSH: targetOf(h), Ruleset: text, Format: f, FormatExplicit: format != "", RulesetPath: path})
	}
	return out, nil
}

// detectFormat: --format, else the file name, else the content.
func detectFormat(flag, path, text string) (wire.Format, error) {
	switch flag {
	case "nft", "iptables", "ip6tables":
		return wire.Format(flag), nil
	case "":
	default:
		return "", usagef("--format %q: want nft, iptables or ip6tables", flag)
	}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".nft":
		return wire.FormatNft, nil
	case ".v4", ".ipt", ".iptables":
		return wire.FormatIPTables, nil
	case ".v6", ".ip6t", ".ip6tables":
		return wire.FormatIP6Tables, nil
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "*"):
			if strings.Contains(text, "::/") || strings.Contains(text, "icmpv6") {
				return wire.FormatIP6Tables, nil
			}
			return wire.FormatIPTables, nil
		case strings.HasPrefix(line, "table ") || strings.HasPrefix(line, "flush ruleset") || strings.HasPrefix(line, "define "):
			return wire.FormatNft, nil
		}
		break
	}
	return "", usagef("cannot tell the format of %s: pass --format nft|iptables|ip6tables", path)
}

// runFolder is the run's folder under runstore.Root ("" without a home).
func runFolder(runID string) string {
	root, err := runstore.Root()
	if err != nil {
		return ""
	}
	return filepath.Join(root, runID)
}

func origin(runID string) string {
	u := "unknown"
	if cu, err := user.Current(); err == nil {
		u = cu.Username
	}
	h, _ := os.Hostname()
	return fmt.Sprintf("%s@%s run %s", u, h, runID)
}

// sessionDialer adapts the SSH dialer to session.Dialer.
type sessionDialer struct{ d *remote.Dialer }

func (s sessionDialer) Dial(ctx context.Context, t remote.Target) (remote.Runner, error) {
	c, err := s.d.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Resolve is the dialer's ssh_config resolution (how session names a
// host's path: direct or via its jump host).
func (s sessionDialer) Resolve(t remote.Target) (*remote.HostConfig, error) { return s.d.Resolve(t) }

// jsonResults is apply's --json document.
type jsonResults struct {
	RunID   string            `json:"run_id"`
	RunDir  string            `json:"run_dir,omitempty"`
	OK      bool              `json:"ok"`
	Counts  map[string]int    `json:"counts"`
	Results []*session.Result `json:"results"`
}
