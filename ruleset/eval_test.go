package ruleset

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The fixtures in testdata/eval are the real tools' output: gen.sh loads
// NAME.nft / NAME.rules / NAME.rules6 / NAME.ipset into a throwaway
// network namespace and saves what nft -j, iptables-nft-save,
// ip6tables-nft-save and ipset save print.

// evalNft is NAME.json.
func evalNft(t testing.TB, name string) *Ruleset {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/eval", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseNftJSON(b)
	if err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return rs
}

// evalIpt is NAME.save (+ NAME.save6), with NAME.ipset.save's sets when
// withSets.
func evalIpt(t testing.TB, name string, withSets bool) *Ruleset {
	t.Helper()
	var parts []*Ruleset
	for _, f := range []struct {
		ext string
		src Source
	}{{".save", SourceIptablesNft}, {".save6", SourceIp6tablesNft}} {
		b, err := os.ReadFile(filepath.Join("testdata/eval", name+f.ext))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		rs, err := ParseIptablesSave(f.src, b)
		if err != nil {
			t.Fatalf("%s%s: %v", name, f.ext, err)
		}
		parts = append(parts, rs)
	}
	if len(parts) == 0 {
		t.Fatalf("%s: no .save fixture", name)
	}
	if b, err := os.ReadFile(filepath.Join("testdata/eval", name+".ipset.save")); err == nil && withSets {
		sets, err := ParseIpsetSave(b)
		if err != nil {
			t.Fatalf("%s.ipset.save: %v", name, err)
		}
		parts = append(parts, &Ruleset{Sets: sets})
	}
	return Merge(parts...)
}

// sshIn is a client's SSH packet to the host: from src:50000 to the
// host's port on the host's address of src's family.
func sshIn(src string, port uint16, state, iif string) Packet {
	s := netip.MustParseAddr(src)
	p := Packet{Family: "ip", Iif: iif, Src: s, Dst: netip.MustParseAddr("10.200.0.1"), SrcPort: 50000, DstPort: port, Proto: "tcp", State: state}
	if s.Is6() {
		p.Family, p.Dst = "ip6", netip.MustParseAddr("2001:db8:1::1")
	}
	return p
}

type evalCase struct {
	name    string
	fixture string
	syntax  string // "nft", "ipt", "both"
	noSets  bool   // ipt: without the ipset fixture
	hook    string // "" = EvaluateSSH
	p       Packet
	verdict string
	table   string // want Decision.Table: exact for one syntax, or "nft:...|ipt:..."
	chain   string // want Decision.Chain, "nft|ipt" when they differ
	rule    string // a part of the deciding rule's text ("" = no rule: policy or accept)
	policy  bool
	reason  string // parts of Reason, "|"-separated, all required
}

func pick(s, syntax string) string {
	if a, b, ok := strings.Cut(s, "|"); ok {
		if syntax == "nft" {
			return a
		}
		return b
	}
	return s
}

