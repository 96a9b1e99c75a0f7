package revert

import (
	"fmt"
	"slices"
	"strings"
)

// srcLine is one line of a generated load file and the 1-based line of the
// operator's ruleset it came from (0: lifeline added it).
type srcLine struct {
	text   string
	origin int
}

// loadFile is a file lifeline feeds to nft -f or iptables-restore, with the
// origin of each line so that a tool's error can be mapped back to the
// operator's ruleset.
type loadFile struct {
	lines   []srcLine
	commits []int // iptables: 1-based load-file lines of each COMMIT
	// noflush: iptables-restore --noflush (only the named rules change)
	noflush bool
}

func (f *loadFile) add(text string, origin int) {
	f.lines = append(f.lines, srcLine{text, origin})
	if strings.TrimSpace(text) == "COMMIT" {
		f.commits = append(f.commits, len(f.lines))
	}
}

func (f *loadFile) String() string {
	var b strings.Builder
	for _, l := range f.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// iptTable is one *table block of an iptables-save/-restore file.
type iptTable struct {
	name   string
	line   int // 1-based line of "*name"
	chains []iptChain
	rules  []iptRule
	// rest keeps other lines of the block (e.g. -I, -N, -P commands) in order
	// with the rules, so nothing the operator wrote is lost.
}

type iptChain struct {
	name   string
	policy string // "-" for a user chain
	line   int
}

type iptRule struct {
	chain string // chain the rule acts on
	text  string // the whole line as written
	line  int
}

// parseIPTables parses iptables-save syntax. Comment and blank lines are
// dropped; anything else outside a table block is an error.
func parseIPTables(text string) ([]*iptTable, error) {
	var tables []*iptTable
	var cur *iptTable
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "*"):
			if cur != nil {
				return nil, fmt.Errorf("line %d: table %s opened before COMMIT of %s", n, line[1:], cur.name)
			}
			cur = &iptTable{name: strings.TrimSpace(line[1:]), line: n}
		case line == "COMMIT":
			if cur == nil {
				return nil, fmt.Errorf("line %d: COMMIT outside a table", n)
			}
			tables = append(tables, cur)
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("line %d: %q outside a table block", n, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("line %d: bad chain declaration %q", n, line)
			}
			cur.chains = append(cur.chains, iptChain{name: f[0], policy: f[1], line: n})
		default:
			cur.rules = append(cur.rules, iptRule{chain: ruleChain(line), text: stripRuleCounters(line), line: n})
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("table %s has no COMMIT", cur.name)
	}
	return tables, nil
}

// ruleChain returns the chain a rule line acts on ("-A CHAIN ...").
func ruleChain(line string) string {
	f := strings.Fields(stripRuleCounters(line))
	if len(f) >= 2 && strings.HasPrefix(f[0], "-") {
		return f[1]
	}
	return ""
}

// stripRuleCounters drops a leading "[pkts:bytes] " (iptables-save -c).
func stripRuleCounters(line string) string {
	if strings.HasPrefix(line, "[") {
		if i := strings.Index(line, "] "); i > 0 {
			return strings.TrimSpace(line[i+2:])
		}
	}
	return line
}

// ruleTarget returns the chain a rule jumps or goes to ("-j X", "-g X").
func ruleTarget(line string) string {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" || f[i] == "--jump" || f[i] == "-g" || f[i] == "--goto" {
			return f[i+1]
		}
	}
	return ""
}

func (t *iptTable) chain(name string) *iptChain {
	for i := range t.chains {
		if t.chains[i].name == name {
			return &t.chains[i]
		}
	}
	return nil
}

func findTable(ts []*iptTable, name string) *iptTable {
	for _, t := range ts {
		if t.name == name {
			return t
		}
	}
	return nil
}

// iptGuardRule is the guard rule for one chain: accept the operator's SSH
// path once the deadline (UTC) has passed.
func iptGuardRule(chain string, input bool, g *Guard, v6 bool) string {
	mask := "/32"
	if v6 {
		mask = "/128"
	}
	addr := "-s " + g.Addr + mask + " -p tcp --dport"
	if !input {
		addr = "-d " + g.Addr + mask + " -p tcp --sport"
	}
	return fmt.Sprintf("-I %s 1 %s %d -m time --datestart %s -m comment --comment \"%s\" -j ACCEPT",
		chain, addr, g.Port, g.Deadline.UTC().Format("2006-01-02T15:04:05"), guardComment(g))
}

