package ruleset

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// setMatch: the idx-th set lookup of r (an nft "@name" in the rule's
// table, an ipset "NAME src,dst" in rs.Sets) holds for p.
func (e *evaluator) setMatch(t *Table, r *Rule, m Match, idx int) (tri, string) {
	desc := matchText(m)
	if strings.HasPrefix(m.Value, "@") {
		name := m.Value[1:]
		var set *Set
		for _, s := range t.Sets {
			if s.Name == name {
				set = s
			}
		}
		if set == nil {
			return triUnknown, desc + ": set " + name + " is not in the ruleset"
		}
		if contains(set.Flags, "dynamic") || filledByRules(t, name) {
			return triUnknown, desc + ": set " + name + " is filled by the packet path at run time"
		}
		key := nftSetKey(r.Text, m.Value, idx)
		if key == nil {
			return triUnknown, desc + ": the looked-up key is not part of the model"
		}
		v, why := e.nftSetLookup(set, key)
		if v == triUnknown {
			return v, desc + ": " + why
		}
		return negated(v, m.Negate), ""
	}
	f := strings.Fields(m.Value)
	if len(f) != 2 {
		return triUnknown, "ipset " + desc + ": not a set and direction"
	}
	var set *Set
	for _, s := range e.rs.Sets {
		if s.Name == f[0] && s.Source == SourceIpset {
			set = s
		}
	}
	if set == nil {
		return triUnknown, "ipset " + desc + ": set " + f[0] + " is not in the ruleset (read ipset save too)"
	}
	v, why := e.ipsetLookup(set, strings.Split(f[1], ","))
	if v == triUnknown {
		return v, "ipset " + desc + ": " + why
	}
	return negated(v, m.Negate), ""
}

// nftKeys the model can look up, as nft prints them before a set
// reference.
var nftSetKeys = []string{"ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "tcp dport", "tcp sport", "udp dport", "udp sport",
	"th dport", "th sport", "sctp dport", "sctp sport", "iifname", "oifname", "iif", "oif", "meta l4proto", "ip protocol", "ip6 nexthdr", "ct state"}

// nftSetKey reads the key of the idx-th set lookup of an nft rule's text
// ("ip saddr @blocked", "ip saddr . tcp dport != @allowed"): one key per
// part of a concatenation, nil when a part is not one the model knows.
func nftSetKey(text, ref string, idx int) []string {
	pos := -1
	for i, off := 0, 0; i <= idx; i++ {
		j := strings.Index(text[off:], ref)
		if j < 0 {
			return nil
		}
		pos = off + j
		off = pos + len(ref)
		if off < len(text) && text[off] != ' ' {
			i-- // a longer name with this prefix
		}
	}
	return keysBefore(text[:pos])
}

// keysBefore reads the key an nft rule's text ends with ("ip saddr",
// "ip daddr . meta l4proto . th dport", with a trailing "!=" allowed): one
// key per part of a concatenation, nil when a part is not one the model
// knows.
func keysBefore(before string) []string {
	before = strings.TrimSuffix(strings.TrimRight(before, " "), " !=")
	var keys []string
	for {
		k := ""
		for _, c := range nftSetKeys {
			if strings.HasSuffix(before, c) && (len(before) == len(c) || before[len(before)-len(c)-1] == ' ') {
				k = c
				break
			}
		}
		if k == "" {
			return nil
		}
		keys = append([]string{k}, keys...)
		before = strings.TrimSuffix(before, k)
		rest, isConcat := strings.CutSuffix(before, " . ")
		if !isConcat {
			return keys
		}
		before = rest
	}
}

// nftKeyValue: p's value for an nft key, its kind (addr, port, name,
// proto, state), and false when p does not have the key at all (an IPv6
// packet's ip saddr, a UDP packet's tcp dport).
func (e *evaluator) nftKeyValue(k string) (val, kind string, ok bool) {
	p := e.p
	switch k {
	case "ip saddr", "ip6 saddr", "ip daddr", "ip6 daddr":
		if strings.HasPrefix(k, "ip6 ") != (p.Family == "ip6") {
			return "", "", false
		}
		a := p.Src
		if strings.HasSuffix(k, "daddr") {
			a = p.Dst
		}
		if !a.IsValid() {
			return "", "addr", true
		}
		return a.String(), "addr", true
	case "iifname", "iif":
		return p.Iif, "name", p.Iif != "" || e.inbound
	case "oifname", "oif":
		return p.Oif, "name", p.Oif != "" || !e.inbound
	case "meta l4proto", "ip protocol", "ip6 nexthdr":
		return p.Proto, "proto", true
	case "ct state":
		if e.beforeConntrack() {
			return "invalid", "state", true
		}
		return p.State, "state", true
	}
	proto, f, _ := strings.Cut(k, " ")
	if proto != "th" && protoNumber(proto) != protoNumber(p.Proto) || !hasPorts(p.Proto) {
		return "", "", false
	}
	if f == "dport" {
		return strconv.Itoa(int(p.DstPort)), "port", true
	}
	return strconv.Itoa(int(p.SrcPort)), "port", true
}

