package trace

import (
	"bufio"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want wire.TraceMatch
	}{
		{"tcp dport 22 saddr 203.0.113.7", wire.TraceMatch{Proto: "tcp", DPortFrom: 22, DPortTo: 22, SAddr: "203.0.113.7"}},
		{"  udp   sport 1000-2000 daddr 10.1.2.3/8 ", wire.TraceMatch{Proto: "udp", SPortFrom: 1000, SPortTo: 2000, DAddr: "10.0.0.0/8"}},
		{"icmpv6 saddr 2001:DB8::1", wire.TraceMatch{Proto: "icmpv6", SAddr: "2001:db8::1"}},
		{"icmp iif eth0", wire.TraceMatch{Proto: "icmp", IIf: "eth0"}},
		{"oif veth-a.1 daddr 2001:db8::/32", wire.TraceMatch{OIf: "veth-a.1", DAddr: "2001:db8::/32"}},
		{"saddr 198.18.0.0/15", wire.TraceMatch{SAddr: "198.18.0.0/15"}},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		// String writes it back in a form that parses to the same match
		if again, err := Parse(String(got)); err != nil || again != got {
			t.Errorf("Parse(String(%q)) = %+v, %v", tc.in, again, err)
		}
	}
}

// TestParseRefuses: anything but the grammar is refused, naming what.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, says string }{
		{"", "empty"},
		{"tcp dport 22 accept", `unknown token "accept"`},
		{"tcp dport 22; flush ruleset", `dport "22;"`},
		{`tcp dport 22 iif "eth0"`, `iif "\"eth0\""`},
		{"iif eth0\"}", "interface name"},
		{"iif $(reboot)", "interface name"},
		{"iif abcdefghijklmnop", "interface name"},
		{"tcp dport 0", "port number"},
		{"tcp dport 65536", "port number"},
		{"tcp dport 30-20", "reversed"},
		{"tcp dport -5", "port number"},
		{"tcp dport 0x16", "port number"},
		{"dport 22", "needs tcp or udp"},
		{"icmp dport 22", "needs tcp or udp"},
		{"tcp dport", "dport needs a value"},
		{"tcp udp", "protocol given twice"},
		{"saddr 1.2.3.4 saddr 5.6.7.8", "saddr given twice"},
		{"saddr 1.2.3.4 daddr ::1", "different families"},
		{"saddr 300.1.1.1", "address"},
		{"saddr fe80::1%eth0", "zone"},
		{"saddr ::ffff:1.2.3.4", "IPv4-mapped"},
		{"icmp saddr 2001:db8::1", "icmpv6"},
		{"icmpv6 daddr 192.0.2.1", "icmp with IPv4"},
		{"iif eth0 oif eth1", "iif and oif together"},
		{"sctp dport 22", `unknown token "sctp"`},
		{"tcp\x00 dport 22", `unknown token "tcp\x00"`},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", tc.in, err, tc.says)
		}
	}
}

// TestCheckRefusesHandMade: the host's check refuses what Parse never
// makes (a request written by hand).
func TestCheckRefusesHandMade(t *testing.T) {
	for _, m := range []wire.TraceMatch{
		{Proto: "tcp; flush ruleset"},
		{Proto: "tcp", DPortFrom: 22, DPortTo: 21},
		{Proto: "tcp", DPortFrom: 22, DPortTo: 70000},
		{SAddr: "10.1.2.3/8"},
		{SAddr: `1.2.3.4" accept`},
		{IIf: `eth0" accept; #`},
		{OIf: "a b"},
		{},
	} {
		if err := Check(m); err == nil {
			t.Errorf("Check(%+v) accepted it", m)
		}
	}
}

var op = wire.Operator{Addr: "198.18.161.1", SSHPort: 22}

// TestRender pins the nft script and the iptables command lines.
func TestRender(t *testing.T) {
	var b strings.Builder
	for _, in := range []string{
		"tcp dport 22 saddr 203.0.113.7",
		"udp sport 53 dport 1024-65535 daddr 2001:db8::/32",
		"icmp iif eth0",
		"icmpv6 oif eth1",
		"tcp",
	} {
		m, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("== " + in + "\n-- nft -f\n" + NftScript(m, op) + "-- iptables-nft (no nft tool)\n")
		for _, r := range IPTables(m) {
			b.WriteString(r.Tool + " " + strings.Join(r.Insert, " ") + "\n" + r.Tool + " " + strings.Join(r.Delete, " ") + "\n")
		}
		b.WriteString("covers the operator's ssh: " + map[bool]string{true: "yes", false: "no"}[CoversOperator(m, op)] + "\n\n")
	}
	golden(t, "render.golden", b.String())
}

