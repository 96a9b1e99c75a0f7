package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"unicode/utf8"
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
	// Ansible's check that every group a [x:children] names, and every
	// [x:vars], belongs to a group declared by a [x] or [x:children]
	// header: declared holds the groups a header created (in Ansible's
	// order), pending the names still waiting for one.
	declared := map[string]bool{"all": true, "ungrouped": true}
	pending := map[string]*iniPending{}
	var pendingOrder []string
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
			if !declared[group] {
				if kind == "vars" && pending[group] == nil {
					pending[group] = &iniPending{line: line, kind: "vars"}
					pendingOrder = append(pendingOrder, group)
				}
				declared[group] = true
			}
			if p := pending[group]; p != nil && kind != "vars" {
				resolvePending(group, pending)
			}
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
				v:   pyValue(strings.TrimSpace(v)),
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
			if !declared[child] {
				if p := pending[child]; p != nil {
					p.parents = append(p.parents, group)
				} else {
					pending[child] = &iniPending{line: line, kind: "children", parents: []string{group}}
					pendingOrder = append(pendingOrder, child)
				}
			}
			b.group(child, line)
			g := b.groups[group]
			g.children = appendUnique(g.children, child)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, b.errorf(line+1, "%v", err)
	}
	for _, name := range pendingOrder {
		p := pending[name]
		if p == nil {
			continue
		}
		if p.kind == "vars" {
			return nil, b.errorf(p.line, "section [%s:vars] is for a group that is not defined: add a [%s] or [%s:children] section (Ansible refuses this inventory too)", name, name, name)
		}
		return nil, b.errorf(p.line, "section [%s:children] names group %s, which is not defined: add a [%s] section, even an empty one (Ansible refuses this inventory too)", p.parents[len(p.parents)-1], name, name)
	}
	return b.resolve()
}

// iniHostLine reads "pattern [key=value ...] [# comment]".
func (b *builder) iniHostLine(group, text string, line int) error {
	// Ansible: shlex.split(line, comments=True), then each value through
	// ast.literal_eval.
	if !utf8.ValidString(text) {
		return b.errorf(line, "host line is not valid UTF-8")
	}
	words, err := pySplit(text, true)
	switch {
	case errors.Is(err, errNoClosingQuote):
		return b.errorf(line, "unterminated quote in %q: close it (Ansible refuses it too)", text)
	case err != nil:
		return b.errorf(line, "%q ends with a backslash: remove it or double it", text)
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
		vars["vars."+k] = value{v: pyValue(v), pos: b.loc(line)}
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

// resolvePending: a header now declares group, so it stops waiting, and
// (as Ansible's _add_pending_children does) so do its parents that were
// waiting as children themselves.
func resolvePending[T interface{ parentList() []string }](group string, pending map[string]T) {
	p, ok := pending[group]
	if !ok {
		return
	}
	delete(pending, group)
	for _, parent := range p.parentList() {
		if q, ok := pending[parent]; ok && len(q.parentList()) > 0 {
			resolvePending(parent, pending)
		}
	}
}

// iniPending is a group named before any header declared it.
type iniPending struct {
	line    int
	kind    string // "vars" or "children"
	parents []string
}

func (p *iniPending) parentList() []string {
	if p.kind != "children" {
		return nil
	}
	return p.parents
}
