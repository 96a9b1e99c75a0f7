package ruleset

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// Delta is the semantic difference between two rulesets, grouped by table
// then chain. Counters, handles, line numbers and element expiry never
// make a difference; rule order within a chain does.
type Delta struct {
	Tables []TableDelta `json:"tables,omitempty"`
	Sets   []SetDelta   `json:"sets,omitempty"` // global sets (ipset)
}

// Change kinds of a table, chain or set.
const (
	ChangeAdded   = "added"
	ChangeRemoved = "removed"
	ChangeChanged = "changed"
)

// TableDelta is what changed in one table (Table is its ID, "nft inet
// filter").
type TableDelta struct {
	Table  string       `json:"table"`
	Change string       `json:"change"`
	Chains []ChainDelta `json:"chains,omitempty"`
	Sets   []SetDelta   `json:"sets,omitempty"`
}

// ChainDelta is what changed in one chain: its header (From/To are the
// headers as Canonical writes them, set only when they differ; Policy* when
// the policy changed) and its rules.
type ChainDelta struct {
	Chain      string       `json:"chain"`
	Change     string       `json:"change"`
	Hook       string       `json:"hook,omitempty"`
	FromPolicy string       `json:"from_policy,omitempty"`
	ToPolicy   string       `json:"to_policy,omitempty"`
	FromHeader string       `json:"from_header,omitempty"`
	ToHeader   string       `json:"to_header,omitempty"`
	Rules      []RuleChange `json:"rules,omitempty"`
}

// RuleChange is one rule removed ("-", Pos its 1-based place in the old
// chain) or added ("+", Pos its place in the new chain).
type RuleChange struct {
	Op   string `json:"op"`
	Pos  int    `json:"pos"`
	Text string `json:"text"`
}

