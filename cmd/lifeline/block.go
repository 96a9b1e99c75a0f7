package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/blockcheck"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

func init() { subcommands = append(subcommands, newBlockCmd, newUnblockCmd, newSetsCmd) }

type blockOptions struct {
	rolloutFlags
	set    string
	ttl    time.Duration
	force  bool
	window time.Duration
}

const blockLong = `block adds addresses and CIDRs to a block set on every targeted host, whose
one rule drops their packets (any port, any protocol):

  nft hosts        table inet lifeline: set NAME (and NAME6 for IPv6), flags
                   interval,timeout, and a base chain input (priority
                   filter - 10) with "ip saddr @NAME drop"
  iptables hosts   ipset lifeline-NAME hash:net (and lifeline-NAME-v6), and
                   "-m set --match-set lifeline-NAME src -j DROP" in chain
                   LIFELINE-BLOCK, jumped to from the top of INPUT

Before anything changes, a preflight builds each host's state with the new
elements and follows the operator's SSH paths through it: your address as
the host sees it (the jump host's, for a host behind ProxyJump) and your
workstation's address as the first jump host sees it. A block that would
drop one of them is refused, naming the host, the address and the CIDR.

Where the set and its rule exist, adding elements is one atomic batch per
host (one nft transaction, one ipset restore) and changes no rule (outcome
done). The first block on a host creates them inside a guarded transaction
(like apply: kept only if a fresh SSH connection still gets in); --force
also runs inside one, so a forced block that locks you out is reverted.

--ttl makes the elements expire by themselves (the kernel keeps the
countdown). The bans survive a later apply and any revert: lifeline carries
its block table over like Docker's chains. They live in the kernel only: a
reboot empties them.`

