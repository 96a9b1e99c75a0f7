package revert

import (
	"context"
	"strings"
	"testing"
	"time"
)

// preflightHost is a test namespace with one interface, eth0, holding
// 10.9.0.1/24 and fd09::1/64: the host the operator reaches at port 22.
func preflightHost(t *testing.T) string {
	t.Helper()
	requireTools(t)
	ns := testNetns(t)
	nsRun(t, ns, "", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	nsRun(t, ns, "", "ip", "addr", "add", "10.9.0.1/24", "dev", "eth0")
	nsRun(t, ns, "", "ip", "addr", "add", "fd09::1/64", "dev", "eth0", "nodad")
	nsRun(t, ns, "", "ip", "link", "set", "eth0", "up")
	return ns
}

var (
	pathV4 = SSHPath{Name: "direct", Src: "10.9.0.2", SrcPort: 40022, Dst: "10.9.0.1", Port: 22}
	pathV6 = SSHPath{Name: "direct", Src: "fd09::2", SrcPort: 40022, Dst: "fd09::1", Port: 22}
)

type flowWant struct {
	verdict string
	chain   string // deciding chain ("" : not checked)
	rule    string // substring of the deciding rule ("" : not checked)
	line    int    // the operator's line (0: not checked)
	policy  bool
	model   bool // decided (or left undecided) by the model
}

func TestPreflightNetns(t *testing.T) {
	pass := flowWant{verdict: PreflightPass}
	cases := []struct {
		name    string
		live    [][]string // commands run in the host namespace first (ruleset on stdin as last element)
		format  Format
		ruleset string
		path    SSHPath
		est     flowWant
		new     flowWant
	}{
		{name: "nft accept all", format: FormatNft, path: pathV4, est: pass, new: pass,
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n"},
		{name: "nft drop new on sshd's port", format: FormatNft, path: pathV4, est: pass,
			new:     flowWant{verdict: PreflightLockout, chain: "input", rule: "tcp dport 22 drop", line: 4},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state new tcp dport 22 drop\n\t}\n}\n"},
		{name: "nft established only", format: FormatNft, path: pathV4, est: pass,
			new:     flowWant{verdict: PreflightLockout, chain: "input", rule: "drop", line: 5},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established,related accept\n\t\tdrop\n\t}\n}\n"},
		{name: "nft policy drop, ssh from another address", format: FormatNft, path: pathV4,
			est:     flowWant{verdict: PreflightLockout, chain: "input", policy: true},
			new:     flowWant{verdict: PreflightLockout, chain: "input", policy: true},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\tip saddr 10.9.9.9 tcp dport 22 accept\n\t}\n}\n"},
		{name: "nft accept here, another table drops", format: FormatNft, path: pathV4,
			live:    [][]string{{"nft", "-f", "-", "table ip other {\n\tchain in {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 22 drop\n\t}\n}\n"}},
			est:     flowWant{verdict: PreflightLockout, chain: "in", rule: "tcp dport 22 drop"},
			new:     flowWant{verdict: PreflightLockout, chain: "in", rule: "tcp dport 22 drop"},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 accept\n\t}\n}\n"},
		{name: "nft output drops the replies", format: FormatNft, path: pathV4,
			est:     flowWant{verdict: PreflightLockout, chain: "output", rule: "tcp sport 22 drop", line: 4},
			new:     flowWant{verdict: PreflightLockout, chain: "output", rule: "tcp sport 22 drop", line: 4},
			ruleset: "table inet filter {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n\t\ttcp sport 22 drop\n\t}\n}\n"},
		{name: "nft ipv6 path, v4-only table", format: FormatNft, path: pathV6, est: pass, new: pass,
			ruleset: "table ip filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n"},
		{name: "nft ipv6 path dropped", format: FormatNft, path: pathV6, est: pass,
			new:     flowWant{verdict: PreflightLockout, chain: "input", rule: "ip6 saddr fd09::2 ct state new drop", line: 4},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip6 saddr fd09::2 ct state new drop\n\t}\n}\n"},
		{name: "nft skuid cannot be mirrored, nor modelled", format: FormatNft, path: pathV4,
			est:     flowWant{verdict: PreflightUndecided, model: true},
			new:     flowWant{verdict: PreflightUndecided, model: true},
			ruleset: "table inet filter {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n\t\tmeta skuid 1234 drop\n\t}\n}\n"},
		{name: "nft mark off the path: the model passes it", format: FormatNft, path: pathV4,
			est:     flowWant{verdict: PreflightPass, model: true},
			new:     flowWant{verdict: PreflightPass, model: true},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr 203.0.113.9 meta mark 0x1 drop\n\t}\n}\n"},
		{name: "nft drop before a mark rule: the model names it", format: FormatNft, path: pathV4,
			est:     flowWant{verdict: PreflightPass, model: true},
			new:     flowWant{verdict: PreflightLockout, chain: "input", rule: "tcp dport 22 drop", line: 4, model: true},
			ruleset: "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state new tcp dport 22 drop\n\t\tmeta mark 0x2 accept\n\t}\n}\n"},
		{name: "iptables owner match off the path: the model passes it", format: FormatIPTables, path: pathV4, est: flowWant{verdict: PreflightPass, model: true}, new: flowWant{verdict: PreflightPass, model: true},
			ruleset: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 203.0.113.9/32 -m owner --uid-owner 1234 -j DROP\nCOMMIT\n"},
		{name: "iptables accept", format: FormatIPTables, path: pathV4, est: pass, new: pass,
			ruleset: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"},
		{name: "iptables drop new", format: FormatIPTables, path: pathV4, est: pass,
			new:     flowWant{verdict: PreflightLockout, chain: "INPUT", rule: "--dport 22", line: 5},
			ruleset: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 -j DROP\nCOMMIT\n"},
		{name: "iptables policy drop, ssh from another address", format: FormatIPTables, path: pathV4,
			est:     flowWant{verdict: PreflightLockout, chain: "INPUT", policy: true},
			new:     flowWant{verdict: PreflightLockout, chain: "INPUT", policy: true},
			ruleset: "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 10.9.9.9/32 -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"},
		{name: "iptables-legacy established only", format: FormatIPTables, path: pathV4,
			live: [][]string{{"iptables-legacy", "-A", "INPUT", "-j", "ACCEPT"}},
			est:  pass,
			new:  flowWant{verdict: PreflightLockout, chain: "INPUT", rule: "-j REJECT", line: 6},
			ruleset: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n" +
				"-A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n"},
		{name: "ip6tables drop", format: FormatIP6Tables, path: pathV6, est: pass,
			new:     flowWant{verdict: PreflightLockout, chain: "INPUT", rule: "--dport 22", line: 5},
			ruleset: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 -j DROP\nCOMMIT\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := preflightHost(t)
			for _, c := range tc.live {
				stdin := ""
				if c[len(c)-2] == "-" {
					stdin, c = c[len(c)-1], c[:len(c)-1]
				}
				nsRun(t, ns, stdin, c...)
			}
			fw := newTestFirewall(t, ns).(*hostFirewall)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := nsRun(t, ns, "", "nft", "list", "ruleset")
			rep, err := fw.Preflight(ctx, tc.format, tc.ruleset, []SSHPath{tc.path})
			if err != nil {
				t.Fatal(err)
			}
			if after := nsRun(t, ns, "", "nft", "list", "ruleset"); after != before {
				t.Fatalf("preflight changed the host's ruleset:\n%s\nto\n%s", before, after)
			}
			if len(rep.Paths) != 2 {
				t.Fatalf("want 2 verdicts, got %+v", rep.Paths)
			}
			for i, want := range []flowWant{tc.est, tc.new} {
				got := rep.Paths[i]
				t.Logf("%s", got)
				if got.Verdict != want.verdict || (want.chain != "" && got.Chain != want.chain) ||
					(want.rule != "" && !strings.Contains(got.Rule, want.rule)) || (want.line != 0 && got.Line != want.line) || got.Policy != want.policy {
					t.Errorf("%s flow: got %+v, want %+v", got.Flow, got, want)
				}
				if method := map[bool]string{false: PreflightKernel, true: PreflightModel}[want.model]; got.Method != method {
					t.Errorf("%s flow: method %q, want %s", got.Flow, got.Method, method)
				}
			}
			t.Logf("took %s", time.Duration(rep.Took))
		})
	}
}