// SetDelta is what changed in one set: type, map type, flags or timeout
// (From*/To* set only when they differ) and elements.
type SetDelta struct {
	Set         string   `json:"set"`
	Change      string   `json:"change"`
	FromType    string   `json:"from_type,omitempty"`
	ToType      string   `json:"to_type,omitempty"`
	FromFlags   string   `json:"from_flags,omitempty"`
	ToFlags     string   `json:"to_flags,omitempty"`
	FromTimeout string   `json:"from_timeout,omitempty"`
	ToTimeout   string   `json:"to_timeout,omitempty"`
	Added       []string `json:"added,omitempty"`
	Removed     []string `json:"removed,omitempty"`
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool { return d == nil || len(d.Tables) == 0 && len(d.Sets) == 0 }

// Diff compares two rulesets (nil is empty). Tables are matched by ID,
// chains and sets by name; the rules of a chain are compared by Text with
// a longest common subsequence.
func Diff(from, to *Ruleset) *Delta {
	if from == nil {
		from = &Ruleset{}
	}
	if to == nil {
		to = &Ruleset{}
	}
	d := &Delta{}
	ft, tt := map[string]*Table{}, map[string]*Table{}
	for _, t := range from.Tables {
		ft[t.ID()] = t
	}
	for _, t := range to.Tables {
		tt[t.ID()] = t
	}
	all := append(append([]*Table(nil), from.Tables...), to.Tables...)
	sort.SliceStable(all, func(i, j int) bool { return tableLess(all[i], all[j]) })
	seen := map[string]bool{}
	for _, t := range all {
		id := t.ID()
		if seen[id] {
			continue
		}
		seen[id] = true
		a, b := ft[id], tt[id]
		td := TableDelta{Table: id, Change: ChangeChanged}
		switch {
		case a == nil:
			td.Change, a = ChangeAdded, &Table{}
		case b == nil:
			td.Change, b = ChangeRemoved, &Table{}
		}
		td.Sets = diffSets(a.Sets, b.Sets)
		td.Chains = diffChains(a.Chains, b.Chains)
		if td.Change != ChangeChanged || len(td.Sets) > 0 || len(td.Chains) > 0 {
			d.Tables = append(d.Tables, td)
		}
	}
	d.Sets = diffSets(from.Sets, to.Sets)
	return d
}

func diffChains(from, to []*Chain) []ChainDelta {
	fm := map[string]*Chain{}
	for _, c := range from {
		fm[c.Name] = c
	}
	tm := map[string]*Chain{}
	for _, c := range to {
		tm[c.Name] = c
	}
	var names []string
	for n := range fm {
		names = append(names, n)
	}
	for n := range tm {
		if fm[n] == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []ChainDelta
	for _, n := range names {
		a, b := fm[n], tm[n]
		cd := ChainDelta{Chain: n, Change: ChangeChanged}
		switch {
		case a == nil:
			cd.Change, a = ChangeAdded, &Chain{}
			cd.Hook, cd.ToPolicy = b.Hook, b.Policy
		case b == nil:
			cd.Change, b = ChangeRemoved, &Chain{}
			cd.Hook, cd.FromPolicy = a.Hook, a.Policy
		default:
			cd.Hook = b.Hook
			if a.Policy != b.Policy {
				cd.FromPolicy, cd.ToPolicy = a.Policy, b.Policy
			}
			ah, bh := chainHeader(&Chain{Type: a.Type, Hook: a.Hook, Priority: a.Priority, Device: a.Device}), chainHeader(&Chain{Type: b.Type, Hook: b.Hook, Priority: b.Priority, Device: b.Device})
			if ah != bh {
				cd.FromHeader, cd.ToHeader = strings.TrimSpace(ah), strings.TrimSpace(bh)
			}
		}
		cd.Rules = diffRules(a.Rules, b.Rules)
		if cd.Change != ChangeChanged || cd.FromPolicy != cd.ToPolicy || cd.FromHeader != cd.ToHeader || len(cd.Rules) > 0 {
			out = append(out, cd)
		}
	}
	return out
}

// lcsLimit bounds the LCS table (cells) after the common prefix and suffix
// are cut; beyond it the middle is reported as removed then added.
const lcsLimit = 16 << 20

func diffRules(from, to []*Rule) []RuleChange {
	pre := 0
	for pre < len(from) && pre < len(to) && from[pre].Text == to[pre].Text {
		pre++
	}
	suf := 0
	for suf < len(from)-pre && suf < len(to)-pre && from[len(from)-1-suf].Text == to[len(to)-1-suf].Text {
		suf++
	}
	a, b := from[pre:len(from)-suf], to[pre:len(to)-suf]
	var out []RuleChange
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil
	}
	if n*m > lcsLimit || n == 0 || m == 0 {
		for i, r := range a {
			out = append(out, RuleChange{"-", pre + i + 1, r.Text})
		}
		for j, r := range b {
			out = append(out, RuleChange{"+", pre + j + 1, r.Text})
		}
		return out
	}
	// L[i][j] = LCS length of a[i:], b[j:].
	L := make([]int32, (n+1)*(m+1))
	w := m + 1
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i].Text == b[j].Text {
				L[i*w+j] = L[(i+1)*w+j+1] + 1
			} else {
				L[i*w+j] = max(L[(i+1)*w+j], L[i*w+j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i].Text == b[j].Text:
			i++
			j++
		case j < m && (i == n || L[i*w+j+1] > L[(i+1)*w+j]):
			out = append(out, RuleChange{"+", pre + j + 1, b[j].Text})
			j++
		default:
			out = append(out, RuleChange{"-", pre + i + 1, a[i].Text})
			i++
		}
	}
	return out
}

func diffSets(from, to []*Set) []SetDelta {
	fm, tm := map[string]*Set{}, map[string]*Set{}
	var names []string
	for _, s := range from {
		fm[s.Name] = s
		names = append(names, s.Name)
	}
	for _, s := range to {
		if fm[s.Name] == nil && tm[s.Name] == nil {
			names = append(names, s.Name)
		}
		tm[s.Name] = s
	}
	sort.Strings(names)
	names = slices.Compact(names)
	var out []SetDelta
	for _, n := range names {
		a, b := fm[n], tm[n]
		sd := SetDelta{Set: n, Change: ChangeChanged}
		switch {
		case a == nil:
			sd.Change, a = ChangeAdded, &Set{}
		case b == nil:
			sd.Change, b = ChangeRemoved, &Set{}
		}
		at, bt := setType(a), setType(b)
		if at != bt {
			sd.FromType, sd.ToType = at, bt
		}
		af, bf := strings.Join(sortedCopy(a.Flags), ","), strings.Join(sortedCopy(b.Flags), ",")
		if af != bf {
			sd.FromFlags, sd.ToFlags = af, bf
		}
		if a.Timeout != b.Timeout {
			sd.FromTimeout, sd.ToTimeout = a.Timeout, b.Timeout
		}
		ae, be := sortedCopy(a.Elements), sortedCopy(b.Elements)
		x, y := 0, 0
		for x < len(ae) || y < len(be) {
			switch {
			case y == len(be) || x < len(ae) && ae[x] < be[y]:
				sd.Removed = append(sd.Removed, ae[x])
				x++
			case x == len(ae) || be[y] < ae[x]:
				sd.Added = append(sd.Added, be[y])
				y++
			default:
				x++
				y++
			}
		}
		if sd.Change != ChangeChanged || sd.FromType != sd.ToType || sd.FromFlags != sd.ToFlags || sd.FromTimeout != sd.ToTimeout || len(sd.Added)+len(sd.Removed) > 0 {
			out = append(out, sd)
		}
	}
	return out
}