func newBlockCmd(g *globals) *cobra.Command {
	o := &blockOptions{}
	cmd := &cobra.Command{
		Use:   "block TARGET CIDR...",
		Short: "Drop traffic from addresses or CIDRs on hosts, through one set; refused if it would drop your own SSH path",
		Long:  blockLong,
		Example: `  # one range on every host, for an hour
  lifeline -i lab/inventory.yaml block all 203.0.113.0/24 --ttl 1h

  # several at once, into a set of its own
  lifeline -i hosts.ini block web 198.51.100.7 2001:db8:bad::/48 --set scanners

  # what is blocked where, with the time left
  lifeline -i hosts.ini sets web

  # refused because it holds your address? --force blocks it anyway, guarded:
  # if the fresh connection cannot get in, the host reverts it
  lifeline block h01 10.0.0.0/8 --force`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBlock(cmd.Context(), g, o, args[0], args[1:], false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.set, "set", wire.DefaultBlockSet, "the block set (`NAME`: 1-16 of a-z, 0-9, _)")
	f.DurationVar(&o.ttl, "ttl", 0, "each element expires by itself after this (whole seconds; 0: until unblocked)")
	f.BoolVar(&o.force, "force", false, "block even what the preflight refuses, inside a guarded transaction that reverts unless a fresh connection gets in (also accepts base chains the kernel guard cannot cover, like exec --force)")
	f.DurationVar(&o.window, "window", 60*time.Second, "revert deadline of the guarded transaction (first creation, --force), on the host's clock (5s to 24h)")
	o.rolloutFlags.add(f, "the block")
	return cmd
}

func newUnblockCmd(g *globals) *cobra.Command {
	o := &blockOptions{}
	cmd := &cobra.Command{
		Use:   "unblock TARGET CIDR...",
		Short: "Remove addresses or CIDRs from a block set on hosts (one atomic batch each)",
		Long: `unblock removes the elements from the block set on every targeted host, in
one atomic batch per host (changing no rule). Give each element as it was
blocked (lifeline sets lists them); those not in the set are reported absent.`,
		Example: `  lifeline -i lab/inventory.yaml unblock all 203.0.113.0/24
  lifeline -i hosts.ini unblock web 198.51.100.7 --set scanners`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBlock(cmd.Context(), g, o, args[0], args[1:], true)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.set, "set", wire.DefaultBlockSet, "the block set (`NAME`)")
	f.IntVar(&o.forks, "forks", 20, "hosts changed in parallel")
	f.StringVar(&o.limit, "limit", "", "further limit the targeted hosts (same pattern grammar)")
	o.serial, o.revertGrace = "", 45*time.Second
	return cmd
}

func runBlock(ctx context.Context, g *globals, o *blockOptions, pattern string, args []string, remove bool) error {
	if err := wire.CheckBlockSet(o.set); err != nil {
		return usagef("--set: %s", err.(*wire.Error).Message)
	}
	if o.ttl < 0 || o.ttl > wire.MaxBlockTTL || o.ttl%time.Second != 0 || o.ttl > 0 && o.ttl < time.Second {
		return usagef("--ttl %s: give whole seconds, 1s to %s", o.ttl, wire.MaxBlockTTL)
	}
	if !remove {
		if err := checkWindow("--window", o.window, o.revertGrace); err != nil {
			return err
		}
	}
	var cidrs []string
	seen := map[string]bool{}
	for _, a := range args {
		_, n, err := wire.NormalizeCIDR(a)
		if err != nil {
			return usagef("%v", err)
		}
		if !seen[n] {
			seen[n] = true
			cidrs = append(cidrs, n)
		}
	}
	if len(cidrs) > wire.MaxBlockCIDRs {
		return usagef("%d CIDRs, at most %d at once", len(cidrs), wire.MaxBlockCIDRs)
	}
	plan, inv, hosts, err := o.resolve(g, pattern)
	if err != nil || len(hosts) == 0 {
		return err
	}
	targets := sessionTargets(hosts)
	spec := &session.BlockSpec{Set: o.set, CIDRs: cidrs, TTL: o.ttl, Remove: remove, Force: o.force, Check: blockcheck.Check}
	tool := " block"
	if remove {
		tool = " unblock"
	}
	return runRollout(ctx, g, inv, targets, &o.rolloutFlags, plan, tool, session.Options{ConfirmTimeout: o.window, Force: o.force, Block: spec})
}

// ---- sets ----

type setsOptions struct{ readOptions }

// setElement is one element of a set on one host.
type setElement struct {
	Element string `json:"element"`
	// TTL: seconds left before it expires by itself (0: none).
	TTL int64 `json:"ttl_s,omitempty"`
}

type hostSet struct {
	Host     string       `json:"host"`
	Set      string       `json:"set"`   // nft: "inet lifeline blocked"; ipset: its name
	Owner    string       `json:"owner"` // lifeline, fail2ban, crowdsec
	Source   string       `json:"source"`
	Type     string       `json:"type"`
	Elements []setElement `json:"elements"`
}

type setsDoc struct {
	Sets   []hostSet         `json:"sets"`
	Errors map[string]string `json:"errors,omitempty"`
}

func newSetsCmd(g *globals) *cobra.Command {
	o := &setsOptions{}
	cmd := &cobra.Command{
		Use:   "sets TARGET",
		Short: "List the block sets of hosts (lifeline's, fail2ban's, CrowdSec's) with their elements and time left",
		Long: `sets reads every targeted host's state and lists the address sets that block
traffic: lifeline's own (lifeline block), fail2ban's and CrowdSec's, nft sets
and ipsets alike, each element with the seconds it has left when it expires
by itself. It changes nothing.`,
		Example: `  lifeline -i lab/inventory.yaml sets all
  lifeline -i hosts.ini sets web --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runSets(cmd.Context(), g, o, args[0]) },
	}
	o.flags(cmd)
	return cmd
}

func runSets(ctx context.Context, g *globals, o *setsOptions, pattern string) error {
	reads, err := readHosts(ctx, g, &o.readOptions, pattern, nil)
	if reads == nil {
		return err
	}
	doc := setsDoc{Sets: []hostSet{}}
	for _, r := range reads {
		if r.err != nil {
			if doc.Errors == nil {
				doc.Errors = map[string]string{}
			}
			doc.Errors[r.host.Name] = r.err.Error()
			continue
		}
		doc.Sets = append(doc.Sets, blockSets(r.host.Name, r.rs)...)
	}
	if perr := g.printer().Result(doc, func(w io.Writer) error { return writeSets(w, doc) }); perr != nil {
		return perr
	}
	if len(doc.Errors) > 0 {
		return failedError{fmt.Sprintf("%d hosts could not be read", len(doc.Errors))}
	}
	return err
}

// blockSets are the address sets of rs that block: lifeline's,
// fail2ban's and CrowdSec's (the kernel guard's are lifeline's but not
// block sets).
func blockSets(host string, rs *ruleset.Ruleset) []hostSet {
	var out []hostSet
	add := func(id, owner string, s *ruleset.Set) {
		if strings.HasPrefix(s.Name, ruleset.GuardSetPrefix) {
			return
		}
		switch owner {
		case ruleset.OwnerLifeline, ruleset.OwnerFail2ban, ruleset.OwnerCrowdSec:
		default:
			return
		}
		hs := hostSet{Host: host, Set: id, Owner: owner, Source: string(s.Source), Type: s.Type, Elements: []setElement{}}
		for _, e := range s.Elements {
			hs.Elements = append(hs.Elements, setElement{Element: e, TTL: s.Expires[e]})
		}
		out = append(out, hs)
	}
	for _, t := range rs.Tables {
		if t.Source != ruleset.SourceNft || t.Name == ruleset.TraceTable {
			continue
		}
		owner := ruleset.OwnerOf(t.Source, t.Family, t.Name, "")
		for _, s := range t.Sets {
			add(t.Family+" "+t.Name+" "+s.Name, owner, s)
		}
	}
	for _, s := range rs.Sets {
		add(s.Name, s.Owner(), s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Set < out[j].Set })
	return out
}

func writeSets(w io.Writer, doc setsDoc) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSET\tOWNER\tELEMENT\tTTL")
	for _, s := range doc.Sets {
		if len(s.Elements) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t(empty)\t\n", textsafe.Escape(s.Host), textsafe.Escape(s.Set), s.Owner)
		}
		for _, e := range s.Elements {
			ttl := "-"
			if e.TTL > 0 {
				ttl = (time.Duration(e.TTL) * time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", textsafe.Escape(s.Host), textsafe.Escape(s.Set), s.Owner, textsafe.Escape(e.Element), ttl)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for h, e := range doc.Errors {
		fmt.Fprintf(w, "%s: %s\n", textsafe.Escape(h), textsafe.Text(e))
	}
	return nil
}

// writeBlockLines are the lines after in block's and
// unblock's table: what changed in which set.
func writeBlockLines(w io.Writer, host string, b *session.BlockResult) {
	line := func(what string, els []string, extra string) {
		if len(els) > 0 {
			fmt.Fprintf(w, "%s: %s %s (set %s%s)\n", textsafe.Escape(host), what, textsafe.Text(strings.Join(els, ", ")), textsafe.Escape(b.Set), extra)
		}
	}
	ttl := ""
	if b.TTL > 0 {
		ttl = ", ttl " + b.TTL.String()
	}
	if b.Created {
		ttl += ", set and rule created"
	}
	line("added", b.Added, ttl)
	line("removed", b.Removed, "")
	if len(b.Absent) > 0 {
		fmt.Fprintf(w, "%s: not in set %s, nothing to remove: %s\n", textsafe.Escape(host), textsafe.Escape(b.Set), textsafe.Text(strings.Join(b.Absent, ", ")))
	}
}
