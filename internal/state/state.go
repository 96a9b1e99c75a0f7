// Package state turns what the helper lists (wire.StatePart) into the
// ruleset model and compares states the way snapshot, diff and drift do:
// the live state against a ruleset file (as the host's kernel would hold
// it), a snapshot from the history, or another host.
package state

import (
	"fmt"
	"strings"

	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/wire"
)

// Parse builds the model of a host's state from the helper's listings.
// host names the host in errors.
func Parse(host string, parts []wire.StatePart) (*ruleset.Ruleset, error) {
	var rs []*ruleset.Ruleset
	var sets []*ruleset.Set
	for _, p := range parts {
		switch p.Format {
		case wire.StateNftJSON:
			r, err := ruleset.ParseNftJSON([]byte(p.Text))
			if err != nil {
				return nil, fmt.Errorf("%s: read nft's JSON listing: %w", host, err)
			}
			rs = append(rs, r)
		case wire.StateIptablesSave:
			r, err := ruleset.ParseIptablesSave(ruleset.Source(p.Source), []byte(p.Text))
			if err != nil {
				return nil, fmt.Errorf("%s: read %s-save's listing: %w", host, p.Source, err)
			}
			rs = append(rs, r)
		case wire.StateIpsetSave:
			s, err := ruleset.ParseIpsetSave([]byte(p.Text))
			if err != nil {
				return nil, fmt.Errorf("%s: read ipset's listing: %w", host, err)
			}
			sets = append(sets, s...)
		default:
			return nil, fmt.Errorf("%s: the helper listed %s in a format lifeline does not read (%q)", host, p.Source, p.Format)
		}
	}
	m := ruleset.Merge(rs...)
	m.Sets = append(m.Sets, sets...)
	return m, nil
}

// Scope says which part of two states a comparison covers.
type Scope struct {
	// Sources, when set, limits both sides to tables of these sources
	// (a ruleset file covers one backend: the others are not its
	// business).
	Sources []ruleset.Source
	// IncludeOwners keeps tables and chains of other owners (Docker,
	// kube-proxy, ...); lifeline's own (its guard and trace) never count.
	IncludeOwners bool
}

// Apply returns the part of rs the scope covers.
func (sc Scope) Apply(rs *ruleset.Ruleset) *ruleset.Ruleset {
	if !sc.IncludeOwners {
		rs = rs.WithoutOwned()
	} else {
		rs = rs.WithoutOwners(func(o string) bool { return o == ruleset.OwnerLifeline })
	}
	if len(sc.Sources) == 0 {
		return rs
	}
	out := &ruleset.Ruleset{}
	for _, t := range rs.Tables {
		for _, s := range sc.Sources {
			if t.Source == s {
				out.Tables = append(out.Tables, t)
				break
			}
		}
	}
	for _, s := range rs.Sets {
		for _, src := range sc.Sources {
			if s.Source == src {
				out.Sets = append(out.Sets, s)
				break
			}
		}
	}
	return out
}

// CandidateScope is the scope a comparison with a ruleset file covers: the
// tables of the backend that would load it (nft: the native tables, which
// an apply replaces; iptables: that backend's tables).
func CandidateScope(candidate []wire.StatePart, includeOwners bool) Scope {
	sc := Scope{IncludeOwners: includeOwners}
	for _, p := range candidate {
		sc.Sources = append(sc.Sources, ruleset.Source(p.Source))
	}
	return sc
}

// Compare is the semantic diff from one state to another within scope.
func Compare(from, to *ruleset.Ruleset, sc Scope) *ruleset.Delta {
	return ruleset.Diff(sc.Apply(from), sc.Apply(to))
}

// Summary says in one line what a delta changes: "+1 -0 rules in
// iptables-nft filter INPUT", "+3 -1 rules in 2 chains, policy of nft inet
// filter input, +2 -0 elements in 1 set", "no difference".
func Summary(d *ruleset.Delta) string {
	if d.Empty() {
		return "no difference"
	}
	var add, del, elemAdd, elemDel int
	var where, policies []string
	sets := 0
	var tables []string
	setDelta := func(s ruleset.SetDelta) {
		sets++
		elemAdd += len(s.Added)
		elemDel += len(s.Removed)
	}
	for _, t := range d.Tables {
		if t.Change == ruleset.ChangeAdded || t.Change == ruleset.ChangeRemoved {
			tables = append(tables, fmt.Sprintf("table %s %s", t.Table, t.Change))
		}
		for _, c := range t.Chains {
			n := 0
			for _, r := range c.Rules {
				n++
				if r.Op == "+" {
					add++
				} else {
					del++
				}
			}
			if n > 0 {
				where = append(where, t.Table+" "+c.Chain)
			}
			if c.FromPolicy != c.ToPolicy && c.Change == ruleset.ChangeChanged {
				policies = append(policies, fmt.Sprintf("policy of %s %s %s -> %s", t.Table, c.Chain, orNone(c.FromPolicy), orNone(c.ToPolicy)))
			}
		}
		for _, s := range t.Sets {
			setDelta(s)
		}
	}
	for _, s := range d.Sets {
		setDelta(s)
	}
	var parts []string
	switch {
	case len(where) == 1:
		parts = append(parts, fmt.Sprintf("+%d -%d rules in %s", add, del, where[0]))
	case len(where) > 1:
		parts = append(parts, fmt.Sprintf("+%d -%d rules in %d chains", add, del, len(where)))
	}
	parts = append(parts, policies...)
	if sets > 0 {
		parts = append(parts, fmt.Sprintf("+%d -%d elements in %d sets", elemAdd, elemDel, sets))
	}
	if len(tables) <= 2 {
		parts = append(parts, tables...)
	} else {
		parts = append(parts, fmt.Sprintf("%d tables added or removed", len(tables)))
	}
	if len(parts) == 0 {
		return "chain or set headers differ"
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
