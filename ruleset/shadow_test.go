package ruleset

import "testing"

func TestShadowed(t *testing.T) {
	tests := []struct {
		name  string
		save  string // the INPUT rules, iptables-save syntax
		want  [][2]int
		noneT bool
	}{
		{"catch-all accept shadows all after", "-A INPUT -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\n", [][2]int{{1, 0}}, false},
		{"same port twice", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j DROP\n", [][2]int{{1, 0}}, false},
		{"wider port range first", "-A INPUT -p tcp -m tcp --dport 1000:2000 -j DROP\n-A INPUT -p tcp -m tcp --dport 1500 -j ACCEPT\n", [][2]int{{1, 0}}, false},
		{"narrower first is fine", "-A INPUT -p tcp -m tcp --dport 1500 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 1000:2000 -j DROP\n", nil, true},
		{"cidr containment", "-A INPUT -s 10.0.0.0/8 -j DROP\n-A INPUT -s 10.1.2.0/24 -p tcp -j ACCEPT\n", [][2]int{{1, 0}}, false},
		{"cidr not contained", "-A INPUT -s 10.1.0.0/16 -j DROP\n-A INPUT -s 10.0.0.0/8 -j ACCEPT\n", nil, true},
		{"address in cidr", "-A INPUT -s 192.0.2.0/24 -j DROP\n-A INPUT -s 192.0.2.7/32 -j ACCEPT\n", [][2]int{{1, 0}}, false},
		{"different protocol", "-A INPUT -p udp -m udp --dport 53 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 53 -j DROP\n", nil, true},
		{"multiport set contains", "-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 443 -j DROP\n", [][2]int{{1, 0}}, false},
		{"ct state subset", "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -m conntrack --ctstate ESTABLISHED -p tcp -j DROP\n", [][2]int{{1, 0}}, false},
		{"ct state not subset", "-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j DROP\n", nil, true},
		{"interface wildcard", "-A INPUT -i eth+ -j DROP\n-A INPUT -i eth0 -p tcp -j ACCEPT\n", [][2]int{{1, 0}}, false},
		{"other interface", "-A INPUT -i eth0 -j DROP\n-A INPUT -i eth1 -j ACCEPT\n", nil, true},
		{"a jump never shadows", "-A INPUT -j OTHER\n-A INPUT -p tcp -j ACCEPT\n", nil, true},
		{"a limit never shadows", "-A INPUT -m limit --limit 5/min -j ACCEPT\n-A INPUT -m limit --limit 5/min -j ACCEPT\n", nil, true},
		{"a set never shadows", "-A INPUT -m set --match-set bl src -j DROP\n-A INPUT -m set --match-set bl src -j ACCEPT\n", nil, true},
		{"identical negation", "-A INPUT ! -s 10.0.0.0/8 -j DROP\n-A INPUT ! -s 10.0.0.0/8 -p tcp -j ACCEPT\n", [][2]int{{1, 0}}, false},
		{"negation does not imply a plain match", "-A INPUT ! -s 10.0.0.0/8 -j DROP\n-A INPUT -s 192.0.2.0/24 -j ACCEPT\n", nil, true},
		{"log is not terminal", "-A INPUT -j LOG\n-A INPUT -j DROP\n", nil, true},
		{"first catcher named", "-A INPUT -p tcp -j DROP\n-A INPUT -j DROP\n-A INPUT -p tcp --dport 22 -j ACCEPT\n", [][2]int{{1, -1}, {2, 0}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ParseIptablesSave(SourceIptablesNft, []byte("*filter\n:INPUT ACCEPT [0:0]\n:OTHER - [0:0]\n"+tc.save+"COMMIT\n"))
			if err != nil {
				t.Fatal(err)
			}
			tb := rs.Tables[0]
			got := Shadowed(tb, tb.Chain("INPUT"))
			var want [][2]int
			for _, w := range tc.want {
				if w[1] >= 0 {
					want = append(want, w)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("shadowed %+v, want %v", got, want)
			}
			for i, w := range want {
				if got[i].Rule != w[0] || got[i].By != w[1] {
					t.Fatalf("shadow %d: rule %d by %d, want %v", i, got[i].Rule, got[i].By, w)
				}
			}
		})
	}
	// nft syntax, from the real sample
	rs := &Ruleset{Tables: []*Table{{Source: SourceNft, Family: "inet", Name: "f", Chains: []*Chain{{Name: "in", Hook: "input", Rules: []*Rule{
		{Text: "tcp dport { 22, 80 } accept", Matches: []Match{{Field: "l4proto", Value: "tcp"}, {Field: "dport", Value: "{22,80}"}}, Verdict: Verdict{Kind: VerdictAccept}},
		{Text: "tcp dport 22 ct state new accept", Matches: []Match{{Field: "l4proto", Value: "tcp"}, {Field: "dport", Value: "22"}, {Field: "ct state", Value: "new"}}, Verdict: Verdict{Kind: VerdictAccept}},
		{Text: "quota 10 mbytes drop", Verdict: Verdict{Kind: VerdictDrop}},
		{Text: "udp dport 53 accept", Matches: []Match{{Field: "l4proto", Value: "udp"}, {Field: "dport", Value: "53"}}, Verdict: Verdict{Kind: VerdictAccept}},
	}}}}}}
	got := Shadowed(rs.Tables[0], rs.Tables[0].Chains[0])
	if len(got) != 1 || got[0].Rule != 1 || got[0].By != 0 {
		t.Fatalf("nft: %+v, want rule 2 shadowed by rule 1 (and a quota never catches all)", got)
	}
}
