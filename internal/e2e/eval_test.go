package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
	"github.com/lifeline-dev/lifeline/ruleset"
)

// evalCase is one ruleset loaded on a lab host and the verdict the model
// must give for a new SSH connection from the machine, over IPv4 and IPv6.
// {C} is the machine's address as the host sees it, {C6} its IPv6 one.
type evalE2ECase struct {
	name   string
	rules  string // nft -f input, or iptables-restore input for the v4 table set
	rules6 string // ip6tables-restore input (iptables backends)
	ipset  string // ipset restore input, loaded first
	want4  string
	want6  string
}

var evalE2ENft = []evalE2ECase{
	{name: "only the machine may log in", want4: "accept", want6: "drop", rules: `table inet t {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ip saddr {C} tcp dport 22 accept
	}
}`},
	{name: "new ssh dropped", want4: "drop", want6: "drop", rules: `table inet t {
	chain input {
		type filter hook input priority filter; policy accept;
		ct state new tcp dport 22 drop
	}
}`},
	{name: "accept in one table, drop in an ip table", want4: "drop", want6: "accept", rules: `table inet a {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept
	}
}
table ip b {
	chain input {
		type filter hook input priority 10; policy accept;
		ip saddr {C24} drop
	}
}`},
	{name: "interval set holds the machine's network", want4: "drop", want6: "accept", rules: `table inet t {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0/24, {C24} }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked drop
	}
}`},
	{name: "interval set without it", want4: "accept", want6: "accept", rules: `table inet t {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0/24 }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked drop
	}
}`},
	{name: "the reply is dropped on the way out", want4: "drop", want6: "drop", rules: `table inet t {
	chain output {
		type filter hook output priority filter; policy accept;
		oifname "eth*" tcp sport 22 drop
	}
}`},
	{name: "ct state in a raw chain sees invalid", want4: "drop", want6: "accept", rules: `table ip raw {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		ct state invalid drop
	}
}`},
	{name: "goto does not come back", want4: "drop", want6: "accept", rules: `table ip t {
	chain input {
		type filter hook input priority filter; policy drop;
		ip saddr {C24} goto other
		tcp dport 22 accept
	}
	chain other {
		tcp dport 2222 accept
	}
}`},
	{name: "verdict maps", want4: "accept", want6: "drop", rules: `table inet t {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state vmap { established : accept, related : accept, invalid : drop }
		tcp dport vmap { 22 : jump ssh, 80 : accept }
	}
	chain ssh {
		ip saddr {C24} accept
	}
}`},
	{name: "hardened TCP flag and packet type rules", want4: "accept", want6: "accept", rules: `table inet f {
	chain input {
		type filter hook input priority filter; policy drop;
		tcp flags & (fin|syn) == fin|syn drop
		tcp flags ! fin,syn,rst,psh,ack,urg drop
		tcp flags & (fin|syn|rst|ack) != syn ct state new drop
		meta pkttype { broadcast, multicast } drop
		meta pkttype != host drop
		ct status dnat accept
		tcp flags syn tcp dport 22 accept
		ct state established tcp dport 22 accept
	}
}`},
	{name: "ip protocol in an inet table implies IPv4", want4: "accept", want6: "drop", rules: `table inet t {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ip protocol tcp accept
	}
}`},
}

