package revert

import (
	"fmt"
	"slices"
	"strings"
)

// GuardChain is one base chain as the kernel guard sees it: covered (the
// guard sits at its top), skipped (the operator's SSH traffic never crosses
// it) or uncovered (it can drop SSH traffic and the guard cannot be placed
// there; Reason says why).
type GuardChain struct {
	Family string `json:"family"` // nft family, or iptables / ip6tables
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	Hook   string `json:"hook,omitempty"`
	Type   string `json:"type,omitempty"`
	Reason string `json:"reason,omitempty"`
	// WallClock: the guard rule in this chain opens by the host's wall
	// clock (iptables `-m time --datestart`), which a clock step moves,
	// not by a countdown the kernel keeps (nft set element timeouts).
	WallClock bool `json:"wall_clock,omitempty"`
}

func (c GuardChain) String() string {
	s := c.Family + " " + c.Table + " " + c.Chain
	if c.Hook != "" && !strings.EqualFold(c.Hook, c.Chain) {
		s += " (" + c.Hook + ")"
	}
	return s
}

// GuardPlan says, for a ruleset, where the kernel guard goes. Covered is
// what Apply guards; a non-empty Uncovered refuses the change unless the
// operator forces it.
type GuardPlan struct {
	Covered   []GuardChain `json:"covered,omitempty"`
	Skipped   []GuardChain `json:"skipped,omitempty"`
	Uncovered []GuardChain `json:"uncovered,omitempty"`
}

func chainNames(cs []GuardChain, withReason bool) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		s := c.String()
		if withReason && c.Reason != "" {
			s += ": " + c.Reason
		}
		out = append(out, s)
	}
	return out
}

// nftHookCrossed reports, for a base chain of family fam on hook, whether
// the operator's SSH traffic (v6: over IPv6) to or from this host crosses
// it, and whether the guard knows how to open it there. known=false is a
// hook lifeline has no guard rule for.
func nftHookCrossed(fam, hook string, v6 bool) (crossed, known bool, why string) {
	switch fam {
	case "ip":
		if v6 {
			return false, true, "IPv4 table, the operator connects over IPv6"
		}
	case "ip6":
		if !v6 {
			return false, true, "IPv6 table, the operator connects over IPv4"
		}
	case "arp":
		if v6 {
			return false, true, "ARP table, the operator connects over IPv6"
		}
		switch hook {
		case "input", "output":
			return true, true, ""
		}
		return false, false, ""
	case "inet", "bridge", "netdev":
	default:
		return false, false, ""
	}
	switch hook {
	case "forward":
		return false, true, "forwarded traffic only, not this host's own SSH"
	case "prerouting", "input", "output", "postrouting":
		return true, true, ""
	case "ingress":
		return fam == "netdev" || fam == "inet", fam == "netdev" || fam == "inet", ""
	case "egress":
		return fam == "netdev", fam == "netdev", ""
	}
	return false, false, ""
}

// Guard sets: each pins the key its rule matches on, with the deadline as
// the element's timeout, so that a rule "KEY K ... KEY != @set accept"
// never matches before the element expires and always matches after: the
// kernel alone opens the path, whatever happens to userspace.
const (
	guardSetARP = guardSet + "_arp" // ether_type { arp }
	guardSetND  = guardSet + "_nd"  // icmpv6_type { nd-neighbor-solicit, nd-neighbor-advert }
)