var evalCases = []evalCase{
	// ct state new tcp dport 22 drop
	{name: "new ssh dropped", fixture: "newdrop", syntax: "both", p: sshIn("192.0.2.5", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet filter|iptables-nft filter", chain: "input|INPUT", rule: "22"},
	{name: "established ssh passes", fixture: "newdrop", syntax: "both", p: sshIn("192.0.2.5", 22, "established", "eth0"), verdict: "accept"},
	{name: "new on another port passes", fixture: "newdrop", syntax: "both", p: sshIn("192.0.2.5", 2222, "new", "eth0"), verdict: "accept"},

	// policy drop, SSH only from one address
	{name: "allowed source", fixture: "policyfrom", syntax: "both", p: sshIn("192.0.2.10", 22, "new", "eth0"), verdict: "accept"},
	{name: "other source hits the policy", fixture: "policyfrom", syntax: "both", p: sshIn("192.0.2.11", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet filter|iptables-nft filter", chain: "input|INPUT", policy: true},
	{name: "allowed source v6", fixture: "policyfrom", syntax: "both", p: sshIn("2001:db8::10", 22, "new", "eth0"), verdict: "accept"},
	{name: "other source v6", fixture: "policyfrom", syntax: "both", p: sshIn("2001:db8::11", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet filter|ip6tables-nft filter", chain: "input|INPUT", policy: true},
	{name: "allowed v4 source does not open v6", fixture: "policyfrom", syntax: "both", p: sshIn("2001:db8::10", 2222, "new", "eth0"),
		verdict: "drop", policy: true},

	// accept in one table, drop in another table's chain on the same hook
	{name: "both tables accept", fixture: "twotables", syntax: "both", p: sshIn("192.0.2.5", 22, "new", "eth0"), verdict: "accept"},
	{name: "accept in one table, drop policy in another", fixture: "twotables", syntax: "nft", p: sshIn("203.0.113.5", 22, "new", "eth0"),
		verdict: "drop", table: "nft ip strict", chain: "input", policy: true},
	{name: "accept in filter, drop in mangle INPUT", fixture: "twotables", syntax: "ipt", p: sshIn("203.0.113.5", 22, "new", "eth0"),
		verdict: "drop", table: "iptables-nft mangle", chain: "INPUT", rule: "! -s 192.0.2.0/24"},
	{name: "ip table does not see v6", fixture: "twotables", syntax: "nft", p: sshIn("2001:db8::5", 22, "new", "eth0"), verdict: "accept"},
	{name: "prerouting before input", fixture: "twotables", syntax: "nft", p: sshIn("198.51.100.66", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet early", chain: "pre", rule: "198.51.100.66"},
	{name: "lower priority first", fixture: "twotables", syntax: "nft", p: sshIn("198.51.100.55", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet early", chain: "input", rule: "198.51.100.55"},

	// ct state established,related accept; drop
	{name: "existing session passes", fixture: "estab", syntax: "both", p: sshIn("192.0.2.5", 22, "established", "eth0"), verdict: "accept"},
	{name: "new login fails", fixture: "estab", syntax: "both", p: sshIn("192.0.2.5", 22, "new", "eth0"),
		verdict: "drop", chain: "input|INPUT", rule: "drop|-j DROP"},
	{name: "existing session passes v6", fixture: "estab", syntax: "both", p: sshIn("2001:db8::5", 22, "established", "eth0"), verdict: "accept"},
	{name: "new login fails v6", fixture: "estab", syntax: "both", p: sshIn("2001:db8::5", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet filter|ip6tables-nft filter", rule: "drop|-j DROP"},

	// matches, chains
	{name: "iif wildcard jumps, chain accepts", fixture: "matches", syntax: "both", p: sshIn("10.1.1.1", 22, "new", "veth0"),
		verdict: "accept"},
	{name: "negated CIDR returns", fixture: "matches", syntax: "both", p: sshIn("172.16.0.1", 22, "new", "veth0"),
		verdict: "drop", chain: "input|INPUT", policy: true},
	{name: "other interface", fixture: "matches", syntax: "both", p: sshIn("10.1.1.1", 22, "new", "eth0"),
		verdict: "drop", policy: true},
	{name: "goto then nested jump accepts", fixture: "matches", syntax: "both", p: sshIn("198.51.100.5", 22, "new", "eth0"), verdict: "accept"},
	{name: "drop inside a goto chain", fixture: "matches", syntax: "both", p: sshIn("198.51.100.7", 22, "new", "eth0"),
		verdict: "drop", chain: "partners", rule: "198.51.100.7"},
	{name: "goto does not come back", fixture: "matches", syntax: "both", p: sshIn("198.51.100.5", 8050, "new", "eth0"),
		verdict: "drop", chain: "input|INPUT", policy: true},
	{name: "port range", fixture: "matches", syntax: "both", p: sshIn("10.1.1.1", 8050, "new", "eth0"), verdict: "accept"},
	{name: "port set", fixture: "matches", syntax: "both", p: sshIn("10.1.1.1", 2222, "new", "eth0"), verdict: "accept"},
	{name: "ip-only table drops v4", fixture: "matches", syntax: "both", p: sshIn("203.0.113.9", 2222, "new", "eth0"),
		verdict: "drop", table: "nft ip only4|iptables-nft raw", rule: "203.0.113.0/24"},
	{name: "inet table sees v6, ip table does not", fixture: "matches", syntax: "nft", p: sshIn("2001:db8::9", 2222, "new", "eth0"), verdict: "accept"},
	{name: "unknown interface matters", fixture: "matches", syntax: "both", p: sshIn("10.1.1.1", 22, "new", ""),
		verdict: "undecided", reason: "veth|interface is unknown"},
	{name: "unknown interface does not matter", fixture: "matches", syntax: "both", p: sshIn("172.16.0.1", 2222, "new", ""), verdict: "accept"},
	{name: "l4proto", fixture: "matches", syntax: "both", hook: "input",
		p:       Packet{Family: "ip", Iif: "eth0", Src: netip.MustParseAddr("10.1.1.1"), Dst: netip.MustParseAddr("10.200.0.1"), SrcPort: 5353, DstPort: 53, Proto: "udp", State: "new"},
		verdict: "accept"},
	{name: "reply dropped on oif wildcard", fixture: "matches", syntax: "both", p: sshIn("198.51.100.5", 22, "new", "wan0"),
		verdict: "drop", chain: "output|OUTPUT", rule: "22"},
	{name: "reply on another port passes", fixture: "matches", syntax: "both", p: sshIn("10.1.1.1", 2222, "new", "wan0"), verdict: "accept"},

	// sets
	{name: "set element CIDR", fixture: "sets", syntax: "both", p: sshIn("10.1.2.5", 22, "new", "eth0"),
		verdict: "drop", chain: "input|INPUT", rule: "@blocked|blocked src"},
	{name: "set element address", fixture: "sets", syntax: "both", p: sshIn("192.0.2.1", 22, "new", "eth0"),
		verdict: "drop", rule: "@blocked|blockip src"},
	{name: "set element range", fixture: "sets", syntax: "nft", p: sshIn("172.16.0.5", 22, "new", "eth0"),
		verdict: "drop", rule: "@blocked"},
	{name: "interval set covers the /24", fixture: "sets", syntax: "nft", p: sshIn("10.1.2.200", 22, "new", "eth0"),
		verdict: "drop", rule: "@blocked"},
	{name: "ipset nomatch element excludes", fixture: "sets", syntax: "ipt", p: sshIn("10.1.2.200", 22, "new", "eth0"), verdict: "accept"},
	{name: "not in any set", fixture: "sets", syntax: "both", p: sshIn("10.5.5.5", 22, "new", "eth0"), verdict: "accept"},
	{name: "concatenated set accepts", fixture: "sets", syntax: "both", p: sshIn("10.9.0.1", 22, "new", "eth0"),
		verdict: "accept"},
	{name: "v6 set element", fixture: "sets", syntax: "nft", p: sshIn("2001:db8::bad", 22, "new", "eth0"),
		verdict: "drop", rule: "@blocked6"},
	{name: "port set", fixture: "sets", syntax: "nft", p: sshIn("10.5.5.5", 2222, "new", "eth0"), verdict: "accept"},
	{name: "port not in set", fixture: "sets", syntax: "nft", p: sshIn("10.5.5.5", 2223, "new", "eth0"), verdict: "drop", policy: true},
	{name: "run-time set matters", fixture: "sets", syntax: "nft", p: sshIn("10.5.5.5", 2200, "new", "eth0"),
		verdict: "undecided", reason: "@knocked|filled by the packet path"},
	{name: "ipset not read", fixture: "sets", syntax: "ipt", noSets: true, p: sshIn("10.5.5.5", 22, "new", "eth0"),
		verdict: "undecided", reason: "blocked src|not in the ruleset"},

	// ipset types
	{name: "hash:net,port", fixture: "ipsets", syntax: "ipt", p: sshIn("10.7.1.1", 22, "new", "eth0"), verdict: "accept"},
	{name: "hash:net,port, other port", fixture: "ipsets", syntax: "ipt", p: sshIn("10.7.1.1", 23, "new", "eth0"), verdict: "drop", policy: true},
	{name: "hash:net,iface", fixture: "ipsets", syntax: "ipt", p: sshIn("10.8.1.1", 23, "new", "veth0"), verdict: "accept"},
	{name: "hash:net,iface, other interface", fixture: "ipsets", syntax: "ipt", p: sshIn("10.8.1.1", 23, "new", "eth0"), verdict: "drop", policy: true},
	{name: "hash:net,iface, unknown interface", fixture: "ipsets", syntax: "ipt", p: sshIn("10.8.1.1", 23, "new", ""), verdict: "undecided", reason: "ifnets|interface is unknown"},
	{name: "bitmap:port", fixture: "ipsets", syntax: "ipt", p: sshIn("192.0.2.5", 2222, "new", "eth0"), verdict: "accept"},
	{name: "inet6 hash:net", fixture: "ipsets", syntax: "ipt", p: sshIn("2001:db8:bad::1", 22, "new", "eth0"), verdict: "drop", table: "ip6tables-nft filter", rule: "v6 src"},
	{name: "inet6 hash:net before the port", fixture: "ipsets", syntax: "ipt", p: sshIn("2001:db8:bad::1", 2222, "new", "eth0"), verdict: "drop", rule: "v6 src"},
	{name: "bitmap:port has no family", fixture: "ipsets", syntax: "ipt", p: sshIn("2001:db8::1", 2222, "new", "eth0"), verdict: "accept"},
	{name: "inet6 hash:net, outside", fixture: "ipsets", syntax: "ipt", p: sshIn("2001:db8::1", 22, "new", "eth0"), verdict: "drop", policy: true},

	// matches beyond the typed fields
	{name: "a SYN to 22", fixture: "others", syntax: "both", p: sshIn("192.0.2.5", 22, "new", "eth0"), verdict: "accept"},
	{name: "established is no SYN", fixture: "others", syntax: "both", p: sshIn("192.0.2.5", 22, "established", "eth0"), verdict: "accept"},
	{name: "address range", fixture: "others", syntax: "both", p: sshIn("192.0.2.150", 22, "new", "eth0"),
		verdict: "drop", rule: "192.0.2.100-192.0.2.200"},
	{name: "ip protocol in an inet table", fixture: "others", syntax: "nft", p: sshIn("192.0.2.5", 2200, "new", "eth0"), verdict: "accept"},
	{name: "ip protocol does not match IPv6", fixture: "others", syntax: "nft", p: sshIn("2001:db8::5", 2200, "new", "eth0"), verdict: "drop", policy: true},
	{name: "meta nfproto ipv6", fixture: "others", syntax: "nft", p: sshIn("2001:db8:bad::5", 22, "new", "eth0"), verdict: "drop", rule: "2001:db8:bad::/48"},
	{name: "multiport --ports", fixture: "others", syntax: "ipt", p: sshIn("192.0.2.5", 2300, "new", "eth0"), verdict: "accept"},
	{name: "named verdict map by a concatenated key", fixture: "others", syntax: "nft", p: sshIn("192.0.2.5", 2300, "new", "eth0"), verdict: "accept"},
	{name: "named verdict map misses", fixture: "others", syntax: "nft", p: sshIn("192.0.2.5", 2301, "new", "eth0"), verdict: "drop", policy: true},
	{name: "ct state verdict map", fixture: "others", syntax: "nft", p: sshIn("192.0.2.5", 2301, "established", "eth0"), verdict: "accept"},
	{name: "verdict map jumps", fixture: "others", syntax: "nft", p: sshIn("192.0.2.5", 2400, "new", "eth0"), verdict: "accept"},
	{name: "verdict map jumps, chain falls through", fixture: "others", syntax: "nft", p: sshIn("198.51.100.5", 2400, "new", "eth0"), verdict: "drop", policy: true},
	{name: "verdict map drops", fixture: "others", syntax: "nft", p: sshIn("192.0.2.5", 2500, "new", "eth0"), verdict: "drop", rule: "2500 : drop"},

	// TCP flags, packet type, ct status
	{name: "a lone SYN", fixture: "flags", syntax: "both", p: sshIn("192.0.2.5", 22, "new", "eth0"), verdict: "accept"},
	{name: "established ACK", fixture: "flags", syntax: "both", p: sshIn("192.0.2.5", 22, "established", "eth0"), verdict: "accept"},
	{name: "ACK or PSH,ACK decides", fixture: "flags", syntax: "both", p: sshIn("192.0.2.5", 2222, "established", "eth0"),
		verdict: "undecided", reason: "2222"},
	{name: "a SYN is no lone ACK", fixture: "flags", syntax: "both", p: sshIn("192.0.2.5", 2222, "new", "eth0"), verdict: "drop", policy: true},

	// nat, raw, mangle, marks, owners, counters/log/limit
	{name: "counter, log and limit do not decide", fixture: "special", syntax: "both", p: sshIn("192.0.2.5", 22, "new", "eth0"), verdict: "accept"},
	{name: "DNAT of the SSH path", fixture: "special", syntax: "both", p: sshIn("192.0.2.50", 22, "new", "eth0"),
		verdict: "undecided", reason: "DNAT|10.9.9.9"},
	{name: "nat chains do not see established packets", fixture: "special", syntax: "both", p: sshIn("192.0.2.50", 22, "established", "eth0"), verdict: "accept"},
	{name: "limit decides", fixture: "special", syntax: "both", p: sshIn("192.0.2.60", 22, "new", "eth0"),
		verdict: "undecided", reason: "5/minute|rate limit"},
	{name: "mark that does not matter", fixture: "special", syntax: "both", p: sshIn("192.0.2.5", 2222, "new", "eth0"), verdict: "accept"},
	{name: "mark that matters", fixture: "special", syntax: "both", p: sshIn("192.0.2.61", 22, "new", "eth0"),
		verdict: "undecided", reason: "mark"},
	{name: "setting a mark does not decide", fixture: "special", syntax: "both", p: sshIn("192.0.2.63", 22, "new", "eth0"), verdict: "accept"},
	{name: "skuid accept then drop", fixture: "special", syntax: "both", p: sshIn("192.0.2.70", 2222, "new", "eth0"),
		verdict: "undecided", reason: "owner of the sending socket"},
	{name: "cgroup", fixture: "special", syntax: "both", p: sshIn("192.0.2.71", 2222, "new", "eth0"),
		verdict: "undecided", reason: "cgroup|1234"},
	{name: "skuid drop", fixture: "special", syntax: "both", p: sshIn("192.0.2.72", 2222, "new", "eth0"),
		verdict: "undecided", reason: "owner of the sending socket"},
	{name: "raw chain runs before conntrack", fixture: "special", syntax: "both", p: sshIn("192.0.2.80", 22, "established", "eth0"),
		verdict: "drop", table: "nft ip raw|iptables-nft raw", chain: "prerouting|PREROUTING", rule: "invalid|INVALID"},
	{name: "raw (-300) before filter", fixture: "special", syntax: "ipt", p: sshIn("192.0.2.77", 22, "new", "eth0"),
		verdict: "drop", table: "iptables-nft raw", chain: "PREROUTING"},
	{name: "mangle (-150) before filter", fixture: "special", syntax: "ipt", p: sshIn("192.0.2.66", 22, "new", "eth0"),
		verdict: "drop", table: "iptables-nft mangle", chain: "PREROUTING"},
	{name: "nat (-100) before filter", fixture: "special", syntax: "ipt", p: sshIn("192.0.2.88", 22, "new", "eth0"),
		verdict: "undecided", reason: "iptables-nft nat chain PREROUTING|DNAT"},
	{name: "filter drops what passed the others", fixture: "special", syntax: "ipt", p: sshIn("192.0.2.99", 22, "new", "eth0"),
		verdict: "drop", table: "iptables-nft filter", chain: "INPUT", rule: "192.0.2.99"},
	{name: "masquerade on the way out does not drop", fixture: "special", syntax: "both", hook: "output",
		p:       Packet{Family: "ip", Oif: "wan0", Src: netip.MustParseAddr("10.200.0.1"), Dst: netip.MustParseAddr("192.0.2.5"), SrcPort: 50000, DstPort: 22, Proto: "tcp", State: "new"},
		verdict: "accept"},

	// netdev ingress: nft 1.0.6's JSON does not say which device
	{name: "ingress chain on an unnamed device", fixture: "netdev", syntax: "nft", p: sshIn("192.0.2.5", 22, "new", "eth0"),
		verdict: "undecided", reason: "nft netdev lockout chain ing|device"},

	// lifeline's guard rule: a set lookup by port, negated
	{name: "armed guard does not accept yet", fixture: "guard", syntax: "nft", p: sshIn("192.0.2.5", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet armed", policy: true},
	{name: "expired guard accepts", fixture: "guard", syntax: "nft", p: sshIn("192.0.2.6", 22, "new", "eth0"), verdict: "accept"},
	{name: "expired guard, other port", fixture: "guard", syntax: "nft", p: sshIn("192.0.2.6", 2222, "new", "eth0"), verdict: "drop", table: "nft inet expired", rule: "192.0.2.6 drop"},

	// equal priorities
	{name: "equal priorities drop", fixture: "eqprio", syntax: "nft", p: sshIn("192.0.2.9", 22, "new", "eth0"),
		verdict: "drop", table: "nft inet b", chain: "input", rule: "192.0.2.9"},
	{name: "equal priorities accept", fixture: "eqprio", syntax: "nft", p: sshIn("192.0.2.8", 22, "new", "eth0"), verdict: "accept"},
}

func evalRun(rs *Ruleset, c evalCase) Decision {
	if c.hook != "" {
		return Evaluate(rs, c.hook, c.p)
	}
	return EvaluateSSH(rs, c.p)
}

func TestEvaluate(t *testing.T) {
	for _, c := range evalCases {
		syntaxes := []string{c.syntax}
		if c.syntax == "both" {
			syntaxes = []string{"nft", "ipt"}
		}
		for _, syn := range syntaxes {
			t.Run(syn+"/"+c.fixture+"/"+c.name, func(t *testing.T) {
				var rs *Ruleset
				if syn == "nft" {
					rs = evalNft(t, c.fixture)
				} else {
					rs = evalIpt(t, c.fixture, !c.noSets)
				}
				d := evalRun(rs, c)
				checkDecision(t, d, c, syn)
				// The order of tables in the model never changes the result.
				rev := &Ruleset{Sets: rs.Sets}
				for i := len(rs.Tables) - 1; i >= 0; i-- {
					rev.Tables = append(rev.Tables, rs.Tables[i])
				}
				if d2 := evalRun(rev, c); d2.String() != d.String() {
					t.Errorf("tables reversed: %s, in order: %s", d2, d)
				}
			})
		}
	}
}

func checkDecision(t *testing.T, d Decision, c evalCase, syn string) {
	t.Helper()
	if d.Verdict != c.verdict {
		t.Fatalf("verdict %s, want %s: %s (path %v)", d.Verdict, c.verdict, d, d.Path)
	}
	if c.table != "" && d.Table != pick(c.table, syn) {
		t.Errorf("table %q, want %q: %s", d.Table, pick(c.table, syn), d)
	}
	if c.chain != "" && d.Chain != pick(c.chain, syn) {
		t.Errorf("chain %q, want %q: %s", d.Chain, pick(c.chain, syn), d)
	}
	if d.Policy != c.policy {
		t.Errorf("policy %v, want %v: %s", d.Policy, c.policy, d)
	}
	switch {
	case c.rule != "":
		if d.Rule == nil || !strings.Contains(d.Rule.Text, pick(c.rule, syn)) {
			t.Errorf("deciding rule %v, want one with %q: %s", d.Rule, pick(c.rule, syn), d)
		}
	case d.Verdict == "undecided":
		// The rule (or base chain) that could not be evaluated, named in
		// the reason.
		if d.Table == "" || d.Chain == "" || !strings.Contains(d.Reason, d.Table+" chain "+d.Chain) ||
			d.Rule == nil && !strings.Contains(d.Reason, "is bound to") ||
			d.Rule != nil && !strings.Contains(d.Reason, fmt.Sprintf("%q", d.Rule.Text)) {
			t.Errorf("undecided without its rule: %+v", d)
		}
	case d.Verdict != "drop" || c.policy:
		if d.Rule != nil {
			t.Errorf("deciding rule %q, want none: %s", d.Rule.Text, d)
		}
	}
	if d.Verdict == "drop" && d.Table == "" {
		t.Errorf("a drop without its table: %s", d)
	}
	if d.Verdict == "accept" && (d.Table != "" || d.Rule != nil) {
		t.Errorf("an accept by all names a rule: %+v", d)
	}
	if c.reason != "" {
		for _, part := range strings.Split(c.reason, "|") {
			if !strings.Contains(d.Reason, part) {
				t.Errorf("reason %q lacks %q", d.Reason, part)
			}
		}
	} else if d.Reason != "" {
		t.Errorf("reason %q for a %s", d.Reason, d.Verdict)
	}
	if len(d.Path) == 0 && d.Verdict != "accept" {
		t.Errorf("no path: %s", d)
	}
}

// Every case's explanation, pinned: the table, chain, rule text and its
// line or handle, or what could not be evaluated.
func TestDecisionStringGolden(t *testing.T) {
	var b strings.Builder
	for _, c := range evalCases {
		syntaxes := []string{c.syntax}
		if c.syntax == "both" {
			syntaxes = []string{"nft", "ipt"}
		}
		for _, syn := range syntaxes {
			var rs *Ruleset
			if syn == "nft" {
				rs = evalNft(t, c.fixture)
			} else {
				rs = evalIpt(t, c.fixture, !c.noSets)
			}
			d := evalRun(rs, c)
			fmt.Fprintf(&b, "%s/%s/%s\n\t%s\n\tpath %s\n", syn, c.fixture, c.name, d, strings.Join(d.Path, " "))
		}
	}
	golden(t, "testdata/eval/decisions.golden", []byte(b.String()))
}

// Two tables at the same priority: the kernel keeps them in registration
// order, which the model does not know; every order gives one result.
func TestEvaluateEqualPriorityOrder(t *testing.T) {
	rs := evalNft(t, "eqprio")
	var ids []string
	for _, tb := range rs.Tables {
		ids = append(ids, tb.ID())
	}
	sort.Strings(ids)
	want := EvaluateSSH(rs, sshIn("192.0.2.9", 22, "new", "eth0"))
	if want.Verdict != "drop" {
		t.Fatalf("got %s", want)
	}
	for _, perm := range [][]int{{0, 1}, {1, 0}} {
		p := &Ruleset{Tables: []*Table{rs.Tables[perm[0]], rs.Tables[perm[1]]}}
		if got := EvaluateSSH(p, sshIn("192.0.2.9", 22, "new", "eth0")); got.String() != want.String() {
			t.Errorf("order %v: %s, want %s", perm, got, want)
		}
	}
}

// Hand-built rulesets for what the fixtures do not reach: a loop, a
// missing chain, vmaps, unknown input.
func TestEvaluateEdges(t *testing.T) {
	p := sshIn("192.0.2.5", 22, "new", "eth0")
	base := func(policy string, rules ...*Rule) *Ruleset {
		return &Ruleset{Tables: []*Table{{Source: SourceNft, Family: "inet", Name: "t", Chains: []*Chain{
			{Name: "input", Type: "filter", Hook: "input", Policy: policy, Rules: rules},
			{Name: "loop", Rules: []*Rule{{Text: "jump loop", Verdict: Verdict{Kind: VerdictJump, Target: "loop"}}}},
		}}}}
	}
	cases := []struct {
		name    string
		rs      *Ruleset
		p       Packet
		hook    string
		verdict string
		reason  string
	}{
		{"jump loop", base("accept", &Rule{Text: "jump loop", Verdict: Verdict{Kind: VerdictJump, Target: "loop"}}), p, "input", "undecided", "deeper"},
		{"missing chain", base("accept", &Rule{Text: "jump nowhere", Verdict: Verdict{Kind: VerdictJump, Target: "nowhere"}}), p, "input", "undecided", "not in the ruleset"},
		{"vmap finds the port", base("accept", &Rule{Text: "tcp dport vmap { 22 : drop, 80 : accept }", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}), p, "input", "drop", ""},
		{"vmap without the port", base("accept", &Rule{Text: "tcp dport vmap { 2222 : drop, 80 : accept }", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}), p, "input", "accept", ""},
		{"vmap by a concatenated key", base("accept", &Rule{Text: "ip saddr . tcp dport vmap { 192.0.2.0/24 . 22 : jump loop }", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}), p, "input", "undecided", "deeper"},
		{"vmap keyed by numgen", base("accept", &Rule{Text: "numgen random mod 2 vmap { 0 : drop, 1 : accept }", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}), p, "input", "undecided", "verdict map"},
		{"vmap keyed by numgen, accepts only", base("accept", &Rule{Text: "numgen random mod 2 vmap { 0 : accept, 1 : accept }", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}), p, "input", "accept", ""},
		{"empty named vmap", &Ruleset{Tables: []*Table{{Source: SourceNft, Family: "inet", Name: "t",
			Sets: []*Set{{Source: SourceNft, Name: "ports", Type: "inet_service", Map: "verdict"}},
			Chains: []*Chain{{Name: "input", Type: "filter", Hook: "input", Policy: "accept",
				Rules: []*Rule{{Text: "tcp dport vmap @ports", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}}}}}}}, p, "input", "accept", ""},
		{"named vmap not in the ruleset", base("accept", &Rule{Text: "tcp dport vmap @ports", Verdict: Verdict{Kind: VerdictOther, Target: "vmap"}}), p, "input", "undecided", "vmap @ports"},
		{"queue", base("accept", &Rule{Text: "queue", Verdict: Verdict{Kind: VerdictQueue}}), p, "input", "undecided", "userspace"},
		{"return from base: policy", base("drop", &Rule{Text: "return", Verdict: Verdict{Kind: VerdictReturn}}, &Rule{Text: "accept", Verdict: Verdict{Kind: VerdictAccept}}), p, "input", "drop", ""},
		{"unknown hook", base("accept"), p, "forward", "undecided", "unknown hook"},
		{"unknown family", base("accept"), Packet{Family: "arp"}, "input", "undecided", "unknown packet family"},
		{"unknown state", base("accept", &Rule{Text: "ct state new drop", Matches: []Match{{Field: "ct state", Value: "new"}}, Verdict: Verdict{Kind: VerdictDrop}}), Packet{Family: "ip", Proto: "tcp", Src: p.Src, Dst: p.Dst, DstPort: 22}, "input", "undecided", "conntrack state is unknown"},
		{"other match", base("accept", &Rule{Text: "ip dscp cs1 drop", Matches: []Match{{Field: "other", Value: "ip dscp cs1"}}, Verdict: Verdict{Kind: VerdictDrop}}), p, "input", "undecided", "ip dscp cs1"},
		{"iif lo from a remote client", base("drop", &Rule{Text: `iif "lo" accept`, Matches: []Match{{Field: "iif", Value: "lo"}}, Verdict: Verdict{Kind: VerdictAccept}}), sshIn("192.0.2.5", 22, "new", ""), "input", "drop", ""},
	}
	// 40 uncertain jumps into a chain that returns: 2^40 paths, one state
	// after each.
	many := base("drop")
	many.Tables[0].Chains = append(many.Tables[0].Chains, &Chain{Name: "sub", Rules: []*Rule{{Text: "counter", Counter: true}}})
	for i := 0; i < 40; i++ {
		r := &Rule{Text: fmt.Sprintf(`iifname "x%d" jump sub`, i), Matches: []Match{{Field: "iif", Value: fmt.Sprintf("x%d", i)}}, Verdict: Verdict{Kind: VerdictJump, Target: "sub"}}
		many.Tables[0].Chains[0].Rules = append(many.Tables[0].Chains[0].Rules, r)
	}
	ingress := func(dev string) *Ruleset {
		return &Ruleset{Tables: []*Table{{Source: SourceNft, Family: "netdev", Name: "n", Chains: []*Chain{
			{Name: "ing", Type: "filter", Hook: "ingress", Device: dev, Policy: "drop"}}}}}
	}
	cases = append(cases, []struct {
		name    string
		rs      *Ruleset
		p       Packet
		hook    string
		verdict string
		reason  string
	}{
		{"ingress on the packet's device", ingress("eth0"), p, "input", "drop", ""},
		{"ingress on another device", ingress("eth1,eth2"), p, "input", "accept", ""},
		{"ingress, packet's device unknown", ingress("eth0"), sshIn("192.0.2.5", 22, "new", ""), "input", "undecided", "interface is unknown"},
	}...)
	cases = append(cases, struct {
		name    string
		rs      *Ruleset
		p       Packet
		hook    string
		verdict string
		reason  string
	}{"uncertain jumps that return", many, sshIn("192.0.2.5", 22, "new", ""), "input", "drop", ""})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Evaluate(c.rs, c.hook, c.p)
			if d.Verdict != c.verdict || !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("got %s (%q), want %s with %q", d.Verdict, d.Reason, c.verdict, c.reason)
			}
		})
	}
}

var evalFixtures = []string{"newdrop", "policyfrom", "twotables", "estab", "matches", "sets", "ipsets", "others", "special", "eqprio", "incompat", "netdev", "flags", "guard"}

func FuzzEvaluate(f *testing.F) {
	var rss []*Ruleset
	for _, n := range evalFixtures {
		if _, err := os.Stat(filepath.Join("testdata/eval", n+".json")); err == nil {
			rss = append(rss, evalNft(f, n))
		}
		if _, err := os.Stat(filepath.Join("testdata/eval", n+".save")); err == nil {
			rss = append(rss, evalIpt(f, n, true), evalIpt(f, n, false))
		}
	}
	f.Add(uint8(0), false, []byte{192, 0, 2, 5}, uint16(22), uint8(0), "eth0", true)
	f.Add(uint8(9), true, []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0xad}, uint16(2222), uint8(1), "veth1", false)
	f.Add(uint8(11), false, []byte{10, 1, 2, 200}, uint16(8050), uint8(2), "", true)
	f.Fuzz(func(t *testing.T, which uint8, v6 bool, src []byte, port uint16, state uint8, iif string, ssh bool) {
		rs := rss[int(which)%len(rss)]
		p := Packet{Family: "ip", Iif: iif, Dst: netip.MustParseAddr("10.200.0.1"), SrcPort: 50000, DstPort: port, Proto: "tcp",
			State: []string{"new", "established", "", "related", "invalid"}[int(state)%5]}
		if v6 {
			p.Family, p.Dst = "ip6", netip.MustParseAddr("2001:db8:1::1")
		}
		if a, ok := netip.AddrFromSlice(src); ok {
			p.Src = a
		}
		var d Decision
		switch {
		case ssh:
			d = EvaluateSSH(rs, p)
		case port%2 == 0:
			d = Evaluate(rs, "input", p)
		default:
			p.Src, p.Dst, p.Oif = p.Dst, p.Src, iif
			d = Evaluate(rs, "output", p)
		}
		switch d.Verdict {
		case EvalAccept, EvalDrop:
			if d.Reason != "" {
				t.Fatalf("%s with a reason %q", d.Verdict, d.Reason)
			}
		case EvalUndecided:
			if d.Reason == "" {
				t.Fatal("undecided without a reason")
			}
		default:
			t.Fatalf("verdict %q", d.Verdict)
		}
		_ = d.String()
	})
}

// An nft table named raw with a base chain iptables cannot show:
// iptables-nft-save prints an empty *raw for it. Merging both reads must
// keep nft's (which drops everything before conntrack), not the empty one.
func TestEvaluateIncompatibleTable(t *testing.T) {
	ipt, err := ParseIptablesSave(SourceIptablesNft, readFile(t, "testdata/eval/incompat-iptnft.save"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ipt.Tables) != 0 {
		t.Fatalf("iptables-nft-save's view of an incompatible table was kept: %s", ipt.Tables[0].ID())
	}
	rs := Merge(evalNft(t, "incompat"), ipt)
	d := EvaluateSSH(rs, sshIn("192.0.2.5", 22, "new", "eth0"))
	if d.Verdict != EvalDrop || d.Table != "nft ip raw" || d.Chain != "pre" {
		t.Fatalf("got %s, want a drop by nft ip raw chain pre", d)
	}
}

// Evaluate only reads the Ruleset: concurrent calls (go test -race).
func TestEvaluateConcurrent(t *testing.T) {
	rs := evalNft(t, "sets")
	want := EvaluateSSH(rs, sshIn("10.1.2.5", 22, "new", "eth0")).String()
	done := make(chan string)
	for i := 0; i < 8; i++ {
		go func() { done <- EvaluateSSH(rs, sshIn("10.1.2.5", 22, "new", "eth0")).String() }()
	}
	for i := 0; i < 8; i++ {
		if got := <-done; got != want {
			t.Errorf("concurrent: %s, want %s", got, want)
		}
	}
}

// A v4-mapped IPv6 address is the IPv4 address for an IPv4 packet, and
// not for an IPv6 one.
func TestEvaluateMappedAddress(t *testing.T) {
	rs := evalNft(t, "policyfrom")
	p := sshIn("192.0.2.10", 22, "new", "eth0")
	p.Src = netip.MustParseAddr("::ffff:192.0.2.10")
	if d := EvaluateSSH(rs, p); d.Verdict != EvalAccept {
		t.Errorf("ip packet from ::ffff:192.0.2.10: %s", d)
	}
	p.Family = "ip6"
	if d := EvaluateSSH(rs, p); d.Verdict != EvalDrop {
		t.Errorf("ip6 packet from ::ffff:192.0.2.10: %s", d)
	}
}
