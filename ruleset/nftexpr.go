package ruleset

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// nftRule builds a Rule from the JSON statements of one nft rule.
//
// Rendered exactly as nft prints them: match (==, !=, in, <, >, <=, >=) on
// payload, meta, ct, fib, concatenations, binary operations (&, |, ^, <<,
// >>, with nft's "flags / mask" form), prefixes, ranges, anonymous sets and
// set references; verdicts (accept, drop, continue, return, jump, goto,
// queue); counter (without values); log; limit; reject; mangle ("K set V");
// dnat/snat/masquerade/redirect; quota and counter references; set
// add/update; vmap; notrack; xt (as `xt match "name"` / `xt target
// "name"`). Anything else is written as its compact JSON.
func nftRule(exprs []any, comment string) *Rule {
	r := &Rule{Comment: comment}
	parts := make([]string, 0, len(exprs)+1)
	for _, e := range exprs {
		m, ok := e.(jobj)
		if !ok || len(m) != 1 {
			parts = append(parts, compactJSON(e))
			continue
		}
		for _, kv := range m {
			k, v := kv.k, kv.v
			parts = append(parts, nftStmt(r, k, v))
		}
	}
	if comment != "" {
		parts = append(parts, "comment "+quote(comment))
	}
	r.Text = strings.Join(parts, " ")
	return r
}

func setVerdict(r *Rule, kind, target string) {
	if kind == VerdictLog && r.Verdict.Kind != VerdictNone {
		return
	}
	r.Verdict = Verdict{Kind: kind, Target: target}
}

func nftStmt(r *Rule, k string, v any) string {
	obj, _ := v.(jobj)
	switch k {
	case "match":
		return nftMatch(r, obj)
	case "accept", "drop", "continue", "return":
		setVerdict(r, k, "")
		return k
	case "jump", "goto":
		t := fmt.Sprint(obj.get("target"))
		setVerdict(r, k, t)
		return k + " " + t
	case "counter":
		if name, ok := v.(string); ok {
			return "counter name " + quote(name)
		}
		r.Counter = true
		r.Packets += jsonUint(obj.get("packets"))
		r.Bytes += jsonUint(obj.get("bytes"))
		return "counter"
	case "quota":
		if name, ok := v.(string); ok {
			return "quota name " + quote(name)
		}
		if obj != nil {
			s := "quota "
			if b, _ := obj.get("inv").(bool); b {
				s += "over "
			}
			return s + fmt.Sprint(obj.get("val")) + " " + fmt.Sprint(obj.get("val_unit"))
		}
	case "log":
		setVerdict(r, VerdictLog, "log")
		s := "log"
		if obj == nil {
			return s
		}
		if p, ok := obj.get("prefix").(string); ok {
			s += " prefix " + quote(p)
		}
		for _, f := range []string{"group", "snaplen", "queue-threshold"} {
			if x, ok := obj.lookup(f); ok {
				s += " " + f + " " + fmt.Sprint(x)
			}
		}
		if l, ok := obj.get("level").(string); ok && l != "warn" {
			s += " level " + l
		}
		if f, ok := obj.lookup("flags"); ok {
			s += " flags " + listString(f, ",")
		}
		return s
	case "limit":
		s := nftLimit(obj)
		r.Matches = append(r.Matches, Match{Field: "limit", Value: s})
		return "limit rate " + s
	case "reject":
		setVerdict(r, VerdictReject, "")
		if obj == nil {
			return "reject"
		}
		s := "reject"
		if t, ok := obj.get("type").(string); ok {
			s += " with " + t
			if x, ok := obj.lookup("expr"); ok {
				s += " " + fmt.Sprint(x)
			}
		}
		return s
	case "mangle":
		key := obj.get("key")
		return renderValue(key, "") + " set " + renderValue(obj.get("value"), keyName(key))
	case "dnat", "snat", "masquerade", "redirect":
		setVerdict(r, VerdictNat, k)
		return nftNat(k, obj)
	case "queue":
		setVerdict(r, VerdictQueue, "")
		s := "queue"
		if obj != nil {
			if f, ok := obj.lookup("flags"); ok {
				s += " flags " + listString(f, ",")
			}
			if n, ok := obj.lookup("num"); ok {
				s += " to " + renderValue(n, "")
			}
		}
		return s
	case "vmap":
		setVerdict(r, VerdictOther, "vmap")
		return renderValue(obj.get("key"), "") + " vmap " + renderVmap(obj.get("data"))
	case "set":
		if obj != nil {
			return fmt.Sprint(obj.get("op")) + " " + fmt.Sprint(obj.get("set")) + " { " + setElemStmt(obj.get("elem")) + " }"
		}
	case "notrack":
		return "notrack"
	case "xt":
		typ, name := fmt.Sprint(obj.get("type")), fmt.Sprint(obj.get("name"))
		s := "xt " + typ + " " + quote(name)
		if typ == "target" {
			kind, target := iptTargetVerdict(name, nil)
			setVerdict(r, kind, target)
		} else {
			r.Matches = append(r.Matches, Match{Field: "other", Value: s})
		}
		return s
	}
	return compactJSON(jobj{{k, v}})
}

