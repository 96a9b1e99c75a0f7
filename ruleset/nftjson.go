package ruleset

import (
	"bytes"
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
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("nft json: %w", err)
	}
	if doc.Nftables == nil {
		return nil, fmt.Errorf("nft json: no \"nftables\" array")
	}
	rs := &Ruleset{}
	tables := map[string]*Table{}
	chains := map[string]*Chain{}
	getTable := func(fam, name string) *Table {
		k := fam + " " + name
		t := tables[k]
		if t == nil {
			t = &Table{Source: SourceNft, Family: fam, Name: name}
			tables[k] = t
			rs.Tables = append(rs.Tables, t)
		}
		return t
	}
	for i, obj := range doc.Nftables {
		for kind, raw := range obj {
			switch kind {
			case "table":
				var o struct {
					Family string `json:"family"`
					Name   string `json:"name"`
					Handle uint64 `json:"handle"`
				}
				if err := unmarshal(raw, &o); err != nil {
					return nil, fmt.Errorf("nft json: object %d (table): %w", i, err)
				}
				getTable(o.Family, o.Name).Handle = o.Handle
			case "chain":
				var o struct {
					Family string      `json:"family"`
					Table  string      `json:"table"`
					Name   string      `json:"name"`
					Handle uint64      `json:"handle"`
					Type   string      `json:"type"`
					Hook   string      `json:"hook"`
					Prio   json.Number `json:"prio"`
					Policy string      `json:"policy"`
					Dev    any         `json:"dev"`
				}
				if err := unmarshal(raw, &o); err != nil {
					return nil, fmt.Errorf("nft json: object %d (chain): %w", i, err)
				}
				t := getTable(o.Family, o.Table)
				c := &Chain{Name: o.Name, Handle: o.Handle, Type: o.Type, Hook: o.Hook, Policy: strings.ToLower(o.Policy), Rules: []*Rule{}}
				if o.Prio != "" {
					p, err := o.Prio.Int64()
					if err != nil {
						return nil, fmt.Errorf("nft json: object %d: chain %s priority %q", i, o.Name, o.Prio)
					}
					c.Priority = int(p)
				}
				switch d := o.Dev.(type) {
				case string:
					c.Device = d
				case []any:
					var ds []string
					for _, x := range d {
						ds = append(ds, fmt.Sprint(x))
					}
					c.Device = strings.Join(ds, ",")
				}
				t.Chains = append(t.Chains, c)
				chains[o.Family+" "+o.Table+" "+o.Name] = c
			case "rule":
				var o struct {
					Family  string `json:"family"`
					Table   string `json:"table"`
					Chain   string `json:"chain"`
					Handle  uint64 `json:"handle"`
					Comment string `json:"comment"`
					Expr    []any  `json:"expr"`
				}
				if err := unmarshal(raw, &o); err != nil {
					return nil, fmt.Errorf("nft json: object %d (rule): %w", i, err)
				}
				k := o.Family + " " + o.Table + " " + o.Chain
				c := chains[k]
				if c == nil {
					getTable(o.Family, o.Table)
					c = &Chain{Name: o.Chain, Rules: []*Rule{}}
					tables[o.Family+" "+o.Table].Chains = append(tables[o.Family+" "+o.Table].Chains, c)
					chains[k] = c
				}
				r := nftRule(o.Expr, o.Comment)
				r.Handle = o.Handle
				c.Rules = append(c.Rules, r)
			case "set", "map":
				s, err := nftSet(raw)
				if err != nil {
					return nil, fmt.Errorf("nft json: object %d (%s): %w", i, kind, err)
				}
				t := getTable(s.Family, s.Table)
				t.Sets = append(t.Sets, s)
			default:
				// metainfo, counter, quota, limit, flowtable, ct helper,
				// ct timeout, ct expectation, secmark, synproxy: not part
				// of the model.
			}
		}
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

func unmarshal(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
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

func nftSet(raw json.RawMessage) (*Set, error) {
	var o struct {
		Family  string      `json:"family"`
		Table   string      `json:"table"`
		Name    string      `json:"name"`
		Type    any         `json:"type"`
		Map     any         `json:"map"`
		Flags   []string    `json:"flags"`
		Timeout json.Number `json:"timeout"`
		Elem    []any       `json:"elem"`
	}
	if err := unmarshal(raw, &o); err != nil {
		return nil, err
	}
	s := &Set{Source: SourceNft, Family: o.Family, Table: o.Table, Name: o.Name, Type: typeString(o.Type), Map: typeString(o.Map)}
	if len(o.Flags) > 0 {
		s.Flags = append([]string(nil), o.Flags...)
		sort.Strings(s.Flags)
	}
	if o.Timeout != "" {
		if n, err := o.Timeout.Int64(); err == nil {
			s.Timeout = nftDuration(n)
		} else {
			s.Timeout = o.Timeout.String()
		}
	}
	for _, e := range o.Elem {
		s.Elements = append(s.Elements, setElem(e))
	}
	sort.Strings(s.Elements)
	return s, nil
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
	if m, ok := e.(map[string]any); ok && len(m) == 1 {
		if el, ok := m["elem"].(map[string]any); ok {
			s := renderValue(el["val"], "")
			if c, ok := el["comment"].(string); ok {
				s += " comment " + quote(c)
			}
			return s
		}
	}
	return renderValue(e, "")
}

func renderVerdictOrValue(v any) string {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, x := range m {
			switch k {
			case "accept", "drop", "continue", "return":
				return k
			case "jump", "goto":
				if t, ok := x.(map[string]any); ok {
					return k + " " + fmt.Sprint(t["target"])
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
