package ruleset

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseIptablesSaveSample(t *testing.T) {
	rs, err := ParseIptablesSave(SourceIptablesNft, readFile(t, "testdata/ipt1-nft.save"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Tables) != 4 {
		t.Fatalf("%d tables, want 4", len(rs.Tables))
	}
	f := rs.Table("iptables-nft filter")
	if f == nil || f.Family != "ip" {
		t.Fatalf("no ip filter table: %+v", rs.Tables)
	}
	in := f.Chain("INPUT")
	if in.Hook != "input" || in.Policy != "drop" || in.Type != "filter" || in.Priority != 0 || in.Owner != "" {
		t.Errorf("INPUT header %+v", in)
	}
	if out := f.Chain("OUTPUT"); out.PolicyPackets != 6 || out.PolicyBytes != 300 {
		t.Errorf("OUTPUT policy counters %d:%d, want 6:300", out.PolicyPackets, out.PolicyBytes)
	}
	if c := f.Chain("DOCKER-USER"); c.Base() || c.Owner != OwnerDocker {
		t.Errorf("DOCKER-USER %+v", c)
	}
	if c := f.Chain("f2b-sshd"); c.Owner != OwnerFail2ban {
		t.Errorf("f2b-sshd owner %q", c.Owner)
	}
	if c := f.Chain("mychain"); c.Owner != "" {
		t.Errorf("mychain owner %q", c.Owner)
	}
	if p := rs.Table("iptables-nft nat").Chain("POSTROUTING"); p.Priority != 100 || p.Type != "nat" {
		t.Errorf("nat POSTROUTING %+v", p)
	}
	if o := rs.Table("iptables-nft mangle").Chain("OUTPUT"); o.Type != "route" || o.Priority != -150 {
		t.Errorf("mangle OUTPUT %+v", o)
	}
	type want struct {
		text    string
		matches []Match
		verdict Verdict
		comment string
	}
	wants := []want{
		{"-i lo -j ACCEPT", []Match{{Field: "iif", Value: "lo"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", []Match{{Field: "ct state", Value: "established,related"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT", []Match{{Field: "l4proto", Value: "tcp"}, {Field: "ct state", Value: "new"}, {Field: "dport", Value: "22"}}, Verdict{Kind: VerdictAccept}, ""},
		{`-p tcp -m tcp --dport 22 -m comment --comment "allow \"ssh\"" -j ACCEPT`, []Match{{Field: "l4proto", Value: "tcp"}, {Field: "dport", Value: "22"}}, Verdict{Kind: VerdictAccept}, `allow "ssh"`},
		{"-s 10.0.0.0/8 ! -i eth0 -j DROP", []Match{{Field: "saddr", Value: "10.0.0.0/8"}, {Field: "iif", Value: "eth0", Negate: true}}, Verdict{Kind: VerdictDrop}, ""},
		{"-p tcp -m tcp ! --dport 23 -j DROP", []Match{{Field: "l4proto", Value: "tcp"}, {Field: "dport", Value: "23", Negate: true}}, Verdict{Kind: VerdictDrop}, ""},
		{"-p udp -m multiport --dports 53,123,1000:2000 -j ACCEPT", []Match{{Field: "l4proto", Value: "udp"}, {Field: "dport", Value: "{53,123,1000-2000}"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-p tcp -m multiport --sports 80,443 -j ACCEPT", []Match{{Field: "l4proto", Value: "tcp"}, {Field: "sport", Value: "{80,443}"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-m set --match-set blocklist src -j DROP", []Match{{Field: "set", Value: "blocklist src"}}, Verdict{Kind: VerdictDrop}, ""},
		{"-m set ! --match-set allow src,dst -j DROP", []Match{{Field: "set", Value: "allow src,dst", Negate: true}}, Verdict{Kind: VerdictDrop}, ""},
		{`-m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix "in: "`, []Match{{Field: "limit", Value: "5/minute burst 10 packets"}}, Verdict{Kind: VerdictLog, Target: "LOG"}, ""},
		{"-j NFLOG --nflog-group 2", nil, Verdict{Kind: VerdictLog, Target: "NFLOG"}, ""},
		{"-p icmp -m icmp --icmp-type 8 -j ACCEPT", []Match{{Field: "l4proto", Value: "icmp"}, {Field: "icmp type", Value: "echo-request"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-m mark --mark 0x1 -j ACCEPT", []Match{{Field: "mark", Value: "0x00000001"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-j f2b-sshd", nil, Verdict{Kind: VerdictJump, Target: "f2b-sshd"}, ""},
		{"-g mychain", nil, Verdict{Kind: VerdictGoto, Target: "mychain"}, ""},
		{`-m comment --comment "plain comment" -j RETURN`, nil, Verdict{Kind: VerdictReturn}, "plain comment"},
		{"-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT", []Match{{Field: "l4proto", Value: "tcp"}, {Field: "other", Value: "tcp --tcp-flags FIN,SYN,RST,ACK SYN"}}, Verdict{Kind: VerdictAccept}, ""},
		{"-m addrtype --dst-type LOCAL -j ACCEPT", []Match{{Field: "other", Value: "addrtype --dst-type LOCAL"}}, Verdict{Kind: VerdictAccept}, ""},
	}
	if len(in.Rules) != len(wants) {
		t.Fatalf("INPUT has %d rules, want %d", len(in.Rules), len(wants))
	}
	for i, w := range wants {
		r := in.Rules[i]
		if r.Text != w.text || !reflect.DeepEqual(r.Matches, w.matches) || r.Verdict != w.verdict || r.Comment != w.comment || !r.Counter {
			t.Errorf("rule %d:\n got  %q %+v %+v %q\n want %q %+v %+v %q", i+1, r.Text, r.Matches, r.Verdict, r.Comment, w.text, w.matches, w.verdict, w.comment)
		}
	}
	if r := in.Rules[0]; r.Packets != 6 || r.Bytes != 300 || r.Line != 28 {
		t.Errorf("first rule counters %d:%d line %d, want 6:300 line 28", r.Packets, r.Bytes, r.Line)
	}
	nat := rs.Table("iptables-nft nat")
	for i, v := range []Verdict{{Kind: VerdictJump, Target: "KUBE-SERVICES"}, {Kind: VerdictNat, Target: "DNAT"}, {Kind: VerdictNat, Target: "REDIRECT"}} {
		if got := nat.Chain("PREROUTING").Rules[i].Verdict; got != v {
			t.Errorf("nat rule %d verdict %+v, want %+v", i+1, got, v)
		}
	}
	if v := rs.Table("iptables-nft mangle").Chain("PREROUTING").Rules[1].Verdict; v != (Verdict{Kind: VerdictOther, Target: "TRACE"}) {
		t.Errorf("TRACE verdict %+v", v)
	}

	// Without -c: the same rules, no counters.
	rs2, err := ParseIptablesSave(SourceIptablesNft, readFile(t, "testdata/ipt1-nft-nocounters.save"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(rs2.Canonical()), string(rs.Canonical()); got != want {
		t.Errorf("canonical forms differ with and without -c:\n%s\n---\n%s", got, want)
	}
}

func TestParseIptablesSaveFamily(t *testing.T) {
	rs, err := ParseIptablesSave(SourceIp6tablesNft, readFile(t, "testdata/ip6t1-nft.save"))
	if err != nil {
		t.Fatal(err)
	}
	tb := rs.Table("ip6tables-nft filter")
	if tb == nil || tb.Family != "ip6" {
		t.Fatalf("tables %+v", rs.Tables)
	}
	if m := tb.Chain("INPUT").Rules[0].Matches; !reflect.DeepEqual(m, []Match{{Field: "saddr", Value: "fe80::/10"}, {Field: "l4proto", Value: "ipv6-icmp"}}) {
		t.Errorf("matches %+v", m)
	}
}

// Older iptables-save versions print the "!" after the option.
func TestParseIptablesSaveOldNegation(t *testing.T) {
	rs, err := ParseIptablesSave(SourceIptablesLegacy, []byte("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport ! 23 -s ! 10.0.0.1/32 -j DROP\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Match{{Field: "l4proto", Value: "tcp"}, {Field: "dport", Value: "23", Negate: true}, {Field: "saddr", Value: "10.0.0.1", Negate: true}}
	if got := rs.Tables[0].Chains[0].Rules[0].Matches; !reflect.DeepEqual(got, want) {
		t.Errorf("matches %+v, want %+v", got, want)
	}
}

func TestParseIptablesSaveErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-A INPUT -j ACCEPT\n", "line 1: rule outside a table"},
		{"*filter\n:INPUT ACCEPT [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n", "line 3: rule for undeclared chain OUTPUT"},
		{"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"open\nCOMMIT\n", "line 3: unterminated quote"},
		{"*filter\n:INPUT ACCEPT [0:0]\n", "table filter has no COMMIT"},
		{"*filter\n:INPUT ACCEPT [x:0]\nCOMMIT\n", "line 2: chain INPUT: bad counters"},
		{"*filter\n:mine ACCEPT\nCOMMIT\n", "line 2: chain mine has policy ACCEPT but is not a built-in chain"},
		{"*filter\n:INPUT ACCEPT\n[1:2 -A INPUT\nCOMMIT\n", "line 3: bad counters"},
		{"*filter\n:INPUT ACCEPT\n-A INPUT -p\nCOMMIT\n", "line 3: option -p needs a value"},
		{"*filter\n:INPUT ACCEPT\n-A INPUT !\nCOMMIT\n", "line 3: \"!\" at the end"},
		{"*filter\n:INPUT ACCEPT\n-A INPUT tcp\nCOMMIT\n", "line 3: expected an option"},
		{"*filter\n:INPUT ACCEPT\n-I INPUT -j DROP\nCOMMIT\n", "line 3: not a rule"},
		{"COMMIT\n", "line 1: COMMIT outside a table"},
		{"*filter\n*nat\n", "line 2: table nat starts before"},
		{"*filter\n:INPUT ACCEPT\n:INPUT ACCEPT\nCOMMIT\n", "line 3: chain INPUT declared twice"},
	} {
		_, err := ParseIptablesSave(SourceIptablesLegacy, []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestIptTokens(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`-m comment --comment "allow \"ssh\"" -j ACCEPT`, []string{"-m", "comment", "--comment", `allow "ssh"`, "-j", "ACCEPT"}},
		{`--log-prefix "a\\b "`, []string{"--log-prefix", `a\b `}},
		{"  -s   1.2.3.4  ", []string{"-s", "1.2.3.4"}},
		{`""`, []string{""}},
	} {
		toks, err := iptTokens(tc.in, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tk := range toks {
			got = append(got, tk.s)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}