// nftGuardRules returns the rules the guard inserts at the top of chain c
// (the first is inserted last, so they keep this order) and the sets they
// need.
func nftGuardRules(c GuardChain, g *Guard) (rules []string, sets []string) {
	v6 := strings.Contains(g.Addr, ":")
	ipk := "ip"
	if v6 {
		ipk = "ip6"
	}
	in := true
	switch c.Hook {
	case "output", "postrouting", "egress":
		in = false
	}
	if c.Family == "arp" {
		return []string{fmt.Sprintf("meta protocol arp meta protocol != @%s accept", guardSetARP)}, []string{guardSetARP}
	}
	var tcp string
	if in {
		tcp = fmt.Sprintf("%s saddr %s tcp dport %d tcp dport != @%s accept", ipk, g.Addr, g.Port, guardSet)
	} else {
		tcp = fmt.Sprintf("%s daddr %s tcp sport %d tcp sport != @%s accept", ipk, g.Addr, g.Port, guardSet)
	}
	rules, sets = []string{tcp}, []string{guardSet}
	switch {
	case v6:
		// neighbour discovery: without it the host cannot reach the
		// operator's next hop over IPv6
		rules = append(rules, fmt.Sprintf("icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } icmpv6 type != @%s accept", guardSetND))
		sets = append(sets, guardSetND)
	case c.Family == "netdev" || c.Family == "bridge":
		// below IP: ARP crosses these chains too
		rules = append(rules, fmt.Sprintf("meta protocol arp meta protocol != @%s accept", guardSetARP))
		sets = append(sets, guardSetARP)
	}
	return rules, sets
}

// nftGuardSet declares one guard set in table t with the deadline as the
// timeout of its element(s).
func nftGuardSet(t nftTableID, name string, g *Guard) string {
	to := nftGuardTimeout(g.Remaining)
	switch name {
	case guardSetARP:
		return fmt.Sprintf("add set %s %s { type ether_type; flags timeout; elements = { arp timeout %s } }", t, name, to)
	case guardSetND:
		return fmt.Sprintf("add set %s %s { type icmpv6_type; flags timeout; elements = { nd-neighbor-solicit timeout %s, nd-neighbor-advert timeout %s } }", t, name, to, to)
	}
	return fmt.Sprintf("add set %s %s { type inet_service; flags timeout; elements = { %d timeout %s } }", t, name, g.Port, to)
}

// addNftGuard appends the guard for g.Chains to f.
func addNftGuard(f *loadFile, g *Guard) {
	declared := map[nftTableID]map[string]bool{}
	for _, c := range g.Chains {
		t := nftTableID{c.Family, c.Table}
		rules, sets := nftGuardRules(c, g)
		if declared[t] == nil {
			declared[t] = map[string]bool{}
		}
		for _, s := range sets {
			if !declared[t][s] {
				declared[t][s] = true
				f.add(nftGuardSet(t, s, g), 0)
			}
		}
		for i := len(rules) - 1; i >= 0; i-- {
			f.add(fmt.Sprintf("insert rule %s %s %s comment \"%s\"", t, nftQuoteName(c.Chain), rules[i], guardComment(g)), 0)
		}
	}
}

// nftQuoteName quotes a chain name nft would not read bare.
func nftQuoteName(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '/') {
			return `"` + s + `"`
		}
	}
	return s
}

// planNft classifies the base chains an nft ruleset leaves. got and live
// are the tables (normalised nft text) after a trial load of the live
// native tables plus the ruleset, and before; declared are the tables the
// ruleset writes as blocks (each load replaces them whole, so the confirm's
// re-apply removes the guard from them); other are live tables lifeline
// never replaces (iptables-nft's, arptables', foreign ones).
func planNft(got, live map[string]string, order []string, declared, other []nftTableID, v6 bool) *GuardPlan {
	p := &GuardPlan{}
	for _, id := range order {
		text, ok := got[id]
		if !ok {
			continue // deleted by the ruleset
		}
		_, chains := nftScan(text)
		owned := slices.Contains(other, tableOf(id)) || xtablesLike(tableOf(id), chains)
		for _, bc := range chains {
			c := GuardChain{Family: bc.table.family, Table: bc.table.name, Chain: bc.chain, Hook: bc.hook, Type: bc.typ}
			crossed, known, why := nftHookCrossed(c.Family, c.Hook, v6)
			switch {
			case !known:
				c.Reason = fmt.Sprintf("lifeline has no guard rule for the %s hook of the %s family", c.Hook, c.Family)
				p.Uncovered = append(p.Uncovered, c)
			case !crossed:
				c.Reason = why
				p.Skipped = append(p.Skipped, c)
			case slices.Contains(declared, bc.table) && !owned:
				p.Covered = append(p.Covered, c)
			case live[id] == text:
				c.Reason = "unchanged by the ruleset"
				p.Skipped = append(p.Skipped, c)
			case owned:
				c.Reason = "the table belongs to iptables-nft, arptables/ebtables or another owner: lifeline does not replace it, so it cannot remove a guard from it"
				p.Uncovered = append(p.Uncovered, c)
			default:
				c.Reason = "the ruleset changes this table without declaring it as a block (table " + bc.table.String() + " { ... }), so the confirm could not remove a guard from it"
				p.Uncovered = append(p.Uncovered, c)
			}
		}
	}
	return p
}

