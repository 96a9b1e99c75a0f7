package ruleset

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// ParseNftJSON parses the output of `nft -j list ruleset` (JSON schema 1,
// as nftables 1.0.x prints it) into a Ruleset of Source nft.
//
// Tables, chains, rules, sets and maps enter the model; named counters,
// quotas, limits, ct helpers/timeouts, secmarks, synproxies and flowtables
// are skipped (they hold no packet path). Each rule's Text is its statement
// list in nft's own syntax (see renderStmt for what is rendered exactly;
// the rest is kept as compact JSON so that nothing is lost), with a
// `counter` statement written as "counter" and its values in
// Packets/Bytes.
//
// A table that looks like one iptables-nft manages (family ip, ip6, arp or
// bridge, an iptables table name, and every base chain a built-in chain
// name) gets Owner OwnerIptablesNf; Merge drops it when the same table is
// read through iptables-nft-save as well.
func ParseNftJSON(data []byte) (*Ruleset, error) {
	rs := &Ruleset{}
	type tkey struct{ family, name string }
	type ckey struct{ family, table, name string }
	tables := map[tkey]*Table{}
	chains := map[ckey]*Chain{}
	getTable := func(fam, name string) *Table {
		k := tkey{fam, name}
		t := tables[k]
		if t == nil {
			t = &Table{Source: SourceNft, Family: fam, Name: name}
			tables[k] = t
			rs.Tables = append(rs.Tables, t)
		}
		return t
	}
	found, err := jsonEach(data, "nftables", func(i int, x any) error {
		obj, ok := x.(jobj)
		if !ok {
			return fmt.Errorf("object %d is not an object", i)
		}
		for _, kv := range obj {
			kind, v := kv.k, kv.v
			o, isObj := v.(jobj)
			if keys := nftKeys[kind]; keys != nil {
				if !isObj {
					return fmt.Errorf("object %d: %s is not an object", i, kind)
				}
				for _, k := range keys {
					if _, ok := o.get(k).(string); !ok {
						return fmt.Errorf("object %d: %s without a string %q", i, kind, k)
					}
				}
			}
			switch kind {
			case "table":
				getTable(jstr(o, "family"), jstr(o, "name")).Handle = jsonUint(o.get("handle"))
			case "chain":
				t := getTable(jstr(o, "family"), jstr(o, "table"))
				c := &Chain{Name: jstr(o, "name"), Handle: jsonUint(o.get("handle")), Type: jstr(o, "type"), Hook: jstr(o, "hook"), Policy: strings.ToLower(jstr(o, "policy")), Rules: []*Rule{}}
				if pr, ok := o.lookup("prio"); ok {
					n, ok := pr.(json.Number)
					p, err := n.Int64()
					if !ok || err != nil {
						return fmt.Errorf("object %d: chain %s priority %v", i, c.Name, pr)
					}
					c.Priority = int(p)
				}
				switch d := o.get("dev").(type) {
				case string:
					c.Device = d
				case []any:
					c.Device = listString(d, ",")
				}
				t.Chains = append(t.Chains, c)
				chains[ckey{t.Family, t.Name, c.Name}] = c
			case "rule":
				k := ckey{jstr(o, "family"), jstr(o, "table"), jstr(o, "chain")}
				c := chains[k]
				if c == nil {
					t := getTable(k.family, k.table)
					c = &Chain{Name: k.name, Rules: []*Rule{}}
					t.Chains = append(t.Chains, c)
					chains[k] = c
				}
				exprs, _ := o.get("expr").([]any)
				r := nftRule(exprs, jstr(o, "comment"))
				r.Handle = jsonUint(o.get("handle"))
				c.Rules = append(c.Rules, r)
			case "set", "map":
				s := nftSet(o)
				t := getTable(s.Family, s.Table)
				t.Sets = append(t.Sets, s)
			default:
				// metainfo, counter, quota, limit, flowtable, ct helper,
				// ct timeout, ct expectation, secmark, synproxy: not part
				// of the model.
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nft json: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("nft json: no \"nftables\" array")
	}
	for _, t := range rs.Tables {
		if t.Chains == nil {
			t.Chains = []*Chain{}
		}
		t.Owner = OwnerOf(SourceNft, t.Family, t.Name, "")
		if t.Owner == "" && looksIptablesNft(t) {
			t.Owner = OwnerIptablesNf
		}
		for _, c := range t.Chains {
			c.Owner = chainOwner(SourceNft, t, c.Name)
		}
		sort.SliceStable(t.Sets, func(i, j int) bool { return t.Sets[i].Name < t.Sets[j].Name })
	}
	return rs, nil
}

// chainOwner: a chain inherits its table's owner; in an iptables-nft
// table (and iptables tables) it is the chain name's owner.
func chainOwner(src Source, t *Table, chain string) string {
	if t.Owner != "" && t.Owner != OwnerIptablesNf {
		return t.Owner
	}
	if builtinChains[chain] != "" && (t.Owner == OwnerIptablesNf || src != SourceNft) {
		return ""
	}
	return ownerOfName(chain)
}

// nftKeys: the members each kind of object must have, as strings.
var nftKeys = map[string][]string{
	"table": {"family", "name"},
	"chain": {"family", "table", "name"},
	"rule":  {"family", "table", "chain"},
	"set":   {"family", "table", "name"},
	"map":   {"family", "table", "name"},
}

// jstr is o[k] if it is a string.
func jstr(o jobj, k string) string {
	s, _ := o.get(k).(string)
	return s
}

var iptablesTableNames = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

func looksIptablesNft(t *Table) bool {
	switch t.Family {
	case "ip", "ip6", "arp", "bridge":
	default:
		return false
	}
	if !iptablesTableNames[t.Name] {
		return false
	}
	base := 0
	for _, c := range t.Chains {
		if c.Base() {
			if builtinChains[c.Name] == "" {
				return false
			}
			base++
		}
	}
	return base > 0
}

func nftSet(o jobj) *Set {
	s := &Set{Source: SourceNft, Family: jstr(o, "family"), Table: jstr(o, "table"), Name: jstr(o, "name"), Type: typeString(o.get("type")), Map: typeString(o.get("map"))}
	switch f := o.get("flags").(type) {
	case []any:
		for _, x := range f {
			s.Flags = append(s.Flags, renderValue(x, ""))
		}
		sort.Strings(s.Flags)
	case string:
		s.Flags = []string{f}
	}
	switch t := o.get("timeout").(type) {
	case json.Number:
		if n, err := t.Int64(); err == nil {
			s.Timeout = nftDuration(n)
		} else {
			s.Timeout = t.String()
		}
	case nil:
	default:
		s.Timeout = renderValue(t, "")
	}
	elems, _ := o.get("elem").([]any)
	for _, e := range elems {
		el := setElem(e)
		s.Elements = append(s.Elements, el)
		if sec, ok := elemExpires(e); ok {
			if s.Expires == nil {
				s.Expires = map[string]int64{}
			}
			s.Expires[el] = sec
		}
	}
	sort.Strings(s.Elements)
	return s
}

func typeString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case []any:
		parts := make([]string, len(t))
		for i, x := range t {
			parts[i] = typeString(x)
		}
		return strings.Join(parts, " . ")
	}
	return compactJSON(v)
}

// setElem renders one element of a set or map: per-element timeout and
// expiry are dropped, a comment is kept.
func setElem(e any) string {
	if kv, ok := e.([]any); ok && len(kv) == 2 {
		return setElem(kv[0]) + " : " + renderVerdictOrValue(kv[1])
	}
	if m, ok := e.(jobj); ok && len(m) == 1 {
		if el, ok := m.get("elem").(jobj); ok {
			s := renderValue(el.get("val"), "")
			if c, ok := el.get("comment").(string); ok {
				s += " comment " + quote(c)
			}
			return s
		}
	}
	return renderValue(e, "")
}

// elemExpires is an element's "expires" (seconds left), when it has one.
func elemExpires(e any) (int64, bool) {
	m, ok := e.(jobj)
	if !ok || len(m) != 1 {
		return 0, false
	}
	el, ok := m.get("elem").(jobj)
	if !ok {
		return 0, false
	}
	n, ok := el.get("expires").(json.Number)
	if !ok {
		return 0, false
	}
	sec, err := n.Int64()
	return sec, err == nil
}

func renderVerdictOrValue(v any) string {
	if m, ok := v.(jobj); ok && len(m) == 1 {
		for _, kv := range m {
			k, x := kv.k, kv.v
			switch k {
			case "accept", "drop", "continue", "return":
				return k
			case "jump", "goto":
				if t, ok := x.(jobj); ok {
					return k + " " + fmt.Sprint(t.get("target"))
				}
			}
		}
	}
	return renderValue(v, "")
}

// nftDuration writes seconds as nft does: 1h, 10m, 1d2h3m4s.
func nftDuration(sec int64) string {
	if sec <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		n int64
		s string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if sec >= u.n {
			fmt.Fprintf(&b, "%d%s", sec/u.n, u.s)
			sec %= u.n
		}
	}
	return b.String()
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// quote writes s in double quotes as nft does (no escapes inside).
func quote(s string) string { return `"` + s + `"` }
