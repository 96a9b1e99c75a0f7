// Package trace is lifeline trace's pure part, shared by the workstation
// and the helper: the match mini-language (Parse, Check), its rendering
// into the nft trace table and iptables TRACE rules, the parsers of the
// monitors' output (nft monitor trace, xtables-monitor --trace) and the
// per-host summary of what was traced. It has no OS dependencies.
//
// # The match
//
// A match is a list of tokens separated by spaces, each at most once:
//
//	tcp | udp | icmp | icmpv6   the protocol
//	dport N[-M], sport N[-M]    ports (tcp or udp only)
//	saddr ADDR|CIDR             source address or prefix, IPv4 or IPv6
//	daddr ADDR|CIDR             destination
//	iif NAME, oif NAME          input / output interface
//
// Anything else is refused, naming the token, so that nothing but checked
// values ever reaches an nft script or a command line.
package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/wire"
)

// Protocols a match may name.
var protos = map[string]bool{"tcp": true, "udp": true, "icmp": true, "icmpv6": true}

// ifnameRE is a Linux interface name lifeline accepts: IFNAMSIZ-1 bytes of
// a conservative alphabet (no quotes, spaces, slashes or wildcards).
var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

const grammar = "tcp|udp|icmp|icmpv6, dport N[-M], sport N[-M], saddr ADDR|CIDR, daddr ADDR|CIDR, iif NAME, oif NAME"

// Parse reads a match (see the package doc) into its typed form, checked.
func Parse(s string) (wire.TraceMatch, error) {
	var m wire.TraceMatch
	toks := strings.Fields(s)
	seen := map[string]bool{}
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		key := tok
		if protos[tok] {
			key = "protocol"
		}
		if seen[key] {
			return m, fmt.Errorf("match: %s given twice (at %q)", key, tok)
		}
		seen[key] = true
		if protos[tok] {
			m.Proto = tok
			continue
		}
		switch tok {
		case "dport", "sport", "saddr", "daddr", "iif", "oif":
		default:
			return m, fmt.Errorf("match: unknown token %q (want %s)", tok, grammar)
		}
		if i+1 >= len(toks) {
			return m, fmt.Errorf("match: %s needs a value", tok)
		}
		i++
		val := toks[i]
		var err error
		switch tok {
		case "dport":
			m.DPortFrom, m.DPortTo, err = parsePorts(val)
		case "sport":
			m.SPortFrom, m.SPortTo, err = parsePorts(val)
		case "saddr":
			m.SAddr, err = parseAddr(val)
		case "daddr":
			m.DAddr, err = parseAddr(val)
		case "iif":
			m.IIf, err = parseIfname(val)
		case "oif":
			m.OIf, err = parseIfname(val)
		}
		if err != nil {
			return m, fmt.Errorf("match: %s %q: %w", tok, val, err)
		}
	}
	return m, Check(m)
}

func parsePorts(s string) (int, int, error) {
	a, b, isRange := strings.Cut(s, "-")
	from, err := parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	to := from
	if isRange {
		if to, err = parsePort(b); err != nil {
			return 0, 0, err
		}
	}
	if from > to {
		return 0, 0, errors.New("the range is reversed")
	}
	return from, to, nil
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("want a port number 1-65535 or a range N-M")
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, errors.New("want a port number 1-65535 or a range N-M")
	}
	return n, nil
}

// parseAddr returns the canonical text of an address or prefix (a prefix
// with host bits set is masked: 10.1.2.3/8 is 10.0.0.0/8).
func parseAddr(s string) (string, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", errors.New("want an IPv4 or IPv6 address or CIDR prefix")
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			return "", errors.New("an IPv4-mapped IPv6 prefix never matches: write the IPv4 prefix")
		}
		return p.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", errors.New("want an IPv4 or IPv6 address or CIDR prefix (no zone)")
	}
	if a.Is4In6() {
		return "", errors.New("an IPv4-mapped IPv6 address never matches: write the IPv4 address")
	}
	return a.String(), nil
}

