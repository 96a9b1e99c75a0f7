// Package blockcheck is the preflight of lifeline block: before a host's
// block set gets new elements, it builds the candidate state (the live
// state read through the state verb, plus lifeline's block table, set and
// drop rule where they are missing, plus the new elements) and evaluates
// every SSH path the operator depends on through it with the ruleset
// model's packet-path evaluator ([ruleset.EvaluateSSH]). A path the
// candidate drops while the live state does not is refused.
//
// This is the "model" method; [Check] is the one function session calls,
// so that a kernel sandbox evaluation can replace it.
package blockcheck

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/state"
	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

var _ = session.BlockSpec{Check: Check}

// Check is session.BlockSpec.Check by the ruleset model.
func Check(host string, live []wire.StatePart, mode string, spec session.BlockSpec, paths []session.BlockPath) ([]session.BlockRefusal, error) {
	rs, err := state.Parse(host, live)
	if err != nil {
		return nil, fmt.Errorf("%s: parse the live state: %w", host, err)
	}
	cand, err := state.Parse(host, live)
	if err != nil {
		return nil, fmt.Errorf("%s: parse the live state: %w", host, err)
	}
	if err := Candidate(cand, mode, spec.Set, spec.CIDRs); err != nil {
		return nil, fmt.Errorf("%s: build the candidate state: %w", host, err)
	}
	var out []session.BlockRefusal
	for _, p := range paths {
		src, err := netip.ParseAddr(p.Src)
		if err != nil {
			return nil, fmt.Errorf("%s: path %s: bad source address %q", host, p.What, p.Src)
		}
		dst, _ := netip.ParseAddr(p.Dst)
		pkt := ruleset.Packet{Family: "ip", Src: src, Dst: dst, SrcPort: uint16(p.SrcPort), DstPort: uint16(p.DstPort), Proto: "tcp", State: "new"}
		if src.Is6() {
			pkt.Family = "ip6"
		}
		holder := holding(src, spec.CIDRs)
		after := ruleset.EvaluateSSH(cand, pkt)
		before := ruleset.EvaluateSSH(rs, pkt)
		switch {
		case after.Verdict == "drop" && before.Verdict != "drop":
			out = append(out, session.BlockRefusal{Path: p, CIDR: holder, Why: "the block's state drops it at " + after.String()})
		case after.Verdict == "undecided" && holder != "":
			// the model cannot follow the whole path; the set would hold
			// the address: refuse rather than guess
			out = append(out, session.BlockRefusal{Path: p, CIDR: holder, Why: "the set would hold it, and the model cannot decide the rest of the path (" + after.Reason + ")"})
		}
	}
	return out, nil
}

// holding is the first of cidrs that contains a ("" for none).
func holding(a netip.Addr, cidrs []string) string {
	for _, c := range cidrs {
		if p, _, err := wire.NormalizeCIDR(c); err == nil && p.Contains(a) {
			return c
		}
	}
	return ""
}