func setElemStmt(e any) string {
	if m, ok := e.(jobj); ok {
		if el, ok := m.get("elem").(jobj); ok {
			s := renderValue(el.get("val"), "")
			if t, ok := el.lookup("timeout"); ok {
				s += " timeout " + nftDuration(int64(jsonUint(t)))
			}
			return s
		}
	}
	return renderValue(e, "")
}

func renderVmap(d any) string {
	if m, ok := d.(jobj); ok {
		if els, ok := m.get("set").([]any); ok {
			parts := make([]string, len(els))
			for i, e := range els {
				parts[i] = setElem(e)
			}
			return "{ " + strings.Join(parts, ", ") + " }"
		}
	}
	return renderValue(d, "")
}

func nftLimit(o jobj) string {
	s := ""
	if b, _ := o.get("inv").(bool); b {
		s = "over "
	}
	unit, _ := o.get("rate_unit").(string)
	if unit != "" && unit != "packets" {
		s += fmt.Sprint(o.get("rate")) + " " + unit + "/" + fmt.Sprint(o.get("per"))
		if b := jsonUint(o.get("burst")); b != 0 {
			bu, _ := o.get("burst_unit").(string)
			if bu == "" {
				bu = "bytes"
			}
			s += fmt.Sprintf(" burst %d %s", b, bu)
		}
		return s
	}
	s += fmt.Sprint(o.get("rate")) + "/" + fmt.Sprint(o.get("per"))
	if b := jsonUint(o.get("burst")); b != 0 && b != 5 {
		s += fmt.Sprintf(" burst %d packets", b)
	}
	return s
}

func nftNat(k string, o jobj) string {
	s := k
	if o == nil {
		return s
	}
	if f, ok := o.get("family").(string); ok {
		s += " " + f
	}
	addr, hasAddr := o.lookup("addr")
	port, hasPort := o.lookup("port")
	if hasAddr || hasPort {
		s += " to "
		if hasAddr {
			a := renderValue(addr, "")
			if hasPort && strings.Contains(a, ":") {
				a = "[" + a + "]"
			}
			s += a
		}
		if hasPort {
			s += ":" + renderValue(port, "")
		}
	}
	if f, ok := o.lookup("flags"); ok {
		s += " " + listString(f, ",")
	}
	return s
}

var nftOps = map[string]bool{"!=": true, "<": true, ">": true, "<=": true, ">=": true}

// bitmaskKeys: nft prints an explicit "==" for them ("tcp flags == syn":
// exactly syn), as their implicit form means "any of" ("tcp flags syn").
// "!" ("tcp flags ! fin,syn": none of) is printed for any key.
var bitmaskKeys = map[string]bool{"tcp flags": true, "ct state": true, "ct status": true}