func tableOf(id string) nftTableID {
	fam, name, _ := strings.Cut(id, " ")
	return nftTableID{fam, name}
}

// xtablesLike reports whether lifeline would take table t, with these base
// chains, for one managed by iptables-nft, arptables-nft or ebtables-nft
// once it is live (see nftTables): such a table is never replaced whole.
func xtablesLike(t nftTableID, chains []nftBaseChain) bool {
	if t.family == "arp" && t.name == "filter" || t.family == "bridge" && (t.name == "filter" || t.name == "nat" || t.name == "broute") {
		return true
	}
	var live []nftLiveChain
	for _, c := range chains {
		live = append(live, nftLiveChain{table: c.table, name: c.chain, hook: c.hook})
	}
	return xtablesManaged(t, live)
}

// iptGuardChains names, per table, the built-in chains SSH traffic to and
// from the host crosses: input-side first, then output-side. nat counts: a
// REDIRECT or DNAT of the SSH port there diverts every new connection.
var iptGuardChains = map[string]struct{ in, out []string }{
	"filter":   {[]string{"INPUT"}, []string{"OUTPUT"}},
	"raw":      {[]string{"PREROUTING"}, []string{"OUTPUT"}},
	"mangle":   {[]string{"PREROUTING", "INPUT"}, []string{"OUTPUT", "POSTROUTING"}},
	"nat":      {[]string{"PREROUTING", "INPUT"}, []string{"OUTPUT", "POSTROUTING"}},
	"security": {[]string{"INPUT"}, []string{"OUTPUT"}},
}

// planIPTables classifies the built-in chains of the tables an iptables
// ruleset loads. family is "iptables" or "ip6tables"; crossed=false (the
// operator connects over the other IP version) skips them all.
func planIPTables(user []*iptTable, family string, crossed bool) *GuardPlan {
	p := &GuardPlan{}
	for _, t := range user {
		gc, ok := iptGuardChains[t.name]
		if !ok {
			p.Uncovered = append(p.Uncovered, GuardChain{Family: family, Table: t.name, Chain: "*",
				Reason: "lifeline has no guard rule for table " + t.name})
			continue
		}
		for _, ch := range append(slices.Clone(gc.in), gc.out...) {
			c := GuardChain{Family: family, Table: t.name, Chain: ch, Hook: strings.ToLower(ch), WallClock: true}
			if !crossed {
				c.Reason = "the operator connects over the other IP version"
				p.Skipped = append(p.Skipped, c)
				continue
			}
			p.Covered = append(p.Covered, c)
		}
	}
	return p
}

// iptGuardLines returns the guard rules for one chain of an iptables file.
func iptGuardLines(chain string, input bool, g *Guard, v6 bool) []string {
	out := []string{iptGuardRule(chain, input, g, v6)}
	if v6 {
		// neighbour discovery, or the host cannot reach the next hop
		for _, typ := range []string{"neighbour-advertisement", "neighbour-solicitation"} {
			out = append(out, fmt.Sprintf("-I %s 1 -p ipv6-icmp -m icmp6 --icmpv6-type %s -m time --datestart %s -m comment --comment \"%s\" -j ACCEPT",
				chain, typ, g.Deadline.UTC().Format("2006-01-02T15:04:05"), guardComment(g)))
		}
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