// Candidate adds to rs (the live state) what the block leaves: the block
// table, sets and drop rules where missing (as the helper creates them,
// parsed with the real parsers from the listing the kernel gives) and the
// CIDRs as elements.
func Candidate(rs *ruleset.Ruleset, mode, set string, cidrs []string) error {
	n4, n6, i4, i6 := ruleset.BlockSetNames(set)
	if mode == wire.BlockModeNft {
		tmpl, err := ruleset.ParseNftJSON([]byte(nftTemplate(set)))
		if err != nil {
			return err
		}
		want := tmpl.Table("nft inet " + ruleset.BlockTable)
		t := rs.Table("nft inet " + ruleset.BlockTable)
		if t == nil {
			rs.Tables = append(rs.Tables, want)
			t = want
		}
		for _, ws := range want.Sets {
			if findSet(t.Sets, ws.Name) == nil {
				t.Sets = append(t.Sets, ws)
			}
		}
		in := t.Chain("input")
		if in == nil {
			in = want.Chain("input")
			in.Rules = nil
			t.Chains = append(t.Chains, in)
		}
		for _, wr := range want.Chain("input").Rules {
			if !hasRule(in, wr.Text) {
				in.Rules = append(in.Rules, wr)
			}
		}
		for _, c := range cidrs {
			name := n4
			if strings.Contains(c, ":") {
				name = n6
			}
			s := findSet(t.Sets, name)
			s.Elements = append(s.Elements, c)
		}
		return nil
	}
	for _, fam := range []struct {
		family, set string
		v6          bool
	}{{"ip", i4, false}, {"ip6", i6, true}} {
		src := iptSource(rs, fam.family)
		if src == "" {
			continue
		}
		tmpl, err := ruleset.ParseIptablesSave(src, []byte(iptTemplate(set, fam.set)))
		if err != nil {
			return err
		}
		want := tmpl.Table(string(src) + " filter")
		t := rs.Table(string(src) + " filter")
		if t == nil {
			rs.Tables = append(rs.Tables, want)
			t = want
		}
		wantIn, wantBlock := want.Chain("INPUT"), want.Chain(ruleset.BlockChain)
		in := t.Chain("INPUT")
		if in == nil {
			in = wantIn
			t.Chains = append(t.Chains, in)
		} else if !hasRule(in, wantIn.Rules[0].Text) {
			in.Rules = append([]*ruleset.Rule{wantIn.Rules[0]}, in.Rules...)
		}
		bc := t.Chain(ruleset.BlockChain)
		if bc == nil {
			bc = &ruleset.Chain{Name: ruleset.BlockChain, Owner: wantBlock.Owner}
			t.Chains = append(t.Chains, bc)
		}
		if !hasRule(bc, wantBlock.Rules[0].Text) {
			bc.Rules = append(bc.Rules, wantBlock.Rules[0])
		}
		s := findSet(rs.Sets, fam.set)
		if s == nil {
			fam6 := "inet"
			if fam.v6 {
				fam6 = "inet6"
			}
			sets, err := ruleset.ParseIpsetSave([]byte(fmt.Sprintf("create %s hash:net family %s hashsize 1024 maxelem 65536 timeout 0\n", fam.set, fam6)))
			if err != nil {
				return err
			}
			s = sets[0]
			rs.Sets = append(rs.Sets, s)
		}
		for _, c := range cidrs {
			if strings.Contains(c, ":") == fam.v6 {
				s.Elements = append(s.Elements, c)
			}
		}
	}
	return nil
}

// iptSource is the iptables backend of the family holding its tables.
func iptSource(rs *ruleset.Ruleset, family string) ruleset.Source {
	var first ruleset.Source
	for _, t := range rs.Tables {
		if t.Source == ruleset.SourceNft || t.Family != family {
			continue
		}
		if t.Name == "filter" {
			return t.Source
		}
		if first == "" {
			first = t.Source
		}
	}
	if first == "" && family == "ip" {
		return ruleset.SourceIptablesNft
	}
	return first
}

func findSet(sets []*ruleset.Set, name string) *ruleset.Set {
	for _, s := range sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func hasRule(c *ruleset.Chain, text string) bool {
	for _, r := range c.Rules {
		if r.Text == text {
			return true
		}
	}
	return false
}

// nftTemplate is `nft -j list table inet lifeline` as the kernel lists it
// right after the helper created block set name.
func nftTemplate(name string) string {
	n4, n6, _, _ := ruleset.BlockSetNames(name)
	return strings.NewReplacer("@N4@", n4, "@N6@", n6, "@C@", ruleset.BlockCommentPrefix+" "+name, "@T@", ruleset.BlockTable).Replace(
		`{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "@T@", "handle": 1}}, {"set": {"family": "inet", "name": "@N4@", "table": "@T@", "type": "ipv4_addr", "handle": 2, "flags": ["interval", "timeout"]}}, {"set": {"family": "inet", "name": "@N6@", "table": "@T@", "type": "ipv6_addr", "handle": 3, "flags": ["interval", "timeout"]}}, {"chain": {"family": "inet", "table": "@T@", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": -10, "policy": "accept"}}, {"rule": {"family": "inet", "table": "@T@", "chain": "input", "handle": 4, "comment": "@C@", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@@N4@"}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "@T@", "chain": "input", "handle": 5, "comment": "@C@", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@@N6@"}}, {"drop": null}]}}]}`)
}

// iptTemplate is the filter table's block pieces as iptables-save -c
// lists them after the helper created them.
func iptTemplate(name, ipset string) string {
	return fmt.Sprintf("*filter\n:INPUT ACCEPT [0:0]\n:%[1]s - [0:0]\n[0:0] -A INPUT -m comment --comment %[2]s -j %[1]s\n[0:0] -A %[1]s -m set --match-set %[3]s src -m comment --comment \"%[2]s %[4]s\" -j DROP\nCOMMIT\n",
		ruleset.BlockChain, ruleset.BlockCommentPrefix, ipset, name)
}