// keyValues: p's values for keys; miss when p has no value for one of
// them at all (the lookup cannot find it), ok false when one is unknown.
func (e *evaluator) keyValues(keys []string) (vals, kinds []string, miss, ok bool) {
	vals = make([]string, len(keys))
	kinds = make([]string, len(keys))
	for i, k := range keys {
		v, kind, has := e.nftKeyValue(k)
		if !has {
			return nil, nil, true, true
		}
		if v == "" {
			return nil, nil, false, false
		}
		vals[i], kinds[i] = v, kind
	}
	return vals, kinds, false, true
}

// elemMatches: element el ("10.0.0.0/8", "10.0.0.1 . tcp . 22") holds
// vals; ok false when el is not one the model reads.
func (e *evaluator) elemMatches(el string, vals, kinds []string) (in, ok bool) {
	el, _, _ = strings.Cut(el, " comment ")
	parts := strings.Split(el, " . ")
	if len(parts) != len(vals) {
		return false, false
	}
	all := true
	for i, part := range parts {
		in, ok := elemHolds(strings.TrimSpace(part), vals[i], kinds[i])
		if !ok {
			return false, false
		}
		all = all && in
	}
	return all, true
}

func (e *evaluator) nftSetLookup(s *Set, keys []string) (tri, string) {
	vals, kinds, miss, ok := e.keyValues(keys)
	if !ok {
		return triUnknown, "the packet's " + strings.Join(keys, " . ") + " is unknown"
	}
	if miss {
		return triFalse, ""
	}
	for _, el := range s.Elements {
		in, ok := e.elemMatches(el, vals, kinds)
		if !ok {
			return triUnknown, fmt.Sprintf("set %s's element %q is not one the model reads (key %s)", s.Name, el, strings.Join(keys, " . "))
		}
		if in {
			return triTrue, ""
		}
	}
	return triFalse, ""
}

// elemHolds: one element (or one part of a concatenated element) holds
// value v of that kind.
func elemHolds(el, v, kind string) (in, ok bool) {
	switch kind {
	case "addr":
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false, false
		}
		in, _, ok := addrIn(el, a)
		return in, ok
	case "port":
		lo, hi, ok := portRange(el)
		n, _ := strconv.Atoi(v)
		return ok && lo <= n && n <= hi, ok
	case "name":
		return ifaceMatch(strings.Trim(el, `"`), v), true
	case "proto":
		return protoNumber(el) == protoNumber(v), true
	case "state":
		return el == v, true
	}
	return false, false
}

