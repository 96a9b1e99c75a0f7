package ruleset

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseIptablesSave parses `iptables-save [-c]` or `ip6tables-save [-c]`
// output read from src (family ip6 for the ip6tables sources, ip
// otherwise). Built-in chains become base chains (Hook from the name,
// Priority and Type those iptables-nft registers), user chains regular
// ones. Rule.Text is the rule after "-A CHAIN " without its counters;
// Matches and the Verdict are read from its options. Malformed input
// gives an error naming the line.
//
// A table iptables-nft-save warns about ("# Table `raw' contains
// incompatible base-chains, use 'nft' tool to list them.") is left out:
// iptables-nft-save prints it as built-in chains with ACCEPT policies that
// are not there, and only nft's own listing shows what it holds.
func ParseIptablesSave(src Source, data []byte) (*Ruleset, error) {
	fam := "ip"
	if strings.HasPrefix(string(src), "ip6") {
		fam = "ip6"
	}
	rs := &Ruleset{}
	var t *Table
	declared := map[string]*Chain{}
	incompatible := map[string]bool{}
	text := string(data)
	lineNo := 0
	for len(text) > 0 {
		lineNo++
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimRight(line, " \t\r")
		if rest, ok := strings.CutPrefix(line, "# Table `"); ok {
			if name, warn, ok := strings.Cut(rest, "' "); ok && strings.Contains(warn, "incompatible") {
				incompatible[name] = true
			}
		}
		if line == "" || line[0] == '#' {
			continue
		}
		switch {
		case line[0] == '*':
			if t != nil {
				return nil, fmt.Errorf("line %d: table %s starts before table %s's COMMIT", lineNo, line[1:], t.Name)
			}
			name := line[1:]
			if name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("line %d: bad table name %q", lineNo, name)
			}
			t = &Table{Source: src, Family: fam, Name: name, Chains: []*Chain{}}
			clear(declared)
		case line == "COMMIT":
			if t == nil {
				return nil, fmt.Errorf("line %d: COMMIT outside a table", lineNo)
			}
			if !incompatible[t.Name] {
				rs.Tables = append(rs.Tables, t)
			}
			t = nil
		case line[0] == ':':
			if t == nil {
				return nil, fmt.Errorf("line %d: chain outside a table", lineNo)
			}
			c, err := iptChainLine(t, line[1:])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
			if declared[c.Name] != nil {
				return nil, fmt.Errorf("line %d: chain %s declared twice", lineNo, c.Name)
			}
			declared[c.Name] = c
			t.Chains = append(t.Chains, c)
		default:
			if t == nil {
				return nil, fmt.Errorf("line %d: rule outside a table", lineNo)
			}
			r, chain, err := iptRuleLine(line, declared)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, err)
			}
			c := declared[chain]
			if c == nil {
				return nil, fmt.Errorf("line %d: rule for undeclared chain %s", lineNo, chain)
			}
			r.Line = lineNo
			c.Rules = append(c.Rules, r)
		}
	}
	if t != nil {
		return nil, fmt.Errorf("line %d: table %s has no COMMIT (truncated output?)", lineNo, t.Name)
	}
	return rs, nil
}

// Standard priorities and types of iptables' built-in chains, as
// iptables-nft registers them.
func iptChainPrio(table, chain string) (typ string, prio int) {
	switch table {
	case "raw":
		return "filter", -300
	case "mangle":
		if chain == "OUTPUT" {
			return "route", -150
		}
		return "filter", -150
	case "nat":
		if chain == "PREROUTING" || chain == "OUTPUT" {
			return "nat", -100
		}
		return "nat", 100
	case "security":
		return "filter", 50
	}
	return "filter", 0
}

func iptChainLine(t *Table, s string) (*Chain, error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 || f[0] == "" {
		return nil, fmt.Errorf("bad chain line %q", ":"+s)
	}
	c := &Chain{Name: f[0], Rules: []*Rule{}}
	if f[1] != "-" {
		hook := builtinChains[c.Name]
		if hook == "" {
			return nil, fmt.Errorf("chain %s has policy %s but is not a built-in chain", c.Name, f[1])
		}
		c.Hook = hook
		c.Type, c.Priority = iptChainPrio(t.Name, c.Name)
		c.Policy = strings.ToLower(f[1])
	} else {
		c.Owner = OwnerOf(t.Source, t.Family, t.Name, c.Name)
	}
	if len(f) == 3 {
		p, b, err := iptCounters(f[2])
		if err != nil {
			return nil, fmt.Errorf("chain %s: %w", c.Name, err)
		}
		c.PolicyPackets, c.PolicyBytes = p, b
	}
	return c, nil
}

func iptCounters(s string) (p, b uint64, err error) {
	if len(s) < 5 || s[0] != '[' || s[len(s)-1] != ']' {
		return 0, 0, fmt.Errorf("bad counters %q", s)
	}
	ps, bs, ok := strings.Cut(s[1:len(s)-1], ":")
	if !ok {
		return 0, 0, fmt.Errorf("bad counters %q", s)
	}
	if p, err = strconv.ParseUint(ps, 10, 64); err == nil {
		b, err = strconv.ParseUint(bs, 10, 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("bad counters %q", s)
	}
	return p, b, nil
}

// iptToken is one word of a rule; quoted words are values whatever they
// hold.
type iptToken struct {
	s      string
	quoted bool
}

// iptTokens splits a rule as iptables-save prints it: words separated by
// blanks, double-quoted words with \" and \\ escapes.
func iptTokens(s string, toks []iptToken) ([]iptToken, error) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == ' ' || c == '\t' {
			i++
			continue
		}
		if c == '"' {
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(s) {
				if s[j] == '\\' && j+1 < len(s) {
					b.WriteByte(s[j+1])
					j += 2
					continue
				}
				if s[j] == '"' {
					closed = true
					j++
					break
				}
				b.WriteByte(s[j])
				j++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quote at column %d", i+1)
			}
			toks = append(toks, iptToken{b.String(), true})
			i = j
			continue
		}
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' {
			j++
		}
		toks = append(toks, iptToken{s[i:j], false})
		i = j
	}
	return toks, nil
}

func iptRuleLine(line string, chains map[string]*Chain) (*Rule, string, error) {
	r := &Rule{Counter: true}
	rest := line
	if rest[0] == '[' {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return nil, "", fmt.Errorf("bad counters in %q", line)
		}
		p, b, err := iptCounters(rest[:end+1])
		if err != nil {
			return nil, "", err
		}
		r.Packets, r.Bytes = p, b
		rest = strings.TrimLeft(rest[end+1:], " \t")
	}
	if !strings.HasPrefix(rest, "-A ") {
		return nil, "", fmt.Errorf("not a rule: %q", line)
	}
	rest = strings.TrimLeft(rest[3:], " \t")
	chain, text, _ := strings.Cut(rest, " ")
	if chain == "" {
		return nil, "", fmt.Errorf("rule without a chain: %q", line)
	}
	r.Text = strings.TrimSpace(text)
	var buf [32]iptToken
	toks, err := iptTokens(r.Text, buf[:0])
	if err != nil {
		return nil, "", err
	}
	if err := iptInterpret(r, toks, chains); err != nil {
		return nil, "", err
	}
	return r, chain, nil
}