// buildIPTables merges the operator's ruleset with the foreign chains live
// now and the guard (nil: none) into the file iptables-restore loads.
//
// The rule for foreign chains (Docker, kube-proxy, Calico, [FirewallOptions.Foreign]):
// iptables-restore flushes every table the file names, so for each such
// table the live foreign chains are copied in: their declarations, their
// rules verbatim, and the live rules of other chains that jump to them (at
// the top of their chain, in live order, unless the file already holds
// that exact rule). A foreign chain that is live always wins over the file:
// the file's own declaration and rules for it are dropped. A foreign chain
// that is not live is loaded as the file has it.
func buildIPTables(user []*iptTable, live []*iptTable, isForeign func(string) bool, guard *Guard, v6 bool, logf func(string, ...any)) *loadFile {
	f := &loadFile{}
	for _, t := range user {
		lt := findTable(live, t.name)
		liveForeign := map[string]bool{}
		if lt != nil {
			for _, c := range lt.chains {
				if isForeign(c.name) {
					liveForeign[c.name] = true
				}
			}
		}
		f.add("*"+t.name, t.line)
		for _, c := range t.chains {
			if liveForeign[c.name] {
				logf("table %s: chain %s is foreign and live, keeping the live one", t.name, c.name)
				continue
			}
			f.add(":"+c.name+" "+c.policy+" [0:0]", c.line)
		}
		if lt != nil {
			for _, c := range lt.chains {
				if liveForeign[c.name] {
					f.add(":"+c.name+" "+c.policy+" [0:0]", 0)
				}
			}
		}
		has := map[string]bool{}
		for _, r := range t.rules {
			has[normSpace(r.text)] = true
		}
		// Jumps into live foreign chains from non-foreign chains, grouped by chain.
		jumps := map[string][]string{}
		var jumpChains []string
		if lt != nil {
			for _, r := range lt.rules {
				if isForeign(r.chain) || !liveForeign[ruleTarget(r.text)] || has[normSpace(r.text)] {
					continue
				}
				if t.chain(r.chain) == nil && lt.chain(r.chain).policy == "-" {
					// a user chain the file no longer declares: its rules go with it
					logf("table %s: dropping live jump %q: chain %s is not in the ruleset", t.name, r.text, r.chain)
					continue
				}
				if _, ok := jumps[r.chain]; !ok {
					jumpChains = append(jumpChains, r.chain)
				}
				jumps[r.chain] = append(jumps[r.chain], r.text)
			}
		}
		emitted := map[string]bool{}
		emitJumps := func(chain string) {
			if emitted[chain] {
				return
			}
			emitted[chain] = true
			for _, j := range jumps[chain] {
				f.add(j, 0)
			}
		}
		for _, r := range t.rules {
			if liveForeign[r.chain] {
				logf("table %s: dropping rule for live foreign chain %s: %q", t.name, r.chain, r.text)
				continue
			}
			if strings.HasPrefix(r.text, "-A ") {
				emitJumps(r.chain)
			}
			f.add(r.text, r.line)
		}
		for _, c := range jumpChains {
			emitJumps(c)
		}
		if lt != nil {
			for _, r := range lt.rules {
				if liveForeign[r.chain] {
					f.add(r.text, 0)
				}
			}
		}
		if guard != nil {
			// the built-in chains exist in every loaded table, declared or not
			if gc, ok := iptGuardChains[t.name]; ok {
				for _, c := range gc.in {
					for _, l := range iptGuardLines(c, true, guard, v6) {
						f.add(l, 0)
					}
				}
				for _, c := range gc.out {
					for _, l := range iptGuardLines(c, false, guard, v6) {
						f.add(l, 0)
					}
				}
			}
		}
		f.add("COMMIT", 0)
	}
	return f
}

// emptyTables returns blocks that empty the live tables absent from want:
// built-in chains with ACCEPT policy and no rules (foreign chains are added
// by buildIPTables like for any other table).
func emptyTables(want, live []*iptTable) []*iptTable {
	var out []*iptTable
	for _, lt := range live {
		if findTable(want, lt.name) != nil {
			continue
		}
		t := &iptTable{name: lt.name}
		for _, c := range lt.chains {
			if c.policy != "-" {
				t.chains = append(t.chains, iptChain{name: c.name, policy: "ACCEPT"})
			}
		}
		out = append(out, t)
	}
	return out
}

// normIPTables renders tables canonically for comparison: no counters or
// comments, no guard rules, no foreign chains (nor jumps into them), chain
// declarations sorted, rules grouped by chain in sorted chain order (their
// order within a chain kept), empty tables (built-in ACCEPT chains only)
// left out, tables sorted by name.
func normIPTables(ts []*iptTable, isForeign func(string) bool) string {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b *iptTable) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for _, t := range ts {
		var decls []string
		empty := true
		for _, c := range t.chains {
			if isForeign(c.name) {
				continue
			}
			if c.policy != "ACCEPT" {
				empty = false
			}
			decls = append(decls, ":"+c.name+" "+c.policy)
		}
		byChain := map[string][]string{}
		for _, r := range t.rules {
			if isForeign(r.chain) || isForeign(ruleTarget(r.text)) || isGuardRule(r.text) {
				continue
			}
			empty = false
			byChain[r.chain] = append(byChain[r.chain], normSpace(r.text))
		}
		if empty {
			continue
		}
		slices.Sort(decls)
		b.WriteString("*" + t.name + "\n")
		for _, d := range decls {
			b.WriteString(d + "\n")
		}
		chains := make([]string, 0, len(byChain))
		for c := range byChain {
			chains = append(chains, c)
		}
		slices.Sort(chains)
		for _, c := range chains {
			for _, r := range byChain[c] {
				b.WriteString(r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

func isGuardRule(s string) bool { return strings.Contains(s, guardPrefix) }

func normSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