// ipsetLookup: the packet is in ipset s, looked up by dirs (src/dst per
// dimension).
func (e *evaluator) ipsetLookup(s *Set, dirs []string) (tri, string) {
	p := e.p
	method, dims, ok := strings.Cut(s.Type, ":")
	if !ok || method != "hash" && method != "bitmap" {
		return triUnknown, "set type " + s.Type + " is not part of the model"
	}
	kinds := strings.Split(dims, ",")
	if s.Family != p.Family && (contains(kinds, "ip") || contains(kinds, "net")) {
		return triFalse, "" // an address set of the other family never matches
	}
	if len(dirs) < len(kinds) {
		return triUnknown, fmt.Sprintf("set type %s needs %d directions", s.Type, len(kinds))
	}
	vals := make([]string, len(kinds))
	for i, k := range kinds {
		src := dirs[i] == "src"
		switch k {
		case "ip", "net":
			a := p.Dst
			if src {
				a = p.Src
			}
			if !a.IsValid() {
				return triUnknown, "the packet's address is unknown"
			}
			vals[i] = a.String()
		case "port":
			if !hasPorts(p.Proto) {
				return triFalse, ""
			}
			port := p.DstPort
			if src {
				port = p.SrcPort
			}
			vals[i] = p.Proto + ":" + strconv.Itoa(int(port))
		case "iface":
			name := p.Oif
			if src {
				name = p.Iif
			}
			if name == "" {
				return triUnknown, "the packet's interface is unknown"
			}
			vals[i] = name
		default:
			return triUnknown, "set type " + s.Type + " is not part of the model"
		}
	}
	// The most specific element decides (a "nomatch" one excludes).
	best, bestBits, found := false, -1, false
	for _, el := range s.Elements {
		el, _, _ = strings.Cut(el, " comment ")
		f := strings.Fields(el)
		if len(f) == 0 {
			continue
		}
		nomatch := contains(f[1:], "nomatch")
		parts := strings.Split(f[0], ",")
		if len(parts) != len(kinds) {
			return triUnknown, fmt.Sprintf("element %q does not fit set type %s", el, s.Type)
		}
		all, bits := true, 0
		for i, k := range kinds {
			part := parts[i]
			switch k {
			case "ip", "net":
				a, _ := netip.ParseAddr(vals[i])
				in, _, ok := addrIn(part, a)
				if !ok {
					return triUnknown, fmt.Sprintf("element %q is not an address", el)
				}
				if pf, ok := prefixOf(part); ok {
					bits += pf.Bits()
				}
				all = all && in
			case "port":
				// hash:*,port elements name the protocol (tcp when not
				// written); bitmap:port ones are ports of any protocol.
				proto, port, hasProto := strings.Cut(part, ":")
				if !hasProto {
					proto, port = "tcp", part
				}
				wantProto, wantPort, _ := strings.Cut(vals[i], ":")
				lo, hi, ok := portRange(port)
				if !ok {
					return triUnknown, fmt.Sprintf("element %q: port %s is not a number", el, port)
				}
				n, _ := strconv.Atoi(wantPort)
				all = all && (method == "bitmap" || protoNumber(proto) == protoNumber(wantProto)) && lo <= n && n <= hi
			case "iface":
				all = all && ifaceMatch(part, vals[i])
			}
		}
		if all && bits > bestBits {
			best, bestBits, found = !nomatch, bits, true
		}
	}
	return triOf(found && best), ""
}

// chainApplies: base chain b sees p at all (a netdev chain is bound to
// devices; a nat chain sees only a connection's first packet).
func (e *evaluator) chainApplies(b baseChain) (tri, string) {
	if b.c.Type == "nat" && e.p.State != "" && e.p.State != "new" {
		return triFalse, ""
	}
	if b.c.Hook != "ingress" && b.c.Hook != "egress" {
		return triTrue, ""
	}
	if b.c.Device == "" {
		// nft 1.0.6's JSON leaves the device out (its text has it).
		return triUnknown, fmt.Sprintf("%s chain %s is bound to a device nft's JSON listing does not name", b.t.ID(), b.c.Name)
	}
	name := e.p.Iif
	if b.c.Hook == "egress" {
		name = e.p.Oif
	}
	if name == "" {
		return triUnknown, fmt.Sprintf("%s chain %s is bound to device %s and the packet's interface is unknown", b.t.ID(), b.c.Name, b.c.Device)
	}
	for _, d := range strings.Split(b.c.Device, ",") {
		if strings.TrimSpace(d) == name {
			return triTrue, ""
		}
	}
	return triFalse, ""
}

// filledByRules: a rule of t adds to or updates set name (nft prints
// `add @name { ... }`, `update @name { ... }`): its elements depend on the
// packets seen so far.
func filledByRules(t *Table, name string) bool {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if strings.Contains(r.Text, "add @"+name+" ") || strings.Contains(r.Text, "update @"+name+" ") {
				return true
			}
		}
	}
	return false
}

// nftHeaderFields are the fields of nft's ip and ip6 header expressions.
var nftHeaderFields = map[string]bool{"saddr": true, "daddr": true, "protocol": true, "nexthdr": true, "dscp": true, "ecn": true,
	"ttl": true, "hoplimit": true, "length": true, "id": true, "frag-off": true, "version": true, "hdrlength": true,
	"checksum": true, "flowlabel": true}

// nftRuleFamily: the family an nft rule's header matches imply ("ip" for
// `ip protocol tcp`, "ip6" for `ip6 nexthdr tcp` or `icmpv6 type ...`),
// "" when none; quoted strings (comments, log prefixes) are skipped.
func nftRuleFamily(r *Rule) string {
	f := strings.Fields(stripQuoted(r.Text))
	for i, w := range f {
		switch {
		case (w == "ip" || w == "ip6") && i+1 < len(f) && nftHeaderFields[f[i+1]]:
			return w
		case w == "icmp" && i+1 < len(f) && f[i+1] == "type":
			return "ip"
		case w == "icmpv6" && i+1 < len(f) && f[i+1] == "type":
			return "ip6"
		}
	}
	return ""
}

