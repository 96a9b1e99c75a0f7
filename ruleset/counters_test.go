package ruleset

import (
	"testing"
)

func TestCountersFromSave(t *testing.T) {
	rs, err := ParseIptablesSave(SourceIptablesLegacy, []byte("*filter\n:INPUT DROP [7:420]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"+
		"[10:600] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n[3:180] -A INPUT -s 192.0.2.0/24 -j DROP\n"+
		"[1:60] -A INPUT -m comment --comment \"lifeline-guard tx1\" -j ACCEPT\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	cs := Counters(rs)
	var policy, rules int
	for _, c := range cs {
		if c.Policy {
			policy++
			if c.Chain == "INPUT" && (c.Packets != 7 || c.Bytes != 420 || c.Index != -1) {
				t.Errorf("INPUT policy counter %+v", c)
			}
		} else {
			rules++
		}
	}
	if policy != 3 || rules != 2 {
		t.Fatalf("%d policy and %d rule counters, want 3 and 2 (the guard's left out): %+v", policy, rules, cs)
	}
	if top := Top(cs, 1, false); len(top) != 1 || top[0].Packets != 10 {
		t.Fatalf("top: %+v", top)
	}
}

func TestCounterDelta(t *testing.T) {
	c := func(text string, p uint64) Counter {
		return Counter{Table: "iptables-nft filter", Chain: "INPUT", Text: text, HasCounter: true, Packets: p, Bytes: p * 60}
	}
	tests := []struct {
		name      string
		prev, cur []Counter
		want      []uint64 // DeltaPackets per cur
		reset     []bool
	}{
		{"steady", []Counter{c("a", 5), c("b", 1)}, []Counter{c("a", 9), c("b", 1)}, []uint64{4, 0}, []bool{false, false}},
		{"inserted before", []Counter{c("a", 5)}, []Counter{c("new", 2), c("a", 6)}, []uint64{2, 1}, []bool{false, false}},
		{"reset", []Counter{c("a", 50)}, []Counter{c("a", 3)}, []uint64{3}, []bool{true}},
		{"equal texts by occurrence", []Counter{c("x", 1), c("x", 10)}, []Counter{c("x", 2), c("x", 15)}, []uint64{1, 5}, []bool{false, false}},
		{"removed rule", []Counter{c("a", 1), c("gone", 9)}, []Counter{c("a", 1)}, []uint64{0}, []bool{false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CounterDelta(tc.prev, tc.cur)
			for i, g := range got {
				if g.DeltaPackets != tc.want[i] || g.Reset != tc.reset[i] || g.DeltaBytes != tc.want[i]*60 {
					t.Errorf("%s: delta %d bytes %d reset %v, want %d reset %v", g.Text, g.DeltaPackets, g.DeltaBytes, g.Reset, tc.want[i], tc.reset[i])
				}
			}
		})
	}
	top := Top(CounterDelta([]Counter{c("a", 5), c("b", 1), c("z", 0)}, []Counter{c("a", 6), c("b", 9), c("z", 0)}), 5, true)
	if len(top) != 2 || top[0].Text != "b" || top[1].Text != "a" {
		t.Fatalf("top by delta: %+v", top)
	}
}

func TestUncounted(t *testing.T) {
	rs := &Ruleset{Tables: []*Table{{Source: SourceNft, Family: "inet", Name: "filter", Chains: []*Chain{{Name: "input", Hook: "input", Rules: []*Rule{
		{Text: "tcp dport 22 accept"}, {Text: "counter drop", Counter: true}, {Text: "accept", Comment: GuardCommentPrefix + " tx"},
	}}}}}}
	if n := Uncounted(rs); n != 1 {
		t.Fatalf("uncounted %d, want 1", n)
	}
	if cs := Counters(rs); len(cs) != 1 || cs[0].Text != "counter drop" {
		t.Fatalf("nft counters %+v (no policy counter on nft)", cs)
	}
}