func nftMatch(r *Rule, o jobj) string {
	op, _ := o.get("op").(string)
	left, right := o.get("left"), o.get("right")
	key := keyName(left)
	ls := renderValue(left, "")
	rs := renderValue(right, key)
	var s string
	lm, _ := left.(jobj)
	if bin, ok := lm.lookup("&"); ok && (op == "==" || op == "in" || op == "!=") {
		// nft prints `tcp flags & (fin|syn) == syn` as `tcp flags syn / fin,syn`,
		// and `!=` as `tcp flags != syn / fin,syn`.
		if args, ok := bin.([]any); ok && len(args) == 2 {
			if _, isList := args[1].([]any); isList {
				neq := ""
				if op == "!=" {
					neq = "!= "
				}
				s = renderValue(args[0], "") + " " + neq + rs + " / " + listString(args[1], ",")
			}
		}
	}
	if s == "" {
		s = ls
		if nftOps[op] || op == "==" && (isBinop(lm) || bitmaskKeys[key]) || op == "!" {
			s += " " + op
		}
		s += " " + rs
	}
	neg := op == "!="
	if str, ok := right.(string); ok && strings.HasPrefix(str, "@") {
		r.Matches = append(r.Matches, Match{Field: "set", Value: str, Negate: neg})
		return s
	}
	field := ""
	switch key {
	case "ip saddr", "ip6 saddr", "arp saddr ip":
		field = "saddr"
	case "ip daddr", "ip6 daddr", "arp daddr ip":
		field = "daddr"
	case "meta l4proto", "ip protocol", "ip6 nexthdr":
		field = "l4proto"
	case "meta iifname", "meta iif":
		field = "iif"
	case "meta oifname", "meta oif":
		field = "oif"
	case "ct state":
		field = "ct state"
		rs = sortedList(rs)
	case "meta mark":
		field = "mark"
	case "icmp type", "icmpv6 type":
		field = "icmp type"
	}
	if proto, f, ok := strings.Cut(key, " "); ok && (f == "dport" || f == "sport") {
		switch proto {
		case "tcp", "udp", "sctp", "dccp", "udplite":
			if !hasMatch(r.Matches, "l4proto", proto) {
				r.Matches = append(r.Matches, Match{Field: "l4proto", Value: proto})
			}
			field = f
		case "th":
			field = f
		}
	}
	if nftOps[op] && op != "!=" {
		field = ""
	}
	if field == "" {
		r.Matches = append(r.Matches, Match{Field: "other", Value: s})
		return s
	}
	if field == "iif" || field == "oif" {
		rs = renderValue(right, "")
	}
	r.Matches = append(r.Matches, Match{Field: field, Value: matchValue(right, rs), Negate: neg})
	return s
}

func hasMatch(ms []Match, field, value string) bool {
	for _, m := range ms {
		if m.Field == field && m.Value == value && !m.Negate {
			return true
		}
	}
	return false
}

