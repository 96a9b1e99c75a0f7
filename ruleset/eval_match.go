package ruleset

import (
	"net/netip"
	"strconv"
	"strings"
)

type tri int

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// ruleMatches: whether every match of r holds for p.
func (e *evaluator) ruleMatches(t *Table, r *Rule) (tri, string) {
	if t.Source == SourceNft && t.Family != "ip" && t.Family != "ip6" {
		if fam := nftRuleFamily(r); fam != "" && fam != e.p.Family {
			// nft adds "meta nfproto" before an ip or ip6 header match in
			// an inet table: the rule does not apply to the other family,
			// whatever its matches say (ip protocol tcp, ip dscp ...).
			return triFalse, ""
		}
	}
	res, why := triTrue, ""
	setIdx := 0
	for _, m := range r.Matches {
		var v tri
		var w string
		if m.Field == "set" {
			v, w = e.setMatch(t, r, m, setIdx)
			setIdx++
		} else {
			v, w = e.match(t, m)
		}
		switch v {
		case triFalse:
			return triFalse, ""
		case triUnknown:
			if res == triTrue {
				res, why = triUnknown, w
			}
		}
	}
	if res == triTrue {
		if w := unmodelledStatement(r); w != "" {
			return triUnknown, w
		}
	}
	return res, why
}

// unmodelledStatement: a statement of an nft rule that conditions it
// without being a match (a quota), or one the parser kept as JSON.
func unmodelledStatement(r *Rule) string {
	text := r.Text
	if r.Comment != "" {
		text = strings.TrimSuffix(text, " comment "+quote(r.Comment))
	}
	for _, f := range strings.Fields(text) {
		if f == "quota" {
			return "a quota may or may not be used up"
		}
		if strings.HasPrefix(f, `{"`) {
			return "statement " + f + " is not part of the model"
		}
	}
	return ""
}

// negated applies a match's negation to a known result.
func negated(v tri, neg bool) tri {
	if v == triUnknown || !neg {
		return v
	}
	return triOf(v == triFalse)
}

func (e *evaluator) match(t *Table, m Match) (tri, string) {
	p := e.p
	desc := matchText(m)
	switch m.Field {
	case "l4proto":
		if p.Proto == "" {
			return triUnknown, desc + ": the packet's protocol is unknown"
		}
		hit := false
		for _, x := range items(m.Value) {
			if x == "all" || protoNumber(x) == protoNumber(p.Proto) {
				hit = true
			}
		}
		return negated(triOf(hit), m.Negate), ""
	case "saddr", "daddr":
		a, which := p.Src, "source"
		if m.Field == "daddr" {
			a, which = p.Dst, "destination"
		}
		return addrMatch(m, a, which, p.Family)
	case "sport", "dport":
		port := p.SrcPort
		if m.Field == "dport" {
			port = p.DstPort
		}
		if p.Proto == "" {
			return triUnknown, desc + ": the packet's protocol is unknown"
		}
		if !hasPorts(p.Proto) {
			return triFalse, ""
		}
		vals := items(m.Value)
		for _, x := range vals {
			if _, _, ok := portRange(x); !ok {
				return triUnknown, desc + ": port " + x + " is not a number"
			}
		}
		return negated(triOf(portIn(m.Value, int(port))), m.Negate), ""
	case "iif", "oif":
		name := p.Iif
		if m.Field == "oif" {
			name = p.Oif
		}
		known := name != "" || m.Field == "iif" && !e.inbound || m.Field == "oif" && e.inbound
		hit := false
		for _, x := range items(m.Value) {
			x = strings.Trim(x, `"`)
			if !known {
				// A packet from another host does not come in on
				// loopback.
				if x == "lo" && m.Field == "iif" && p.Src.IsValid() && !p.Src.IsLoopback() {
					continue
				}
				return triUnknown, desc + ": the packet's " + map[string]string{"iif": "input", "oif": "output"}[m.Field] + " interface is unknown"
			}
			if ifaceMatch(x, name) {
				hit = true
			}
		}
		return negated(triOf(hit), m.Negate), ""
	case "ct state":
		if e.beforeConntrack() {
			// No conntrack entry yet: nft and iptables see "invalid".
			return negated(triOf(contains(items(m.Value), "invalid")), m.Negate), ""
		}
		if p.State == "" {
			return triUnknown, desc + ": the packet's conntrack state is unknown"
		}
		vals := items(m.Value)
		if contains(vals, p.State) {
			return negated(triTrue, m.Negate), ""
		}
		if contains(vals, "snat") || contains(vals, "dnat") {
			return triUnknown, desc + ": whether the connection is NATed is not part of the model"
		}
		return negated(triFalse, m.Negate), ""
	case "icmp type":
		if p.Proto != "" && protoNumber(p.Proto) != 1 && protoNumber(p.Proto) != 58 {
			return triFalse, "" // an icmp type match implies the protocol
		}
		return triUnknown, desc + ": icmp types are not part of the packet"
	case "limit":
		return triUnknown, desc + ": a rate limit may or may not match"
	case "mark":
		return triUnknown, desc + ": the packet's mark is not part of the model (it may be set elsewhere)"
	case "other":
		return e.otherMatch(m)
	}
	return triUnknown, desc + ": this match is not part of the model"
}

