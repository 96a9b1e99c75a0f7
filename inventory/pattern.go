package inventory

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
)

// UnknownError is a plain name in a target pattern that is neither a host
// nor a group of the inventory. Suggestions are close names, best first.
type UnknownError struct {
	Name        string
	Suggestions []string
}

func (e *UnknownError) Error() string {
	if len(e.Suggestions) == 0 {
		return fmt.Sprintf("unknown host or group %q (lifeline inventory list shows them)", e.Name)
	}
	return fmt.Sprintf("unknown host or group %q (did you mean %s?)", e.Name, strings.Join(e.Suggestions, ", "))
}

// NoMatchError is a glob or regex in a target pattern that matches no host
// and no group (Term set), or a whole pattern that selects no host.
type NoMatchError struct {
	Pattern string // the whole pattern (or --limit)
	Term    string // the glob or ~regex that matched nothing; "" for the whole pattern
}

func (e *NoMatchError) Error() string {
	switch e.Term {
	case "":
		return fmt.Sprintf("target %q selects no hosts", e.Pattern)
	case e.Pattern:
		return fmt.Sprintf("%q matches no host or group", e.Term)
	}
	return fmt.Sprintf("%q in %q matches no host or group", e.Term, e.Pattern)
}

// splitPattern splits a target pattern into terms the way Ansible does: on
// commas when there is one, else on colons outside [...].
func splitPattern(pattern string) []string {
	var parts []string
	if ip, err := netip.ParseAddr(strings.TrimSpace(pattern)); err == nil && ip.Is6() {
		return []string{strings.TrimSpace(pattern)} // Ansible: an IPv6 address is one host, not colon-separated terms
	}
	if strings.Contains(pattern, ",") {
		parts = strings.Split(pattern, ",")
	} else {
		depth, start := 0, 0
		for i := 0; i < len(pattern); i++ {
			switch pattern[i] {
			case '[':
				depth++
			case ']':
				if depth > 0 {
					depth--
				}
			case ':':
				if depth == 0 {
					parts = append(parts, pattern[start:i])
					start = i + 1
				}
			}
		}
		parts = append(parts, pattern[start:])
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Select returns the hosts a target pattern and an optional --limit (same
// grammar, applied on top) choose, in inventory order, each once. The
// grammar is Ansible's:
//
//	all, *          every host
//	web             a group (with its child groups) or a host
//	web:db, web,db  union
//	web:&prod       intersection
//	web:!web03      exclusion
//	web*, db-?      globs over host and group names
//	~web0[1-3]      a regular expression over host and group names
//	web[0], web[-1] the first, the last host web selects
//	web[1:3]        the second to the fourth (both ends included)
//
// As in Ansible, unions are taken first, then intersections, then
// exclusions, whatever their order. A plain name that is no host and no
// group is an [*UnknownError]; a glob or regex matching nothing, or a
// pattern selecting no host at all, is a [*NoMatchError]. The returned
// hosts belong to the inventory: do not modify them.
func (inv *Inventory) Select(pattern, limit string) ([]*Host, error) {
	hosts, _, err := inv.SelectWarn(pattern, limit)
	return hosts, err
}

// SelectWarn is [Inventory.Select] that, as Ansible, lets a term that
// matches nothing pass when the whole target still selects hosts: it
// returns Ansible's warning for each such term instead ("Could not match
// supplied host pattern, ignoring: TERM"). Only a target that selects no
// host at all is an error; its error is the first unmatched term's
// ([*UnknownError] or [*NoMatchError]) when there is one.
func (inv *Inventory) SelectWarn(pattern, limit string) ([]*Host, []string, error) {
	if strings.TrimSpace(pattern) == "" {
		return nil, nil, fmt.Errorf("empty target: name hosts or groups, or all")
	}
	set, misses, err := inv.evaluate(pattern)
	if err != nil {
		return nil, nil, err
	}
	if strings.TrimSpace(limit) != "" {
		lim, limMisses, err := inv.evaluate(limit)
		if err != nil {
			return nil, nil, fmt.Errorf("--limit: %w", err)
		}
		for _, m := range limMisses {
			misses = append(misses, fmt.Errorf("--limit: %w", m))
		}
		for i := range set {
			set[i] = set[i] && lim[i]
		}
	}
	var out []*Host
	for i, h := range inv.Hosts {
		if set[i] {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		if len(misses) > 0 {
			return nil, nil, misses[0]
		}
		p := pattern
		if strings.TrimSpace(limit) != "" {
			p = pattern + " --limit " + limit
		}
		return nil, nil, &NoMatchError{Pattern: p}
	}
	var warnings []string
	for _, m := range misses {
		term := ""
		var ue *UnknownError
		var ne *NoMatchError
		switch {
		case errors.As(m, &ue):
			term = ue.Name
		case errors.As(m, &ne):
			term = ne.Term
		}
		warnings = append(warnings, "Could not match supplied host pattern, ignoring: "+term)
	}
	return out, warnings, nil
}

// evaluate returns, per host index, whether the pattern selects it, and
// the terms that matched nothing (which select nothing).
func (inv *Inventory) evaluate(pattern string) ([]bool, []error, error) {
	var misses []error
	term := func(t string) ([]bool, error) {
		m, err := inv.matchTerm(pattern, t)
		var ue *UnknownError
		var ne *NoMatchError
		if errors.As(err, &ue) || errors.As(err, &ne) {
			misses = append(misses, err)
			return make([]bool, len(inv.Hosts)), nil
		}
		return m, err
	}
	var regular, and, not []string
	for _, t := range splitPattern(pattern) {
		switch t[0] {
		case '&':
			and = append(and, strings.TrimSpace(t[1:]))
		case '!':
			not = append(not, strings.TrimSpace(t[1:]))
		default:
			regular = append(regular, t)
		}
	}
	if len(regular) == 0 {
		regular = []string{"all"}
	}
	set := make([]bool, len(inv.Hosts))
	for _, t := range regular {
		m, err := term(t)
		if err != nil {
			return nil, nil, err
		}
		for i := range set {
			set[i] = set[i] || m[i]
		}
	}
	for _, t := range and {
		m, err := term(t)
		if err != nil {
			return nil, nil, err
		}
		for i := range set {
			set[i] = set[i] && m[i]
		}
	}
	for _, t := range not {
		m, err := term(t)
		if err != nil {
			return nil, nil, err
		}
		for i := range set {
			set[i] = set[i] && !m[i]
		}
	}
	return set, misses, nil
}

// subscriptRE is Ansible's host subscript: web[0], web[-1], web[1:3], web[:2].
var subscriptRE = regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|([0-9]*):([0-9]*))\]$`)

// matchTerm returns, per host index, whether one term selects it.
func (inv *Inventory) matchTerm(pattern, term string) ([]bool, error) {
	if term == "" {
		return nil, fmt.Errorf("target %q has an empty term after & or !", pattern)
	}
	// As in Ansible, a trailing [N] or [N:M] is a subscript, not a glob
	// class, except in a ~regex.
	if sm := subscriptRE.FindStringSubmatch(term); sm != nil && term[0] != '~' {
		return inv.matchSubscript(pattern, term, sm)
	}
	m := make([]bool, len(inv.Hosts))
	if term == "all" || term == "*" {
		for i := range m {
			m[i] = true
		}
		return m, nil
	}
	var match func(string) bool
	switch {
	case term[0] == '~':
		re, err := regexp.Compile(`^(?:` + term[1:] + `)`)
		if err != nil {
			return nil, fmt.Errorf("target %q: bad regular expression %q: %w", pattern, term[1:], err)
		}
		match = re.MatchString
	case strings.ContainsAny(term, "*?["):
		re, err := globRegexp(term)
		if err != nil {
			return nil, fmt.Errorf("target %q: bad pattern %q: %w", pattern, term, err)
		}
		match = re.MatchString
	default:
		match = func(s string) bool { return s == term }
	}
	// all only by its exact name: a glob like a* must not select the fleet.
	groups := map[string]bool{}
	for name := range inv.Groups {
		if name != "all" && match(name) {
			groups[name] = true
		}
	}
	found := len(groups) > 0
	for i, h := range inv.Hosts {
		if match(h.Name) {
			m[i], found = true, true
			continue
		}
		for _, g := range h.Groups {
			if groups[g] {
				m[i] = true
				break
			}
		}
	}
	if !found {
		if term[0] == '~' || strings.ContainsAny(term, "*?[") {
			return nil, &NoMatchError{Pattern: pattern, Term: term}
		}
		return nil, &UnknownError{Name: term, Suggestions: closest(term, inv.names(), 5)}
	}
	return m, nil
}

// matchSubscript picks hosts by position among those a term selects, in
// inventory order, like Ansible: web[0] is the first, web[-1] the last, and
// web[1:3] the second to the fourth (both ends included).
func (inv *Inventory) matchSubscript(pattern, term string, sm []string) ([]bool, error) {
	base, err := inv.matchTerm(pattern, sm[1])
	if err != nil {
		return nil, err
	}
	var idx []int
	for i, ok := range base {
		if ok {
			idx = append(idx, i)
		}
	}
	n := len(idx)
	lo, hi := 0, n-1
	switch {
	case sm[2] != "":
		k, _ := strconv.Atoi(sm[2])
		if k < 0 {
			k += n
		}
		lo, hi = k, k
	default:
		if sm[3] != "" {
			lo, _ = strconv.Atoi(sm[3])
		}
		if sm[4] != "" {
			hi, _ = strconv.Atoi(sm[4])
		}
	}
	if lo < 0 || lo >= n || hi < lo {
		return nil, fmt.Errorf("target %q: %s selects %d hosts, so %q picks none", pattern, sm[1], n, term)
	}
	hi = min(hi, n-1)
	m := make([]bool, len(inv.Hosts))
	for _, i := range idx[lo : hi+1] {
		m[i] = true
	}
	return m, nil
}

// names lists host names in inventory order, then group names (sorted).
func (inv *Inventory) names() []string {
	var out []string
	for _, h := range inv.Hosts {
		out = append(out, h.Name)
	}
	for _, g := range sortedKeys(inv.Groups) {
		if g != "all" {
			out = append(out, g)
		}
	}
	return out
}

// globRegexp translates an fnmatch glob (*, ?, [abc], [!abc]) into an
// anchored regular expression, the way Ansible matches with fnmatch.
func globRegexp(glob string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString("^")
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch c {
		case '*':
			sb.WriteString(".*")
		case '?':
			sb.WriteString(".")
		case '[':
			j := i + 1
			if j < len(glob) && glob[j] == '!' {
				j++
			}
			if j < len(glob) && glob[j] == ']' {
				j++
			}
			for j < len(glob) && glob[j] != ']' {
				j++
			}
			if j >= len(glob) {
				sb.WriteString(`\[`)
				continue
			}
			class := glob[i+1 : j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			class = strings.ReplaceAll(class, `\`, `\\`)
			sb.WriteString("[" + class + "]")
			i = j
		default:
			sb.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	sb.WriteString("$")
	return regexp.Compile(sb.String())
}

// FromAliases turns a target without an inventory into hosts: names
// separated by ',' or ':' (ssh_config Host aliases or host names), each at
// most once. "user@name" sets the user. Globs, groups, & and ! need an
// inventory.
func FromAliases(pattern string) ([]*Host, error) {
	var out []*Host
	seen := map[string]bool{}
	for _, t := range splitPattern(pattern) {
		if t == "all" || strings.ContainsAny(t, "*?[]~&!") {
			return nil, fmt.Errorf("target %q: %q needs an inventory: give -i FILE or set $LIFELINE_INVENTORY, or name hosts one by one", pattern, t)
		}
		h := &Host{Name: t}
		if u, n, ok := strings.Cut(t, "@"); ok {
			if u == "" || n == "" {
				return nil, fmt.Errorf("target %s: %s is not user@host", textsafe.Quote(pattern), textsafe.Quote(t))
			}
			if err := checkConnValue("user", u); err != nil {
				return nil, fmt.Errorf("target %s: %w", textsafe.Quote(pattern), err)
			}
			h.Name, h.User = n, u
			h.Sources = map[string]string{"user": "target " + t}
		}
		if err := CheckHostName(h.Name); err != nil {
			return nil, fmt.Errorf("target %s: %w", textsafe.Quote(pattern), err)
		}
		if seen[h.Name] {
			continue
		}
		seen[h.Name] = true
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty target: name one or more hosts, separated by commas")
	}
	return out, nil
}
