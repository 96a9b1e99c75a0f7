package ruleset

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

var sourceRank = map[Source]int{SourceNft: 0, SourceIptablesNft: 1, SourceIp6tablesNft: 2, SourceIptablesLegacy: 3, SourceIp6tablesLegacy: 4, SourceIpset: 5}

func rank(s Source) int {
	if r, ok := sourceRank[s]; ok {
		return r
	}
	return len(sourceRank)
}

func tableLess(a, b *Table) bool {
	if ra, rb := rank(a.Source), rank(b.Source); ra != rb {
		return ra < rb
	}
	if a.Source != b.Source {
		return a.Source < b.Source
	}
	if a.Family != b.Family {
		return a.Family < b.Family
	}
	return a.Name < b.Name
}

// Merge combines the rulesets read from a host's sources into one, tables
// ordered by source (nft, iptables-nft, ip6tables-nft, iptables-legacy,
// ip6tables-legacy), family and name, global sets by name.
//
// iptables-nft keeps its tables in nf_tables, so `nft -j list ruleset`
// lists them too (with `xt` expressions for what nft cannot translate).
// A table of the nft source that an iptables-nft or ip6tables-nft source
// also lists (same family and name) is dropped from the nft side: the
// iptables view is the one its owner writes and reads, and each table
// appears once. The result shares the tables and sets of its inputs.
func Merge(rs ...*Ruleset) *Ruleset {
	viaIpt := map[string]bool{}
	for _, r := range rs {
		if r == nil {
			continue
		}
		for _, t := range r.Tables {
			if t.Source == SourceIptablesNft || t.Source == SourceIp6tablesNft {
				viaIpt[t.Family+" "+t.Name] = true
			}
		}
	}
	out := &Ruleset{Tables: []*Table{}}
	for _, r := range rs {
		if r == nil {
			continue
		}
		for _, t := range r.Tables {
			if t.Source == SourceNft && viaIpt[t.Family+" "+t.Name] {
				continue
			}
			out.Tables = append(out.Tables, t)
		}
		out.Sets = append(out.Sets, r.Sets...)
	}
	sort.SliceStable(out.Tables, func(i, j int) bool { return tableLess(out.Tables[i], out.Tables[j]) })
	sort.SliceStable(out.Sets, func(i, j int) bool {
		a, b := out.Sets[i], out.Sets[j]
		if a.Source != b.Source {
			return rank(a.Source) < rank(b.Source)
		}
		return a.Name < b.Name
	})
	return out
}

// canonEsc keeps one item per line whatever its text holds.
func canonEsc(s string) string {
	if !strings.ContainsAny(s, "\\\n\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\\", `\\`)
	s = strings.ReplaceAll(s, "\n", `\n`)
	return strings.ReplaceAll(s, "\r", `\r`)
}

// Canonical is the state's identity as text: one line per table, set,
// set element, chain header and rule; tables by source, family and name,
// chains and sets by name, elements sorted, rules in chain order; no
// counters, handles, line numbers or expiry. An unchanged host gives the
// same bytes, whatever order its tools listed things in.
func (r *Ruleset) Canonical() []byte {
	var b bytes.Buffer
	tables := append([]*Table(nil), r.Tables...)
	sort.SliceStable(tables, func(i, j int) bool { return tableLess(tables[i], tables[j]) })
	for _, t := range tables {
		fmt.Fprintf(&b, "table %s %s %s", t.Source, canonEsc(t.Family), canonEsc(t.Name))
		if t.Owner != "" {
			b.WriteString(" owner " + t.Owner)
		}
		b.WriteByte('\n')
		writeSets(&b, "  ", t.Sets)
		chains := append([]*Chain(nil), t.Chains...)
		sort.SliceStable(chains, func(i, j int) bool { return chains[i].Name < chains[j].Name })
		for _, c := range chains {
			b.WriteString("  chain " + canonEsc(c.Name) + chainHeader(c) + "\n")
			for _, ru := range c.Rules {
				b.WriteString("    rule " + canonEsc(ru.Text) + "\n")
			}
		}
	}
	writeSets(&b, "", r.Sets)
	return b.Bytes()
}

// chainHeader: " type filter hook input priority 0 policy drop" ("" for
// a regular chain), then the owner.
func chainHeader(c *Chain) string {
	var s strings.Builder
	if c.Type != "" {
		s.WriteString(" type " + c.Type)
	}
	if c.Hook != "" {
		fmt.Fprintf(&s, " hook %s priority %d", c.Hook, c.Priority)
	}
	if c.Device != "" {
		s.WriteString(" device " + canonEsc(c.Device))
	}
	if c.Policy != "" {
		s.WriteString(" policy " + c.Policy)
	}
	if c.Owner != "" {
		s.WriteString(" owner " + c.Owner)
	}
	return s.String()
}