func matchText(m Match) string {
	s := m.Field
	if m.Field == "other" || m.Field == "set" {
		s = ""
	}
	if m.Negate {
		s += " !"
	}
	return strings.TrimSpace(s + " " + m.Value)
}

// beforeConntrack: the chain runs before conntrack has looked at the
// packet (raw priority, -300, on prerouting and output; ingress).
func (e *evaluator) beforeConntrack() bool {
	switch e.cur.c.Hook {
	case "ingress":
		return true
	case "prerouting", "output":
		return e.cur.c.Priority < -200
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

var protoNumbers = map[string]int{"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136, "dccp": 33}

func protoNumber(s string) int {
	if n, ok := protoNumbers[s]; ok {
		return n
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return -1
}

func hasPorts(proto string) bool {
	switch protoNumber(proto) {
	case 6, 17, 132, 136, 33:
		return true
	}
	return false
}

// ifaceMatch: an interface name pattern as written (iptables "eth+", nft
// "eth*") matches name.
func ifaceMatch(pat, name string) bool {
	if strings.HasSuffix(pat, "+") || strings.HasSuffix(pat, "*") && !strings.HasSuffix(pat, `\*`) {
		return strings.HasPrefix(name, pat[:len(pat)-1])
	}
	return strings.ReplaceAll(pat, `\*`, "*") == name
}

// addrMatch: an address match value (address, prefix, range, or a set of
// them) holds for a. A value of the other family never matches, negated or
// not (`ip saddr != x` implies IPv4).
func addrMatch(m Match, a netip.Addr, which, family string) (tri, string) {
	vals := items(m.Value)
	if len(vals) == 0 {
		return triUnknown, matchText(m) + ": no address"
	}
	hit := false
	for _, x := range vals {
		in, fam, ok := addrIn(x, a)
		if !ok {
			return triUnknown, matchText(m) + ": " + x + " is not an address"
		}
		if fam != family {
			return triFalse, ""
		}
		if !a.IsValid() {
			return triUnknown, matchText(m) + ": the packet's " + which + " address is unknown"
		}
		hit = hit || in
	}
	return negated(triOf(hit), m.Negate), ""
}

// addrIn: element x (address, prefix, "lo-hi" range) holds a; fam is x's
// family ("ip"/"ip6").
func addrIn(x string, a netip.Addr) (in bool, fam string, ok bool) {
	famOf := func(b netip.Addr) string {
		if b.Is4() {
			return "ip"
		}
		return "ip6"
	}
	if lo, hi, isRange := strings.Cut(x, "-"); isRange {
		l, err1 := netip.ParseAddr(lo)
		h, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil || l.Is4() != h.Is4() {
			return false, "", false
		}
		return a.IsValid() && a.Is4() == l.Is4() && l.Compare(a) <= 0 && a.Compare(h) <= 0, famOf(l), true
	}
	pfx, ok := prefixOf(x)
	if !ok {
		return false, "", false
	}
	return a.IsValid() && a.Is4() == pfx.Addr().Is4() && pfx.Contains(a), famOf(pfx.Addr()), true
}

// otherMatch interprets the few "other" matches whose answer follows from
// what Evaluate models; anything else is unknown, with the reason.
func (e *evaluator) otherMatch(m Match) (tri, string) {
	p := e.p
	v := strings.Join(strings.Fields(m.Value), " ")
	if m.Negate {
		// iptables keeps the "!" in the text of a match it does not
		// interpret, and says it in Negate too; nft's "!=" is in the text
		// only.
		v = strings.Replace(v, " ! ", " ", 1)
	}
	desc := matchText(m)
	switch {
	case strings.HasPrefix(v, "meta nfproto "):
		want := strings.TrimPrefix(v, "meta nfproto ")
		neg := m.Negate
		if w, ok := strings.CutPrefix(want, "!= "); ok {
			want, neg = w, !neg
		}
		fam := map[string]string{"ipv4": "ip", "ipv6": "ip6"}[want]
		if fam == "" {
			break
		}
		return negated(triOf(fam == p.Family), neg), ""
	case strings.HasPrefix(v, "tcp flags ") || strings.HasPrefix(v, "tcp --tcp-flags ") || v == "tcp --syn":
		if protoNumber(p.Proto) != 6 && p.Proto != "" {
			return triFalse, ""
		}
		test, ok := tcpFlagsTest(v)
		if !ok || p.Proto == "" {
			break
		}
		// The first packet of a connection is a lone SYN; a later one
		// carries ACK, with PSH when it holds data (the server's reply,
		// the client's keystrokes).
		var seen []tri
		switch p.State {
		case "new":
			seen = []tri{triOf(test(tcpSYN))}
		case "established":
			seen = []tri{triOf(test(tcpACK)), triOf(test(tcpACK | tcpPSH))}
		default:
			break
		}
		if len(seen) == 0 {
			break
		}
		if len(seen) == 2 && seen[0] != seen[1] {
			return triUnknown, desc + ": an established packet carries ACK, with or without PSH, and the model does not know which"
		}
		return negated(seen[0], m.Negate), ""
	case strings.HasPrefix(v, "meta pkttype ") || strings.HasPrefix(v, "pkttype --pkt-type "):
		// Inbound, the path is unicast to this host.
		if !e.inbound {
			break
		}
		rest := v[strings.LastIndex(v, " ")+1:]
		neg := m.Negate
		if strings.HasPrefix(v, "meta pkttype ") {
			rest = strings.TrimPrefix(v, "meta pkttype ")
			if r, ok := strings.CutPrefix(rest, "!= "); ok {
				rest, neg = r, !neg
			}
		}
		hit := false
		for _, x := range items(strings.ReplaceAll(rest, " ", "")) {
			if x == "host" || x == "unicast" {
				hit = true
			}
		}
		return negated(triOf(hit), neg), ""
	case v == "ct status dnat" && (p.State == "new" || !e.hasDNAT()):
		// A new connection is DNATed only by a nat rule on this path,
		// which would have left the outcome undecided already; an
		// established one only if the ruleset DNATs at all.
		return negated(triFalse, m.Negate), ""
	case strings.HasPrefix(v, "fib daddr type ") || strings.HasPrefix(v, "addrtype --dst-type "):
		// Inbound, the path ends at a local socket; outbound, it goes
		// to the client's unicast address.
		typ := "unicast"
		if e.inbound {
			typ = "local"
		}
		neg := m.Negate
		rest := v[strings.LastIndex(v, "type ")+len("type "):]
		if r, ok := strings.CutPrefix(rest, "!= "); ok {
			rest, neg = r, !neg
		}
		if strings.Contains(rest, "@") || strings.ContainsAny(rest, "/&|") {
			break
		}
		hit := false
		for _, x := range items(strings.ReplaceAll(rest, " ", "")) {
			if strings.EqualFold(x, typ) {
				hit = true
			}
		}
		return negated(triOf(hit), neg), ""
	case e.inbound && strings.HasPrefix(v, "fib saddr . ") && strings.HasSuffix(v, " oif missing"):
		// Reverse path filter: the client's address routes back through
		// the interface it came in on, as a working SSH session needs.
		return negated(triFalse, m.Negate), ""
	case strings.HasPrefix(v, "iprange --src-range ") || strings.HasPrefix(v, "iprange --dst-range "):
		a := p.Src
		if strings.HasPrefix(v, "iprange --dst-range ") {
			a = p.Dst
		}
		rng := strings.Fields(v)[2]
		in, fam, ok := addrIn(rng, a)
		if !ok || !a.IsValid() {
			break
		}
		if fam != p.Family {
			return triFalse, ""
		}
		return negated(triOf(in), m.Negate), ""
	case strings.HasPrefix(v, "multiport --ports "):
		if p.Proto == "" {
			break
		}
		if !hasPorts(p.Proto) {
			return triFalse, ""
		}
		ports := portValue(strings.Fields(v)[2])
		return negated(triOf(portIn(ports, int(p.SrcPort)) || portIn(ports, int(p.DstPort))), m.Negate), ""
	case strings.HasPrefix(v, "meta skuid") || strings.HasPrefix(v, "meta skgid") || strings.HasPrefix(v, "skuid") || strings.HasPrefix(v, "skgid") || strings.HasPrefix(v, "owner "):
		return triUnknown, desc + ": the owner of the sending socket is not part of the model"
	case strings.HasPrefix(v, "meta cgroup") || strings.HasPrefix(v, "socket cgroupv2") || strings.HasPrefix(v, "cgroup "):
		return triUnknown, desc + ": the sending process's cgroup is not part of the model"
	case strings.Contains(v, "ct mark") || strings.HasPrefix(v, "connmark ") || strings.Contains(v, "meta mark"):
		return triUnknown, desc + ": the packet's mark is not part of the model (it may be set elsewhere)"
	}
	return triUnknown, desc + ": this match is not part of the model"
}