// TestValidatePreflightRefusesInvalid: the candidate's load into the
// preflight's sandbox is its trial load: an invalid ruleset is refused as
// Validate refuses it, pointing at the operator's line.
func TestValidatePreflightRefusesInvalid(t *testing.T) {
	for _, tc := range []struct {
		format  Format
		ruleset string
		line    int
	}{
		{FormatNft, "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 22 acept\n\t}\n}\n", 4},
		{FormatIPTables, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j NOSUCHCHAIN\nCOMMIT\n", 5},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			ns := preflightHost(t)
			fw := newTestFirewall(t, ns).(*hostFirewall)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := fw.ValidatePreflight(ctx, tc.format, tc.ruleset, []SSHPath{pathV4})
			pe, ok := err.(*Error)
			if !ok || pe.Code != CodeInvalidRuleset || pe.Line != tc.line {
				t.Fatalf("got %v (%T), want %s at line %d", err, err, CodeInvalidRuleset, tc.line)
			}
			t.Logf("%v", pe)
			rep, err := fw.ValidatePreflight(ctx, tc.format, strings.Replace(strings.Replace(tc.ruleset, "acept", "accept", 1), "NOSUCHCHAIN", "ACCEPT", 1), []SSHPath{pathV4})
			if err != nil || rep.Verdict != PreflightPass {
				t.Fatalf("fixed ruleset: %v %+v", err, rep)
			}
		})
	}
}