// matchValue is a Match.Value: sets as "{a,b}" without spaces.
func matchValue(right any, rendered string) string {
	if m, ok := right.(jobj); ok {
		if els, ok := m.get("set").([]any); ok {
			parts := make([]string, len(els))
			for i, e := range els {
				parts[i] = renderValue(e, "")
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
	}
	return rendered
}

func sortedList(s string) string {
	parts := strings.Split(s, ",")
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// keyName names a left-hand expression ("ip saddr", "meta mark", "ct
// state") to pick how its right-hand values print.
func keyName(v any) string {
	m, ok := v.(jobj)
	if !ok {
		return ""
	}
	for _, op := range binops {
		if args, ok := m.get(op).([]any); ok && len(args) == 2 {
			return keyName(args[0])
		}
	}
	if p, ok := m.get("payload").(jobj); ok {
		return fmt.Sprint(p.get("protocol")) + " " + fmt.Sprint(p.get("field"))
	}
	if p, ok := m.get("meta").(jobj); ok {
		return "meta " + fmt.Sprint(p.get("key"))
	}
	if p, ok := m.get("ct").(jobj); ok {
		return "ct " + fmt.Sprint(p.get("key"))
	}
	return ""
}

var binops = []string{"&", "|", "^", "<<", ">>"}

// isBinop: nft writes "==" after a binary operation ("meta mark & 0x4 ==
// 0x0"), not after a plain expression.
func isBinop(m jobj) bool {
	for _, op := range binops {
		if _, ok := m.lookup(op); ok {
			return true
		}
	}
	return false
}

var unqualifiedMeta = map[string]bool{"iif": true, "oif": true, "iifname": true, "oifname": true, "iifgroup": true, "oifgroup": true}

var quotedKeys = map[string]bool{"meta iifname": true, "meta oifname": true, "meta iif": true, "meta oif": true, "meta ibrname": true, "meta obrname": true}

// renderValue writes an expression as nft prints it; key is the left-hand
// side's name when v is a right-hand value.
func renderValue(v any, key string) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if quotedKeys[key] && !strings.HasPrefix(x, "@") {
			return quote(x)
		}
		return x
	case json.Number:
		if key == "meta mark" || key == "ct mark" {
			if n, err := strconv.ParseUint(x.String(), 10, 32); err == nil {
				return fmt.Sprintf("0x%08x", n)
			}
		}
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return listString(x, ",")
	case jobj:
		if len(x) != 1 {
			return compactJSON(x)
		}
		for _, kv := range x {
			k, a := kv.k, kv.v
			return renderObj(k, a, key)
		}
	}
	return compactJSON(v)
}

func renderObj(k string, a any, key string) string {
	o, _ := a.(jobj)
	switch k {
	case "payload":
		if p, ok := o.lookup("protocol"); ok {
			return fmt.Sprint(p) + " " + fmt.Sprint(o.get("field"))
		}
		if b, ok := o.lookup("base"); ok {
			return fmt.Sprintf("@%v,%v,%v", b, o.get("offset"), o.get("len"))
		}
	case "meta":
		kn := fmt.Sprint(o.get("key"))
		if unqualifiedMeta[kn] {
			return kn
		}
		return "meta " + kn
	case "ct":
		s := "ct "
		if d, ok := o.lookup("dir"); ok {
			s += fmt.Sprint(d) + " "
		}
		return s + fmt.Sprint(o.get("key"))
	case "prefix":
		return fmt.Sprintf("%v/%v", renderValue(o.get("addr"), ""), o.get("len"))
	case "range":
		if r, ok := a.([]any); ok && len(r) == 2 {
			return renderValue(r[0], key) + "-" + renderValue(r[1], key)
		}
	case "set":
		if els, ok := a.([]any); ok {
			parts := make([]string, len(els))
			for i, e := range els {
				parts[i] = renderValue(e, key)
			}
			return "{ " + strings.Join(parts, ", ") + " }"
		}
		return renderValue(a, key)
	case "concat":
		if els, ok := a.([]any); ok {
			parts := make([]string, len(els))
			for i, e := range els {
				parts[i] = renderValue(e, "")
			}
			return strings.Join(parts, " . ")
		}
	case "&", "|", "^", "<<", ">>":
		if args, ok := a.([]any); ok && len(args) == 2 {
			return renderValue(args[0], "") + " " + k + " " + renderValue(args[1], keyName(args[0]))
		}
	case "fib":
		s := "fib " + listString(o.get("flags"), " . ")
		return s + " " + fmt.Sprint(o.get("result"))
	case "map":
		return renderValue(o.get("key"), "") + " map " + renderVmap(o.get("data"))
	case "elem":
		return renderValue(o.get("val"), key)
	case "numgen":
		s := fmt.Sprintf("numgen %v mod %v", o.get("mode"), o.get("mod"))
		if off := jsonUint(o.get("offset")); off != 0 {
			s += fmt.Sprintf(" offset %d", off)
		}
		return s
	}
	return compactJSON(jobj{{k, a}})
}

// listString joins a JSON string list (or a single value) with sep.
func listString(v any, sep string) string {
	l, ok := v.([]any)
	if !ok {
		return renderValue(v, "")
	}
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = renderValue(x, "")
	}
	return strings.Join(parts, sep)
}

func jsonUint(v any) uint64 {
	if n, ok := v.(json.Number); ok {
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err == nil {
			return u
		}
	}
	return 0
}
