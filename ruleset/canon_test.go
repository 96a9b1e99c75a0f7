package ruleset

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseNftJSONSetsAndChains(t *testing.T) {
	rs, err := ParseNftJSON(readFile(t, "testdata/sample1.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := rs.Table("nft inet filter")
	got := map[string]Set{}
	for _, s := range f.Sets {
		got[s.Name] = *s
	}
	want := map[string]Set{
		"blocklist": {Source: SourceNft, Family: "inet", Table: "filter", Name: "blocklist", Type: "ipv4_addr", Flags: []string{"interval"}, Elements: []string{"10.1.0.0/16", "172.16.0.1-172.16.0.9", "192.168.5.1"}},
		"cc":        {Source: SourceNft, Family: "inet", Table: "filter", Name: "cc", Type: "ipv4_addr . inet_service", Elements: []string{"10.0.0.1 . 22", "10.0.0.2 . 80"}},
		"dyn":       {Source: SourceNft, Family: "inet", Table: "filter", Name: "dyn", Type: "ipv4_addr", Flags: []string{"timeout"}, Timeout: "1h", Elements: []string{"1.2.3.4", "5.6.7.8"}, Expires: map[string]int64{"1.2.3.4": 1799, "5.6.7.8": 3599}},
		"portmap":   {Source: SourceNft, Family: "inet", Table: "filter", Name: "portmap", Type: "inet_service", Map: "ipv4_addr", Elements: []string{"443 : 10.0.0.2", "80 : 10.0.0.1"}},
		"ports6":    {Source: SourceNft, Family: "inet", Table: "filter", Name: "ports6", Type: "inet_service", Elements: []string{"22", "443", "80"}},
		"vmap1":     {Source: SourceNft, Family: "inet", Table: "filter", Name: "vmap1", Type: "inet_service", Map: "verdict", Elements: []string{"22 : accept", "23 : drop", "24 : jump other"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sets:\n got  %+v\n want %+v", got, want)
	}
	in := f.Chain("input")
	if in.Type != "filter" || in.Hook != "input" || in.Priority != 0 || in.Policy != "drop" || in.Handle != 1 || !in.Base() {
		t.Errorf("input chain %+v", in)
	}
	if fw := f.Chain("forward"); fw.Priority != 10 {
		t.Errorf("forward priority %d", fw.Priority)
	}
	if c := f.Chain("other"); c.Base() || c.Policy != "" {
		t.Errorf("regular chain %+v", c)
	}
	if p := rs.Table("nft ip nat").Chain("prerouting"); p.Priority != -100 || p.Type != "nat" {
		t.Errorf("nat prerouting %+v", p)
	}
	r := in.Rules[2] // ct state invalid counter drop
	if !r.Counter || r.Text != "ct state invalid counter drop" || r.Handle == 0 {
		t.Errorf("counter rule %+v", r)
	}
	if in.Rules[0].Counter {
		t.Error("a rule without a counter statement counts")
	}
	if r := in.Rules[3]; r.Comment != "ssh in" {
		t.Errorf("comment %q", r.Comment)
	}
}

func TestParseNftJSONUnknownAndObjects(t *testing.T) {
	in := `{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"inet","name":"t","handle":1}},
{"flowtable":{"family":"inet","name":"ft","table":"t","handle":2,"hook":"ingress","prio":0,"dev":"lo"}},
{"counter":{"family":"inet","name":"c","table":"t","handle":3,"packets":1,"bytes":2}},
{"chain":{"family":"inet","table":"t","name":"c","handle":4,"type":"filter","hook":"ingress","prio":-500,"policy":"accept","dev":["eth0","eth1"]}},
{"rule":{"family":"inet","table":"t","chain":"c","handle":5,"expr":[{"tproxy":{"port":80}},{"queue":{"num":3,"flags":["bypass"]}}]}},
{"rule":{"family":"inet","table":"t","chain":"c","handle":6,"expr":[{"counter":{"packets":18446744073709551615,"bytes":5}},{"weird":[1,2]}]}}]}`
	rs, err := ParseNftJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	c := rs.Table("nft inet t").Chain("c")
	if c.Device != "eth0,eth1" {
		t.Errorf("device %q", c.Device)
	}
	if got := c.Rules[0].Text; got != `{"tproxy":{"port":80}} queue flags bypass to 3` {
		t.Errorf("text %q", got)
	}
	if c.Rules[0].Verdict.Kind != VerdictQueue {
		t.Errorf("verdict %+v", c.Rules[0].Verdict)
	}
	if r := c.Rules[1]; r.Packets != 18446744073709551615 || r.Text != `counter {"weird":[1,2]}` {
		t.Errorf("rule %+v", r)
	}
	for _, bad := range []string{``, `[]`, `{"nftables":[{"chain":{"prio":"x"}}]}`, `{"nftables":[{"table":{"family":1}}]}`} {
		if _, err := ParseNftJSON([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func mergedSample(t *testing.T) *Ruleset {
	t.Helper()
	nft, err := ParseNftJSON(readFile(t, "testdata/mixed-nft.json"))
	if err != nil {
		t.Fatal(err)
	}
	ipt, err := ParseIptablesSave(SourceIptablesNft, readFile(t, "testdata/ipt1-nft.save"))
	if err != nil {
		t.Fatal(err)
	}
	ip6, err := ParseIptablesSave(SourceIp6tablesNft, readFile(t, "testdata/ip6t1-nft.save"))
	if err != nil {
		t.Fatal(err)
	}
	own, err := ParseNftJSON(readFile(t, "testdata/sample1.json"))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := ParseIpsetSave(readFile(t, "testdata/ipset1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return Merge(ip6, &Ruleset{Sets: sets}, own, nft, ipt)
}

// sample1.json and mixed-nft.json both hold an "ip nat" table: the one
// iptables-nft lists wins, so sample1's goes.
func TestMerge(t *testing.T) {
	m := mergedSample(t)
	var ids []string
	for _, tb := range m.Tables {
		ids = append(ids, tb.ID())
	}
	want := []string{
		"nft bridge br", "nft inet filter", "nft ip6 f6", "nft netdev ingr",
		"iptables-nft filter", "iptables-nft mangle", "iptables-nft nat", "iptables-nft raw",
		"ip6tables-nft filter",
	}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("tables\n got  %q\n want %q", ids, want)
	}
	if len(m.Sets) != 4 || m.Sets[0].Name != "allow" {
		t.Errorf("sets %+v", m.Sets)
	}
}

func TestCanonical(t *testing.T) {
	m := mergedSample(t)
	c := string(m.Canonical())
	for _, w := range []string{
		"table nft inet filter\n",
		"  set blocklist type ipv4_addr flags interval\n    elem 10.1.0.0/16\n",
		"  chain input type filter hook input priority 0 policy drop\n    rule iifname \"lo\" accept\n",
		"table iptables-nft ip filter\n",
		"  chain DOCKER owner docker\n",
		"set allow source ipset family ip type hash:ip,port timeout 3600\n  elem 1.2.3.4,tcp:22\n",
	} {
		if !strings.Contains(c, w) {
			t.Errorf("canonical lacks %q", w)
		}
	}
	for _, bad := range []string{"counter packets", "handle", "expires", "6:300"} {
		if strings.Contains(c, bad) {
			t.Errorf("canonical holds %q", bad)
		}
	}
	// Reordered input, other counters: same bytes.
	rev := &Ruleset{Sets: append([]*Set(nil), m.Sets...)}
	for i := len(m.Tables) - 1; i >= 0; i-- {
		t2 := *m.Tables[i]
		t2.Chains = nil
		for j := len(m.Tables[i].Chains) - 1; j >= 0; j-- {
			c2 := *m.Tables[i].Chains[j]
			c2.PolicyPackets += 3
			t2.Chains = append(t2.Chains, &c2)
		}
		rev.Tables = append(rev.Tables, &t2)
	}
	if string(rev.Canonical()) != c {
		t.Error("reordered tables and chains change the canonical form")
	}
	if string(m.Strip().Canonical()) != c {
		t.Error("Strip changes the canonical form")
	}
	// A rule text with a newline stays on one line.
	nl := &Ruleset{Tables: []*Table{{Source: SourceNft, Family: "inet", Name: "x", Chains: []*Chain{{Name: "c", Rules: []*Rule{{Text: "a\nb"}}}}}}}
	if got := string(nl.Canonical()); got != "table nft inet x\n  chain c\n    rule a\\nb\n" {
		t.Errorf("canonical %q", got)
	}
}

func TestStrip(t *testing.T) {
	m := mergedSample(t)
	s := m.Strip()
	for _, tb := range s.Tables {
		if tb.Handle != 0 {
			t.Errorf("%s handle %d", tb.ID(), tb.Handle)
		}
		for _, c := range tb.Chains {
			if c.Handle != 0 || c.PolicyPackets != 0 || c.PolicyBytes != 0 {
				t.Errorf("%s %s: %+v", tb.ID(), c.Name, c)
			}
			for _, r := range c.Rules {
				if r.Packets != 0 || r.Bytes != 0 || r.Handle != 0 {
					t.Errorf("%s %s: %+v", tb.ID(), c.Name, r)
				}
			}
		}
	}
	if m.Table("iptables-nft filter").Chain("INPUT").Rules[0].Packets != 6 {
		t.Error("Strip changed its input")
	}
}

func TestWithoutOwned(t *testing.T) {
	m := mergedSample(t)
	// a lifeline guard rule and set, a foreign nft table
	in := m.Table("nft inet filter").Chain("input")
	in.Rules = append([]*Rule{{Text: `tcp dport 22 accept comment "lifeline-guard tx1"`, Comment: "lifeline-guard tx1"}}, in.Rules...)
	m.Table("nft inet filter").Sets = append(m.Table("nft inet filter").Sets, &Set{Source: SourceNft, Name: "lifeline_guard", Type: "inet_service"})
	m.Tables = append(m.Tables, &Table{Source: SourceNft, Family: "ip", Name: "docker-bridges", Owner: OwnerDocker, Chains: []*Chain{{Name: "x", Owner: OwnerDocker}}})
	w := m.WithoutOwned()
	if w.Table("nft ip docker-bridges") != nil {
		t.Error("docker's nft table kept")
	}
	f := w.Table("iptables-nft filter")
	for _, n := range []string{"DOCKER", "DOCKER-USER", "f2b-sshd"} {
		if f.Chain(n) != nil {
			t.Errorf("owned chain %s kept", n)
		}
	}
	if f.Chain("mychain") == nil {
		t.Error("operator's chain dropped")
	}
	if n := len(f.Chain("FORWARD").Rules); n != 0 {
		t.Errorf("FORWARD keeps %d jumps into owned chains", n)
	}
	if n, want := len(f.Chain("INPUT").Rules), len(m.Table("iptables-nft filter").Chain("INPUT").Rules)-1; n != want {
		t.Errorf("INPUT: %d rules, want %d (the jump to f2b-sshd dropped)", n, want)
	}
	if got := w.Table("nft inet filter").Chain("input").Rules[0].Text; strings.Contains(got, "lifeline-guard") {
		t.Error("guard rule kept")
	}
	for _, s := range w.Table("nft inet filter").Sets {
		if s.Name == "lifeline_guard" {
			t.Error("guard set kept")
		}
	}
	if w.Table("nft inet filter").Chain("input").Rules[0].Packets != m.Table("nft inet filter").Chain("input").Rules[1].Packets {
		t.Error("counters lost")
	}
	if nat := w.Table("iptables-nft nat"); len(nat.Chain("PREROUTING").Rules) != 2 {
		t.Errorf("nat PREROUTING %d rules, want 2 (jump to KUBE-SERVICES dropped)", len(nat.Chain("PREROUTING").Rules))
	}
}
