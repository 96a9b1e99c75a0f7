package ruleset

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonValue parses one JSON document into jobj (an object, its members in
// order), []any, string, json.Number, bool and nil, several times faster
// than encoding/json into an `any`: strings without escapes share the
// input's memory, objects are small slices, nothing goes through
// reflection. nft -j output of a
// kube-proxy-scale host is ~10 MB; encoding/json takes half a second on
// it.
func jsonValue(data []byte) (any, error) {
	p := &jsonParser{s: string(data)}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, p.errf("data after the top-level value")
	}
	return v, nil
}

// jsonEach parses a JSON document whose top level is an object and calls
// fn for each element of its array member key, one at a time, so that only
// one element's values are alive at once; found is whether key was there.
func jsonEach(data []byte, key string, fn func(i int, v any) error) (found bool, err error) {
	p := &jsonParser{s: string(data)}
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return false, p.errf("expected an object")
	}
	p.i++
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return false, p.end()
	}
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return found, p.errf("expected a string key")
		}
		k, err := p.str()
		if err != nil {
			return found, err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return found, p.errf("expected ':'")
		}
		p.i++
		p.ws()
		if k == key && p.i < len(p.s) && p.s[p.i] == '[' {
			found = true
			p.i++
			p.ws()
			n := 0
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
			} else {
				for {
					p.ws()
					v, err := p.value(1)
					if err != nil {
						return found, err
					}
					if err := fn(n, v); err != nil {
						return found, err
					}
					n++
					p.ws()
					if p.i < len(p.s) && p.s[p.i] == ',' {
						p.i++
						continue
					}
					if p.i < len(p.s) && p.s[p.i] == ']' {
						p.i++
						break
					}
					return found, p.errf("expected ',' or ']'")
				}
			}
		} else if _, err := p.value(1); err != nil {
			return found, err
		}
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return found, p.end()
		}
		return found, p.errf("expected ',' or '}'")
	}
}

func (p *jsonParser) end() error {
	p.ws()
	if p.i != len(p.s) {
		return p.errf("data after the top-level value")
	}
	return nil
}

// jobj is a JSON object: its members in document order. nft objects have
// a handful of members, so a lookup is a short scan.
type jobj []jkv

type jkv struct {
	k string
	v any
}

// get is the member k's value (nil if none; the first if repeated).
func (o jobj) get(k string) any {
	for _, kv := range o {
		if kv.k == k {
			return kv.v
		}
	}
	return nil
}

// lookup is get that says whether k is there.
func (o jobj) lookup(k string) (any, bool) {
	for _, kv := range o {
		if kv.k == k {
			return kv.v, true
		}
	}
	return nil, false
}

// MarshalJSON writes the object with its members in order.
func (o jobj) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, kv := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(kv.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(kv.v)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

type jsonParser struct {
	s string
	i int
}

const jsonMaxDepth = 256

func (p *jsonParser) errf(format string, a ...any) error {
	return fmt.Errorf("json offset %d: %s", p.i, fmt.Sprintf(format, a...))
}

func (p *jsonParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, error) {
	if depth > jsonMaxDepth {
		return nil, p.errf("nested deeper than %d", jsonMaxDepth)
	}
	if p.i >= len(p.s) {
		return nil, p.errf("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		m := make(jobj, 0, 2)
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return m, nil
		}
		for {
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return nil, p.errf("expected a string key")
			}
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, p.errf("expected ':'")
			}
			p.i++
			p.ws()
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m = append(m, jkv{k, v})
			p.ws()
			if p.i >= len(p.s) {
				return nil, p.errf("unterminated object")
			}
			if p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.s[p.i] == '}' {
				p.i++
				return m, nil
			}
			return nil, p.errf("expected ',' or '}'")
		}
	case c == '[':
		p.i++
		l := make([]any, 0, 4)
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return []any{}, nil
		}
		for {
			p.ws()
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
			p.ws()
			if p.i >= len(p.s) {
				return nil, p.errf("unterminated array")
			}
			if p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.s[p.i] == ']' {
				p.i++
				return l, nil
			}
			return nil, p.errf("expected ',' or ']'")
		}
	case c == '"':
		return p.str()
	case c == '-' || c >= '0' && c <= '9':
		return p.num()
	case p.lit("true"):
		return true, nil
	case p.lit("false"):
		return false, nil
	case p.lit("null"):
		return nil, nil
	}
	return nil, p.errf("unexpected character %q", p.s[p.i])
}

func (p *jsonParser) lit(w string) bool {
	if len(p.s)-p.i >= len(w) && p.s[p.i:p.i+len(w)] == w {
		p.i += len(w)
		return true
	}
	return false
}

func (p *jsonParser) num() (any, error) {
	start := p.i
	if p.s[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if digits() == 0 {
		return nil, p.errf("bad number")
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errf("bad number")
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errf("bad number")
		}
	}
	return json.Number(p.s[start:p.i]), nil
}

// str reads a string at p.i (a '"').
func (p *jsonParser) str() (string, error) {
	p.i++
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '"' {
			s := p.s[start:p.i]
			p.i++
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errf("control character in string")
		}
		p.i++
	}
	b := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), nil
		case c < 0x20:
			return "", p.errf("control character in string")
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			break
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(utf8.RuneError)
				if p.i+1 < len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
					p.i += 2
					if x, ok := p.hex4(); ok {
						r2 = x
					}
				}
				r = utf16.DecodeRune(r, r2)
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", p.errf("bad escape \\%c", e)
		}
	}
	return "", p.errf("unterminated string")
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.s)-p.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}
