package ruleset

import (
	"net/netip"
	"strconv"
	"strings"
)

// Shadow is a rule that can never match: an earlier rule of the same chain
// with a terminal verdict catches every packet it would. Rule and By are
// indices into the chain's Rules.
type Shadow struct {
	Table    string `json:"table"`
	Chain    string `json:"chain"`
	Rule     int    `json:"rule"`
	By       int    `json:"by"`
	RuleText string `json:"rule_text"`
	ByText   string `json:"by_text"`
}

// MaxShadowRules bounds the chains Shadowed compares pairwise; longer ones
// (kube-proxy's service chains) are skipped, and Audit says so.
const MaxShadowRules = 3000

// Shadowed lists the shadowed rules of a chain. It claims only what is
// certain from the typed matches: a match it does not interpret (Field
// "other", a set lookup, a limit, a mark) makes the earlier rule unable to
// shadow anything, and negations imply only the identical negation.
func Shadowed(t *Table, c *Chain) []Shadow {
	if len(c.Rules) > MaxShadowRules {
		return nil
	}
	var out []Shadow
	var catchers []int // earlier rules that can shadow
	for i, r := range c.Rules {
		for _, j := range catchers {
			if covers(c.Rules[j], r) {
				out = append(out, Shadow{Table: t.ID(), Chain: c.Name, Rule: i, By: j, RuleText: r.Text, ByText: c.Rules[j].Text})
				break
			}
		}
		if r.Verdict.Terminal() && interpretable(r) {
			catchers = append(catchers, i)
		}
	}
	return out
}

// interpretable: every match of r is one covers understands, and r has no
// statement that conditions it without being a match (quota, numgen, a set
// update, a vmap).
func interpretable(r *Rule) bool {
	for _, m := range r.Matches {
		switch m.Field {
		case "l4proto", "saddr", "daddr", "sport", "dport", "iif", "oif", "ct state":
		default:
			return false
		}
	}
	return len(r.Matches) > 0 || Unconditional(r)
}

// Unconditional reports whether r applies to every packet that reaches it:
// no match, and nothing in its text that conditions it.
func Unconditional(r *Rule) bool {
	if len(r.Matches) > 0 {
		return false
	}
	fs := strings.Fields(r.Text)
	if len(fs) == 0 {
		return false
	}
	if fs[0] == "-j" || fs[0] == "-g" {
		return true // iptables: any condition is an option before -j
	}
	for _, f := range fs {
		switch f {
		case "quota", "numgen", "limit", "vmap", "meta", "ct", "@", "update", "add", "queue":
			return false
		}
		if strings.HasPrefix(f, "@") {
			return false
		}
	}
	switch fs[0] {
	case "accept", "drop", "reject", "jump", "goto", "return", "counter", "log":
		return true
	}
	return false
}

// covers reports whether every packet matching b also matches a.
func covers(a, b *Rule) bool {
	for _, am := range a.Matches {
		ok := false
		for _, bm := range b.Matches {
			if bm.Field == am.Field && implies(bm, am) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// implies: every packet matching b matches a (same field).
func implies(b, a Match) bool {
	if a.Negate || b.Negate {
		return a.Negate && b.Negate && a.Value == b.Value
	}
	switch a.Field {
	case "l4proto", "ct state":
		return subset(items(b.Value), items(a.Value))
	case "saddr", "daddr":
		return prefixesWithin(items(b.Value), items(a.Value))
	case "sport", "dport":
		return portsWithin(items(b.Value), items(a.Value))
	case "iif", "oif":
		if a.Value == b.Value {
			return true
		}
		if strings.HasSuffix(a.Value, "+") || strings.HasSuffix(a.Value, "*") {
			p := a.Value[:len(a.Value)-1]
			return strings.HasPrefix(strings.TrimRight(b.Value, "+*"), p)
		}
	}
	return false
}

// items splits "{a,b}" or "a,b" or "a" into its elements.
func items(v string) []string {
	v = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}"))
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func subset(b, a []string) bool {
	for _, x := range b {
		found := false
		for _, y := range a {
			if x == y {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return len(b) > 0
}

func prefixOf(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func prefixesWithin(b, a []string) bool {
	if len(b) == 0 {
		return false
	}
	for _, x := range b {
		bp, ok := prefixOf(x)
		if !ok {
			return false
		}
		in := false
		for _, y := range a {
			ap, ok := prefixOf(y)
			if ok && ap.Addr().BitLen() == bp.Addr().BitLen() && ap.Bits() <= bp.Bits() && ap.Contains(bp.Addr()) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// portRange parses "22", "1000-2000" or "1000:2000".
func portRange(s string) (lo, hi int, ok bool) {
	l, h, found := strings.Cut(s, "-")
	if !found {
		l, h, found = strings.Cut(s, ":")
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(l))
	if !found {
		return lo, lo, err1 == nil
	}
	hi, err2 := strconv.Atoi(strings.TrimSpace(h))
	return lo, hi, err1 == nil && err2 == nil && lo <= hi
}

func portsWithin(b, a []string) bool {
	if len(b) == 0 {
		return false
	}
	for _, x := range b {
		blo, bhi, ok := portRange(x)
		if !ok {
			return false
		}
		in := false
		for _, y := range a {
			alo, ahi, ok := portRange(y)
			if ok && alo <= blo && bhi <= ahi {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// portIn reports whether port is among the elements of a port match value.
func portIn(v string, port int) bool {
	for _, x := range items(v) {
		if lo, hi, ok := portRange(x); ok && lo <= port && port <= hi {
			return true
		}
	}
	return false
}