func stripQuoted(s string) string {
	if !strings.Contains(s, `"`) {
		return s
	}
	var b strings.Builder
	in := false
	for _, c := range s {
		if c == '"' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// TCP flag bits as nft and iptables name them.
const (
	tcpFIN = 1 << iota
	tcpSYN
	tcpRST
	tcpPSH
	tcpACK
	tcpURG
	tcpECE
	tcpCWR
)

var tcpFlagBits = map[string]int{"fin": tcpFIN, "syn": tcpSYN, "rst": tcpRST, "psh": tcpPSH, "ack": tcpACK, "urg": tcpURG,
	"ecn": tcpECE, "ece": tcpECE, "cwr": tcpCWR, "all": 0x3f, "none": 0} // iptables' ALL: FIN..URG

// tcpFlags reads a flag list ("fin,syn", "FIN,SYN,RST,ACK", "ALL",
// "NONE", "0x0", "(fin|syn)").
func tcpFlags(s string) (int, bool) {
	s = strings.ToLower(strings.Trim(s, "()"))
	if n, err := strconv.ParseUint(s, 0, 8); err == nil {
		return int(n), true
	}
	bits := 0
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '|' }) {
		b, ok := tcpFlagBits[f]
		if !ok {
			return 0, false
		}
		bits |= b
	}
	return bits, true
}

// tcpFlagsTest reads a TCP flags match as the model's Match.Value holds
// it: nft "tcp flags syn / fin,syn,rst,ack" (masked equality), "tcp flags
// != syn / fin,syn" and "tcp flags & fin,syn != syn", "tcp flags == syn" (exactly), "tcp flags syn" (any of),
// "tcp flags ! fin,syn" (none of); iptables "tcp --tcp-flags MASK COMP"
// and "tcp --syn". The negation in Match.Negate is the caller's.
func tcpFlagsTest(v string) (func(flags int) bool, bool) {
	if v == "tcp --syn" {
		v = "tcp --tcp-flags FIN,SYN,RST,ACK SYN"
	}
	if rest, ok := strings.CutPrefix(v, "tcp --tcp-flags "); ok {
		f := strings.Fields(rest)
		if len(f) != 2 {
			return nil, false
		}
		mask, ok1 := tcpFlags(f[0])
		comp, ok2 := tcpFlags(f[1])
		return func(x int) bool { return x&mask == comp }, ok1 && ok2
	}
	rest := strings.TrimPrefix(v, "tcp flags ")
	f := strings.Fields(rest)
	switch {
	case len(f) == 3 && f[1] == "/":
		comp, ok1 := tcpFlags(f[0])
		mask, ok2 := tcpFlags(f[2])
		return func(x int) bool { return x&mask == comp }, ok1 && ok2
	case len(f) == 4 && f[0] == "!=" && f[2] == "/":
		comp, ok1 := tcpFlags(f[1])
		mask, ok2 := tcpFlags(f[3])
		return func(x int) bool { return x&mask != comp }, ok1 && ok2
	case len(f) == 4 && f[0] == "&" && (f[2] == "==" || f[2] == "!="):
		mask, ok1 := tcpFlags(f[1])
		comp, ok2 := tcpFlags(f[3])
		eq := f[2] == "=="
		return func(x int) bool { return (x&mask == comp) == eq }, ok1 && ok2
	case len(f) == 2 && (f[0] == "==" || f[0] == "!=" || f[0] == "!"):
		bits, ok := tcpFlags(f[1])
		switch f[0] {
		case "==":
			return func(x int) bool { return x == bits }, ok
		case "!=":
			return func(x int) bool { return x != bits }, ok
		}
		return func(x int) bool { return x&bits == 0 }, ok
	case len(f) == 1:
		bits, ok := tcpFlags(f[0])
		return func(x int) bool { return x&bits != 0 }, ok
	}
	return nil, false
}

// hasDNAT: a nat chain of p's family rewrites destinations (DNAT,
// REDIRECT, NETMAP).
func (e *evaluator) hasDNAT() bool {
	for _, t := range e.rs.Tables {
		if !tableSees(t, e.p.Family) {
			continue
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if r.Verdict.Kind == VerdictNat {
					switch strings.ToLower(r.Verdict.Target) {
					case "dnat", "redirect", "netmap":
						return true
					}
				}
			}
		}
	}
	return false
}