var evalE2EIpt = []evalE2ECase{
	{name: "hardened TCP flag and packet type rules", want4: "accept", want6: "accept",
		rules: "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --tcp-flags ALL NONE -j DROP\n-A INPUT -p tcp --tcp-flags SYN,FIN SYN,FIN -j DROP\n-A INPUT -p tcp ! --syn -m conntrack --ctstate NEW -j DROP\n-A INPUT -m pkttype --pkt-type broadcast -j DROP\n-A INPUT -m pkttype ! --pkt-type unicast -j DROP\n-A INPUT -p tcp --syn --dport 22 -j ACCEPT\n-A INPUT -p tcp -m conntrack --ctstate ESTABLISHED --dport 22 -j ACCEPT\nCOMMIT\n"},
	{name: "a SYN to 22, established, drop", want4: "accept", want6: "accept",
		rules:  "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp ! --syn -m conntrack --ctstate NEW -j DROP\n-A INPUT -m addrtype ! --dst-type LOCAL -j DROP\n-A INPUT -p tcp --syn -m tcp --dport 22 -j ACCEPT\n-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n",
		rules6: "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m multiport --ports 21,22 -j ACCEPT\nCOMMIT\n"},
	{name: "only the machine may log in", want4: "accept", want6: "drop",
		rules:  "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -s {C}/32 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
		rules6: "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n"},
	{name: "new ssh dropped", want4: "drop", want6: "accept",
		rules: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 -j DROP\nCOMMIT\n"},
	{name: "accept in filter, drop in mangle", want4: "drop", want6: "accept",
		rules: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A INPUT -s {C24} -j DROP\nCOMMIT\n"},
	{name: "ipset hash:net holds the machine's network", want4: "drop", want6: "accept",
		ipset: "create blocked hash:net family inet\nadd blocked {C24}\n",
		rules: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m set --match-set blocked src -j DROP\nCOMMIT\n"},
	{name: "ipset nomatch carves the machine out", want4: "accept", want6: "accept",
		ipset: "create blocked hash:net family inet\nadd blocked {C16}\nadd blocked {C24} nomatch\n",
		rules: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m set --match-set blocked src -j DROP\nCOMMIT\n"},
	{name: "the reply is dropped on the way out", want4: "drop", want6: "drop",
		rules:  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -o eth+ -p tcp -m tcp --sport 22 -j DROP\nCOMMIT\n",
		rules6: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -o eth+ -p tcp -m tcp --sport 22 -j DROP\nCOMMIT\n"},
	{name: "ct state in the raw table sees invalid", want4: "drop", want6: "accept",
		rules: "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n"},
	{name: "goto does not come back", want4: "drop", want6: "accept",
		rules: "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:other - [0:0]\n-A INPUT -s {C24} -g other\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A other -p tcp -m tcp --dport 2222 -j ACCEPT\nCOMMIT\n"},
}

// TestEvaluateAgreesWithKernel loads rulesets on the lab's nft,
// iptables-nft and iptables-legacy hosts, reads them back with the host's
// own tools (nft -j, iptables-save of both backends, ipset save) as
// lifeline's state verb does, and checks that ruleset.EvaluateSSH's verdict
// for a new SSH connection from this machine is the kernel's: the real
// sshd's banner arrives exactly when the model says accept, over IPv4 and
// IPv6.
func TestEvaluateAgreesWithKernel(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 4, InitExe: lifelineBin})
	for _, h := range l.Hosts[:3] {
		cases := evalE2EIpt
		if h.Backend == lab.BackendNft {
			cases = evalE2ENft
		}
		t.Run(h.Backend, func(t *testing.T) {
			t.Parallel()
			c4, c6 := clientAddr(t, h.Address), clientAddr(t, h.Address6)
			c24 := netip.PrefixFrom(c4, 24).Masked().String()
			c16 := netip.PrefixFrom(c4, 16).Masked().String()
			subst := strings.NewReplacer("{C24}", c24, "{C16}", c16, "{C6}", c6.String(), "{C}", c4.String())
			for _, c := range cases {
				loadEvalCase(t, l, h, subst.Replace(c.rules), subst.Replace(c.rules6), subst.Replace(c.ipset))
				rs := readHostRuleset(t, l, h)
				for _, fam := range []struct {
					family   string
					src, dst string
					want     string
				}{{"ip", c4.String(), h.Address, c.want4}, {"ip6", c6.String(), h.Address6, c.want6}} {
					p := ruleset.Packet{Family: fam.family, Iif: "eth0", Src: netip.MustParseAddr(fam.src), Dst: netip.MustParseAddr(fam.dst),
						SrcPort: 40000, DstPort: 22, Proto: "tcp", State: "new"}
					d := ruleset.EvaluateSSH(rs, p)
					kernel := "drop"
					if err := bannerArrives(fam.dst); err == nil {
						kernel = "accept"
					}
					if d.Verdict != kernel {
						t.Errorf("%s %s: model %s, kernel %s", c.name, fam.family, d, kernel)
					}
					if d.Verdict != fam.want {
						t.Errorf("%s %s: model %s, the case wants %s", c.name, fam.family, d, fam.want)
					}
					t.Logf("%s %s: %s", c.name, fam.family, d)
				}
			}
		})
	}
}

// clientAddr is this machine's address as host addr sees it (the local
// end of a connection to its sshd, before any case's rules).
func clientAddr(t *testing.T, addr string) netip.Addr {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
}

// bannerArrives: a new connection to addr's sshd gets its SSH banner (both
// directions of the path pass) within 2 s.
func bannerArrives(addr string) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "22"), 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "SSH-" {
		return fmt.Errorf("not an SSH banner: %q", buf)
	}
	return nil
}

// loadEvalCase empties every table of the host (nft, both iptables
// backends, ipsets) and loads the case with the host's backend.
func loadEvalCase(t *testing.T, l *lab.Lab, h *lab.Host, rules, rules6, ipset string) {
	t.Helper()
	empty := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	script := "set -e\nnft flush ruleset\n"
	if h.Backend == lab.BackendIptablesLegacy {
		script += fmt.Sprintf("iptables-legacy-restore <<'EOF'\n%sEOF\nip6tables-legacy-restore <<'EOF'\n%sEOF\n", empty, empty)
	}
	script += "ipset destroy\n"
	if ipset != "" {
		script += fmt.Sprintf("ipset restore <<'EOF'\n%s\nEOF\n", strings.TrimRight(ipset, "\n"))
	}
	switch h.Backend {
	case lab.BackendNft:
		script += fmt.Sprintf("nft -f - <<'EOF'\n%s\nEOF\n", rules)
	default:
		v := strings.TrimPrefix(h.Backend, "iptables-") // nft or legacy
		script += fmt.Sprintf("iptables-%s-restore <<'EOF'\n%sEOF\n", v, rules)
		if rules6 != "" {
			script += fmt.Sprintf("ip6tables-%s-restore <<'EOF'\n%sEOF\n", v, rules6)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := l.Exec(ctx, h.Name, "sh", "-c", script); err != nil {
		t.Fatalf("%s: load: %v\n%s\n%s", h.Name, err, out, script)
	}
}

// readHostRuleset reads the host's firewall the way lifeline's state verb
// does, every source at once, and merges it.
func readHostRuleset(t *testing.T, l *lab.Lab, h *lab.Host) *ruleset.Ruleset {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(argv ...string) []byte {
		out, err := l.Exec(ctx, h.Name, argv...)
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		return out
	}
	var parts []*ruleset.Ruleset
	nftRS, err := ruleset.ParseNftJSON(read("nft", "-j", "list", "ruleset"))
	if err != nil {
		t.Fatalf("%s: nft json: %v", h.Name, err)
	}
	parts = append(parts, nftRS)
	for _, src := range []ruleset.Source{ruleset.SourceIptablesNft, ruleset.SourceIp6tablesNft, ruleset.SourceIptablesLegacy, ruleset.SourceIp6tablesLegacy} {
		rs, err := ruleset.ParseIptablesSave(src, read(string(src)+"-save"))
		if err != nil {
			t.Fatalf("%s: %s-save: %v", h.Name, src, err)
		}
		parts = append(parts, rs)
	}
	sets, err := ruleset.ParseIpsetSave(read("ipset", "save"))
	if err != nil {
		t.Fatalf("%s: ipset save: %v", h.Name, err)
	}
	parts = append(parts, &ruleset.Ruleset{Sets: sets})
	return ruleset.Merge(parts...)
}