func parseIfname(s string) (string, error) {
	if !ifnameRE.MatchString(s) {
		return "", errors.New("want an interface name: 1-15 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
	}
	return s, nil
}

// Check validates a match as the host receives it: every value as Parse
// would accept it, and a combination the tracer can express. It is the
// helper's guard against a hand-made request.
func Check(m wire.TraceMatch) error {
	if m == (wire.TraceMatch{}) {
		return errors.New("match: empty: it would trace every packet (hint: name at least a port or an address, e.g. 'tcp dport 22 saddr 203.0.113.7')")
	}
	if m.Proto != "" && !protos[m.Proto] {
		return fmt.Errorf("match: unknown protocol %q (want tcp, udp, icmp or icmpv6)", m.Proto)
	}
	for _, p := range []struct {
		name     string
		from, to int
	}{{"dport", m.DPortFrom, m.DPortTo}, {"sport", m.SPortFrom, m.SPortTo}} {
		if p.from == 0 && p.to == 0 {
			continue
		}
		if p.from < 1 || p.to > 65535 || p.from > p.to {
			return fmt.Errorf("match: %s %d-%d out of range", p.name, p.from, p.to)
		}
		if m.Proto != "tcp" && m.Proto != "udp" {
			return fmt.Errorf("match: %s needs tcp or udp before it", p.name)
		}
	}
	for _, a := range []struct{ name, v string }{{"saddr", m.SAddr}, {"daddr", m.DAddr}} {
		if a.v == "" {
			continue
		}
		c, err := parseAddr(a.v)
		if err != nil || c != a.v {
			return fmt.Errorf("match: %s %q is not a canonical address or prefix", a.name, a.v)
		}
	}
	for _, n := range []struct{ name, v string }{{"iif", m.IIf}, {"oif", m.OIf}} {
		if n.v != "" && !ifnameRE.MatchString(n.v) {
			return fmt.Errorf("match: %s %q is not an interface name", n.name, n.v)
		}
	}
	if m.IIf != "" && m.OIf != "" {
		return errors.New("match: iif and oif together: no early hook sees both (iif is known when a packet arrives, oif only for packets this host sends); trace one side")
	}
	fam, err := familyOf(m)
	if err != nil {
		return err
	}
	switch {
	case m.Proto == "icmp" && fam == "ip6":
		return errors.New("match: icmp is IPv4's: use icmpv6 with IPv6 addresses")
	case m.Proto == "icmpv6" && fam == "ip":
		return errors.New("match: icmpv6 is IPv6's: use icmp with IPv4 addresses")
	}
	return nil
}

// familyOf is "ip" or "ip6" when the addresses name one, "" when the
// match is for both.
func familyOf(m wire.TraceMatch) (string, error) {
	fam := ""
	for _, a := range []string{m.SAddr, m.DAddr} {
		if a == "" {
			continue
		}
		f := "ip"
		if strings.Contains(a, ":") {
			f = "ip6"
		}
		if fam != "" && fam != f {
			return "", errors.New("match: saddr and daddr are of different families (one IPv4, one IPv6)")
		}
		fam = f
	}
	return fam, nil
}

// Family is the address family a checked match is for: "ip" (IPv4),
// "ip6" (IPv6) or "" (both). icmp and icmpv6 imply theirs.
func Family(m wire.TraceMatch) string {
	fam, _ := familyOf(m)
	switch {
	case fam != "":
		return fam
	case m.Proto == "icmp":
		return "ip"
	case m.Proto == "icmpv6":
		return "ip6"
	}
	return ""
}

// String writes a match back in the mini-language.
func String(m wire.TraceMatch) string {
	var w []string
	if m.Proto != "" {
		w = append(w, m.Proto)
	}
	if m.DPortFrom != 0 {
		w = append(w, "dport", ports(m.DPortFrom, m.DPortTo, "-"))
	}
	if m.SPortFrom != 0 {
		w = append(w, "sport", ports(m.SPortFrom, m.SPortTo, "-"))
	}
	for _, kv := range [][2]string{{"saddr", m.SAddr}, {"daddr", m.DAddr}, {"iif", m.IIf}, {"oif", m.OIf}} {
		if kv[1] != "" {
			w = append(w, kv[0], kv[1])
		}
	}
	return strings.Join(w, " ")
}

func ports(from, to int, sep string) string {
	if to == 0 || to == from {
		return strconv.Itoa(from)
	}
	return strconv.Itoa(from) + sep + strconv.Itoa(to)
}
