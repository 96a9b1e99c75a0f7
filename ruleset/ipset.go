package ruleset

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ParseIpsetSave parses `ipset save` output: "create NAME TYPE OPTIONS"
// and "add NAME ELEMENT [OPTIONS]" lines. A set's Family is ip or ip6,
// Timeout its default timeout in seconds as written, Flags its other
// options except the sizing ones (hashsize, maxelem, bucketsize, initval).
// Element timeouts and packet/byte counters are dropped, an element's
// comment is kept. The sets come back sorted by name.
func ParseIpsetSave(data []byte) ([]*Set, error) {
	var sets []*Set
	byName := map[string]*Set{}
	var buf []iptToken
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		toks, err := iptTokens(line, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		buf = toks
		if len(toks) < 3 {
			return nil, fmt.Errorf("line %d: %q: too few words", n+1, line)
		}
		name := toks[1].s
		switch toks[0].s {
		case "create":
			if byName[name] != nil {
				return nil, fmt.Errorf("line %d: set %s created twice", n+1, name)
			}
			s := &Set{Source: SourceIpset, Name: name, Type: toks[2].s, Family: "ip"}
			for i := 3; i < len(toks); i++ {
				switch k := toks[i].s; k {
				case "family":
					if i+1 < len(toks) {
						i++
						if toks[i].s == "inet6" {
							s.Family = "ip6"
						}
					}
				case "hashsize", "maxelem", "bucketsize", "initval":
					i++
				case "timeout":
					if i+1 < len(toks) {
						i++
						s.Timeout = toks[i].s
					}
				case "range", "netmask", "markmask", "size":
					if i+1 < len(toks) {
						i++
						s.Flags = append(s.Flags, k+" "+toks[i].s)
					}
				default:
					s.Flags = append(s.Flags, k)
				}
			}
			sort.Strings(s.Flags)
			byName[name] = s
			sets = append(sets, s)
		case "add":
			s := byName[name]
			if s == nil {
				return nil, fmt.Errorf("line %d: add to set %s before its create line", n+1, name)
			}
			e := toks[2].s
			var left int64
			for i := 3; i < len(toks); i++ {
				switch toks[i].s {
				case "timeout":
					if i+1 < len(toks) {
						left, _ = strconv.ParseInt(toks[i+1].s, 10, 64)
					}
					i++
				case "packets", "bytes", "skbmark", "skbprio", "skbqueue":
					i++
				case "comment":
					if i+1 < len(toks) {
						i++
						e += " comment " + quote(toks[i].s)
					}
				default:
					e += " " + toks[i].s
				}
			}
			s.Elements = append(s.Elements, e)
			if left > 0 {
				if s.Expires == nil {
					s.Expires = map[string]int64{}
				}
				s.Expires[e] = left
			}
		default:
			return nil, fmt.Errorf("line %d: unknown ipset command %q", n+1, toks[0].s)
		}
	}
	for _, s := range sets {
		sort.Strings(s.Elements)
	}
	sort.Slice(sets, func(i, j int) bool { return sets[i].Name < sets[j].Name })
	return sets, nil
}
