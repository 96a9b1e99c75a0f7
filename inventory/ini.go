package inventory

import (
	"bufio"
	"bytes"
	"io/fs"
	"strings"
)

// parseINI reads an Ansible INI inventory:
//
//	web01 ansible_host=10.0.0.1          # before any section: ungrouped
//	[web]
//	web[01:20].example.com ansible_user=deploy
//	[web:vars]
//	ansible_port = 2222
//	[prod:children]
//	web
func parseINI(name string, data []byte, varsFS fs.FS) (*Inventory, error) {
	b := newBuilder(name, "ansible-ini")
	b.varsFS = varsFS
	// kind of the current section: "hosts", "vars", "children".
	// group is "" before the first section: those hosts end up ungrouped.
	group, kind := "", "hosts"
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		if text == "" || text[0] == '#' || text[0] == ';' {
			continue
		}
		if text[0] == '[' {
			end := strings.IndexByte(text, ']')
			if end < 0 || strings.TrimSpace(stripComment(text[end+1:])) != "" {
				return nil, b.errorf(line, "bad section header %q: write [group], [group:vars] or [group:children]", text)
			}
			head := strings.TrimSpace(text[1:end])
			group, kind = head, "hosts"
			if g, k, ok := strings.Cut(head, ":"); ok {
				group = g
				switch k {
				case "vars", "children":
					kind = k
				default:
					return nil, b.errorf(line, "unknown section kind %q in [%s]: use [%s], [%s:vars] or [%s:children]", k, head, g, g, g)
				}
			}
			if err := checkName("group", group); err != nil {
				return nil, b.errorf(line, "%v", err)
			}
			b.group(group, line)
			continue
		}
		switch kind {
		case "hosts":
			if err := b.iniHostLine(group, text, line); err != nil {
				return nil, err
			}
		case "vars":
			k, v, ok := strings.Cut(text, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" || strings.ContainsAny(k, " \t") {
				return nil, b.errorf(line, "expected key=value in [%s:vars], got %q", group, text)
			}
			b.groups[group].set["vars."+k] = value{
				v:   unquote(strings.TrimSpace(v)),
				src: "in group " + group + ":vars (" + b.at(line) + ")",
				pos: b.loc(line),
			}
		case "children":
			child := strings.TrimSpace(stripComment(text))
			if strings.ContainsAny(child, " \t=") {
				return nil, b.errorf(line, "expected a group name in [%s:children], got %q", group, text)
			}
			if err := checkName("group", child); err != nil {
				return nil, b.errorf(line, "%v", err)
			}
			if child == group {
				return nil, b.errorf(line, "group %s lists itself as a child", group)
			}
			b.group(child, line)
			g := b.groups[group]
			g.children = appendUnique(g.children, child)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, b.errorf(line+1, "%v", err)
	}
	return b.resolve()
}

// iniHostLine reads "pattern [key=value ...] [# comment]".
func (b *builder) iniHostLine(group, text string, line int) error {
	words, err := splitWords(stripComment(text))
	if err != nil {
		return b.errorf(line, "%v", err)
	}
	if len(words) == 0 {
		return nil
	}
	pattern, port := splitHostPort(words[0])
	names, err := expandRange(pattern)
	if err != nil {
		return b.errorf(line, "%v", err)
	}
	vars := settings{}
	if port != "" {
		vars["vars.ansible_port"] = value{v: port, pos: b.loc(line)}
	}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return b.errorf(line, "expected key=value after host %s, got %q", words[0], w)
		}
		vars["vars."+k] = value{v: v, pos: b.loc(line)}
	}
	for _, n := range names {
		if err := checkName("host", n); err != nil {
			return b.errorf(line, "%v", err)
		}
		h := b.host(n, line)
		for k, v := range vars {
			v.src = "on host " + n + " (" + b.at(line) + ")"
			h.set[k] = v
		}
		if group != "" {
			g := b.groups[group]
			g.addHost(n)
		}
	}
	return nil
}

// splitHostPort splits Ansible's "host:port" shorthand; anything else (IPv6
// addresses, ranges with colons) is returned whole.
func splitHostPort(s string) (host, port string) {
	i, colons, depth := -1, 0, 0
	for k := 0; k < len(s); k++ {
		switch s[k] {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				i = k
				colons++
			}
		}
	}
	if colons != 1 {
		return s, ""
	}
	p := s[i+1:]
	if p == "" || strings.Trim(p, "0123456789") != "" {
		return s, ""
	}
	return s[:i], p
}

// stripComment drops a " #..." or " ;..." comment that is outside quotes.
func stripComment(s string) string {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '\\':
			i++
		case (c == '#' || c == ';') && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

// unquote removes one pair of matching quotes around a [group:vars] value.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