func setType(s *Set) string {
	if s.Map != "" {
		return s.Type + " : " + s.Map
	}
	return s.Type
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

const (
	ansiRed   = "\x1b[31m"
	ansiGreen = "\x1b[32m"
	ansiBold  = "\x1b[1m"
	ansiReset = "\x1b[0m"
)

// Write prints the delta for a person:
//
//	--- nft inet filter
//	  chain input (hook input, policy drop -> accept)
//	    + tcp dport 8080 accept
//	    - tcp dport 8081 accept
//	  set blocklist
//	    + 10.0.0.9
//
// with ANSI colours (additions green, removals red, headers bold) only
// when color is set. An empty delta prints nothing.
func (d *Delta) Write(w io.Writer, color bool) error {
	p := &deltaPrinter{w: w, color: color}
	for _, t := range d.Tables {
		h := "--- " + t.Table
		if t.Change != ChangeChanged {
			h += " (" + t.Change + ")"
		}
		p.line(ansiBold, h)
		for _, s := range t.Sets {
			p.set("  ", s)
		}
		for _, c := range t.Chains {
			p.chain(c)
		}
	}
	if len(d.Sets) > 0 {
		p.line(ansiBold, "--- ipset")
		for _, s := range d.Sets {
			p.set("  ", s)
		}
	}
	return p.err
}

type deltaPrinter struct {
	w     io.Writer
	color bool
	err   error
}

func (p *deltaPrinter) line(c, s string) {
	if p.err != nil {
		return
	}
	if p.color && c != "" {
		s = c + s + ansiReset
	}
	_, p.err = io.WriteString(p.w, s+"\n")
}

func (p *deltaPrinter) change(indent, op, s string) {
	c := ansiGreen
	if op == "-" {
		c = ansiRed
	}
	p.line(c, indent+op+" "+s)
}

func (p *deltaPrinter) chain(c ChainDelta) {
	var attrs []string
	if c.Hook != "" {
		attrs = append(attrs, "hook "+c.Hook)
	}
	switch {
	case c.Change == ChangeAdded && c.ToPolicy != "":
		attrs = append(attrs, "policy "+c.ToPolicy)
	case c.Change == ChangeRemoved && c.FromPolicy != "":
		attrs = append(attrs, "policy "+c.FromPolicy)
	case c.FromPolicy != c.ToPolicy:
		attrs = append(attrs, fmt.Sprintf("policy %s -> %s", orNone(c.FromPolicy), orNone(c.ToPolicy)))
	}
	if c.FromHeader != c.ToHeader {
		attrs = append(attrs, fmt.Sprintf("%s -> %s", orNone(c.FromHeader), orNone(c.ToHeader)))
	}
	if c.Change != ChangeChanged {
		attrs = append(attrs, c.Change)
	}
	h := "  chain " + c.Chain
	if len(attrs) > 0 {
		h += " (" + strings.Join(attrs, ", ") + ")"
	}
	p.line(ansiBold, h)
	for _, r := range c.Rules {
		p.change("    ", r.Op, r.Text)
	}
}

func (p *deltaPrinter) set(indent string, s SetDelta) {
	var attrs []string
	if s.FromType != s.ToType {
		attrs = append(attrs, fmt.Sprintf("type %s -> %s", orNone(s.FromType), orNone(s.ToType)))
	}
	if s.FromFlags != s.ToFlags {
		attrs = append(attrs, fmt.Sprintf("flags %s -> %s", orNone(s.FromFlags), orNone(s.ToFlags)))
	}
	if s.FromTimeout != s.ToTimeout {
		attrs = append(attrs, fmt.Sprintf("timeout %s -> %s", orNone(s.FromTimeout), orNone(s.ToTimeout)))
	}
	if s.Change != ChangeChanged {
		attrs = append(attrs, s.Change)
	}
	h := indent + "set " + s.Set
	if len(attrs) > 0 {
		h += " (" + strings.Join(attrs, ", ") + ")"
	}
	p.line(ansiBold, h)
	for _, e := range s.Removed {
		p.change(indent+"  ", "-", e)
	}
	for _, e := range s.Added {
		p.change(indent+"  ", "+", e)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