func writeSets(b *bytes.Buffer, indent string, sets []*Set) {
	ss := append([]*Set(nil), sets...)
	sort.SliceStable(ss, func(i, j int) bool {
		if ss[i].Source != ss[j].Source {
			return rank(ss[i].Source) < rank(ss[j].Source)
		}
		return ss[i].Name < ss[j].Name
	})
	for _, s := range ss {
		b.WriteString(indent + "set " + canonEsc(s.Name) + setHeader(s) + "\n")
		els := append([]string(nil), s.Elements...)
		sort.Strings(els)
		for _, e := range els {
			b.WriteString(indent + "  elem " + canonEsc(e) + "\n")
		}
	}
}

func setHeader(s *Set) string {
	h := ""
	if s.Source == SourceIpset {
		h += " source ipset family " + s.Family
	}
	h += " type " + canonEsc(s.Type)
	if s.Map != "" {
		h += " map " + canonEsc(s.Map)
	}
	if len(s.Flags) > 0 {
		fl := append([]string(nil), s.Flags...)
		sort.Strings(fl)
		h += " flags " + canonEsc(strings.Join(fl, ","))
	}
	if s.Timeout != "" {
		h += " timeout " + canonEsc(s.Timeout)
	}
	return h
}

// Strip returns a deep copy without counters (rule and policy packets and
// bytes) and handles; everything else, Counter and Line included, is kept.
func (r *Ruleset) Strip() *Ruleset {
	return r.copyWith(func(*Table) bool { return true }, func(*Table, *Chain) bool { return true }, func(*Table, *Rule) bool { return true }, func(*Set) bool { return true }, true)
}

// WithoutOwned returns a deep copy without what other tools and lifeline
// manage: tables and chains with an Owner (an iptables-nft table, owner
// OwnerIptablesNf, is the operator's own iptables rules and stays; its
// owned chains go), the rules that jump or go to an owned chain (Docker's
// `-A FORWARD -j DOCKER-USER`), lifeline's guard rules (Rule.Owner) and
// owned sets (Set.Owner). Drift compares this unless --include-owners.
// Counters and handles are kept.
func (r *Ruleset) WithoutOwned() *Ruleset {
	return r.WithoutOwners(func(o string) bool { return o != "" && o != OwnerIptablesNf })
}

// WithoutOwners is WithoutOwned for the owners owned says: their tables,
// chains, rules (lifeline's guard rules by their comment) and sets, and
// the rules that jump or go to their chains.
func (r *Ruleset) WithoutOwners(owned func(owner string) bool) *Ruleset {
	return r.copyWith(
		func(t *Table) bool { return !owned(t.Owner) },
		func(_ *Table, c *Chain) bool { return !owned(c.Owner) },
		func(t *Table, ru *Rule) bool {
			if ru.Owner() != "" {
				return false
			}
			if ru.Verdict.Kind != VerdictJump && ru.Verdict.Kind != VerdictGoto {
				return true
			}
			if c := t.Chain(ru.Verdict.Target); c != nil {
				return !owned(c.Owner)
			}
			return !owned(OwnerOf(t.Source, t.Family, t.Name, ru.Verdict.Target))
		},
		func(s *Set) bool { return !owned(s.Owner()) },
		false)
}

func (r *Ruleset) copyWith(keepT func(*Table) bool, keepC func(*Table, *Chain) bool, keepR func(*Table, *Rule) bool, keepS func(*Set) bool, strip bool) *Ruleset {
	out := &Ruleset{Tables: []*Table{}}
	for _, t := range r.Tables {
		if !keepT(t) {
			continue
		}
		nt := *t
		nt.Chains = make([]*Chain, 0, len(t.Chains))
		nt.Sets = copySets(t.Sets, keepS)
		if strip {
			nt.Handle = 0
		}
		for _, c := range t.Chains {
			if !keepC(t, c) {
				continue
			}
			nc := *c
			if strip {
				nc.Handle, nc.PolicyPackets, nc.PolicyBytes = 0, 0, 0
			}
			nc.Rules = make([]*Rule, 0, len(c.Rules))
			for _, ru := range c.Rules {
				if !keepR(t, ru) {
					continue
				}
				nr := *ru
				nr.Matches = append([]Match(nil), ru.Matches...)
				if strip {
					nr.Packets, nr.Bytes, nr.Handle = 0, 0, 0
				}
				nc.Rules = append(nc.Rules, &nr)
			}
			nt.Chains = append(nt.Chains, &nc)
		}
		out.Tables = append(out.Tables, &nt)
	}
	out.Sets = copySets(r.Sets, keepS)
	return out
}

func copySets(sets []*Set, keep func(*Set) bool) []*Set {
	var out []*Set
	for _, s := range sets {
		if !keep(s) {
			continue
		}
		ns := *s
		ns.Flags = append([]string(nil), s.Flags...)
		ns.Elements = append([]string(nil), s.Elements...)
		out = append(out, &ns)
	}
	return out
}