func TestCoversOperator(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"tcp dport 22", true},
		{"tcp dport 22 saddr 203.0.113.7", false},
		{"tcp dport 22 saddr 198.18.0.0/16", true},
		{"tcp dport 80", false},
		{"tcp sport 22", true}, // the replies, in output
		{"udp dport 22", false},
		{"saddr 198.18.161.1", true},
		{"daddr 198.18.161.1 oif eth0", true},
		{"daddr 198.18.161.1 iif eth0", true}, // the host's own address is unknown: may be it
		{"tcp daddr 198.18.161.1 iif eth0 dport 443", false},
		{"tcp sport 22 dport 80", false}, // not an ephemeral port
		{"tcp dport 22 sport 1-1023", false},
	} {
		m, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := CoversOperator(m, op); got != tc.want {
			t.Errorf("CoversOperator(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestReader reads what the real tools printed (nftables 1.0.6, iptables
// 1.8.9, captured in a network namespace) into events.
func TestReader(t *testing.T) {
	for _, tc := range []struct {
		file    string
		xtables bool
	}{{"nft-monitor.txt", false}, {"xtables-monitor.txt", true}} {
		f, err := os.Open(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		rd := Reader{Xtables: tc.xtables}
		var sum Summarizer
		var b strings.Builder
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if ev, ok := rd.Line(sc.Text()); ok {
				sum.Add(ev)
				j, _ := json.Marshal(ev)
				b.Write(append(j, '\n'))
			}
		}
		f.Close()
		j, _ := json.MarshalIndent(sum.Summary(), "", "  ")
		b.WriteString("-- summary\n" + string(j) + "\n")
		golden(t, strings.TrimSuffix(tc.file, ".txt")+".golden", b.String())
	}
}

func TestReaderIgnoresNoise(t *testing.T) {
	rd := Reader{}
	for _, l := range []string{"", "trace id", "hello world", "trace id 1 inet lifeline_trace prerouting rule tcp dport 22 meta nftrace set 1 (verdict continue)"} {
		if ev, ok := rd.Line(l); ok {
			t.Errorf("Line(%q) = %+v, want nothing", l, ev)
		}
	}
	xt := Reader{Xtables: true}
	for _, l := range []string{"", "PACKET:", " TRACE: 2 ab nocolons", " TRACE: 1 ab lifeline_trace:pre:rule:0x2:CONTINUE"} {
		if ev, ok := xt.Line(l); ok {
			t.Errorf("xtables Line(%q) = %+v, want nothing", l, ev)
		}
	}
}

// TestSummarizer: the decisive step of a packet is its last final verdict.
func TestSummarizer(t *testing.T) {
	ev := func(id, kind, verdict string) wire.TraceEvent {
		return wire.TraceEvent{ID: id, Kind: kind, Verdict: verdict, Chain: kind + "-" + verdict}
	}
	for _, tc := range []struct {
		name     string
		events   []wire.TraceEvent
		verdicts map[string]int
		decisive []string // chains
	}{
		{"accept then drop in a later hook", []wire.TraceEvent{ev("a", "rule", "continue"), ev("a", "policy", "accept"), ev("a", "rule", "drop")}, map[string]int{"drop": 1}, []string{"rule-drop"}},
		{"jump and return do not decide", []wire.TraceEvent{ev("a", "rule", "accept"), ev("a", "rule", "jump x"), ev("a", "return", "")}, map[string]int{"accept": 1}, []string{"rule-accept"}},
		{"only continue: undecided", []wire.TraceEvent{ev("a", "rule", "continue"), ev("a", "rule", "goto y")}, map[string]int{"undecided": 1}, []string{"rule-goto y"}},
		{"packets in first-seen order", []wire.TraceEvent{ev("b", "rule", "drop"), ev("a", "policy", "accept"), ev("b", "rule", "continue")}, map[string]int{"drop": 1, "accept": 1}, []string{"rule-drop", "policy-accept"}},
	} {
		var s Summarizer
		for _, e := range tc.events {
			s.Add(e)
		}
		sum := s.Summary()
		var chains []string
		for _, d := range sum.Decisive {
			chains = append(chains, d.Chain)
		}
		if sum.Events != len(tc.events) || sum.Packets != len(tc.decisive) || !equalMaps(sum.Verdicts, tc.verdicts) || strings.Join(chains, ",") != strings.Join(tc.decisive, ",") {
			t.Errorf("%s: %+v, want verdicts %v decisive %v", tc.name, sum, tc.verdicts, tc.decisive)
		}
	}
}

func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it):\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}

// FuzzParse: whatever Parse accepts passes Check, writes back to itself,
// and renders without a quote, a newline or a semicolon of its own.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"tcp dport 22 saddr 203.0.113.7", "udp sport 1-2 daddr ::1", "icmp iif eth0", `iif "x"`, "tcp dport 22;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		if err := Check(m); err != nil {
			t.Fatalf("Parse(%q) = %+v, which Check refuses: %v", s, m, err)
		}
		if again, err := Parse(String(m)); err != nil || again != m {
			t.Fatalf("Parse(String(%+v)) = %+v, %v", m, again, err)
		}
		body := nftMatch(m)
		if strings.ContainsAny(strings.NewReplacer(`iifname "`+m.IIf+`"`, "", `oifname "`+m.OIf+`"`, "").Replace(body), "\"\n;{}#") {
			t.Fatalf("nft match %q of %q holds a quote, newline, brace, comment or semicolon", body, s)
		}
		for _, r := range IPTables(m) {
			for _, a := range r.Insert {
				if a == "" || strings.ContainsAny(a, " \n\"'") {
					t.Fatalf("iptables argument %q of %q", a, s)
				}
			}
		}
	})
}
