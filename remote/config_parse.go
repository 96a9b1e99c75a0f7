package remote

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The ssh_config reader: OpenSSH 9.2's readconf.c rules, in-process.
//
// Every keyword takes the first value obtained (IdentityFile and
// CertificateFile accumulate, duplicates dropped); Host and Match decide
// which lines are active; Include reads files (globs, sorted) with the
// including block's state; a second pass runs after canonicalisation or
// when a "Match final" asked for one. ProxyCommand and ProxyJump share one
// slot: whichever is obtained first wins, and "none" counts as obtained.

// maxIncludeDepth is READCONF_MAX_DEPTH.
const maxIncludeDepth = 16

// settings are the values obtained so far, raw (unexpanded), keyed by
// lower-case keyword.
type settings struct {
	vals       map[string][]string // first value obtained: the keyword's arguments
	identities []string            // IdentityFile, in order, de-duplicated
	certs      []string            // CertificateFile, in order, de-duplicated
	proxyCmd   *string             // ProxyCommand as written ("none" too); set by ProxyJump to "none"
	proxyJump  *string             // ProxyJump as written ("none" too)
	ignore     string              // IgnoreUnknown patterns
}

func newSettings() *settings { return &settings{vals: map[string][]string{}} }

func (s *settings) get(key string) string {
	v := s.vals[key]
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (s *settings) has(key string) bool { _, ok := s.vals[key]; return ok }

// pass is one reading of the config files for one host.
type pass struct {
	r         *resolveCtx
	s         *settings
	host      string // name Host lines match: the argument, then (second pass) the canonical name
	final     bool   // the second pass: Match canonical and final match
	wantFinal bool   // a Match final was seen
}

// readFile reads one file. active is the including block's state
// (true for a top-level file); never makes every Host/Match in it fail
// (an Include inside an inactive block).
func (p *pass) readFile(path string, user, checkPerm, never bool, active *bool, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("%s: too many recursive Includes", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if checkPerm {
		if err := checkConfigPerm(path); err != nil {
			return err
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		where := fmt.Sprintf("%s line %d", path, line)
		if err := p.line(sc.Text(), where, user, never, active, depth); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return sc.Err()
}

// checkConfigPerm is secure_permissions: an included file must be owned
// by the user or root and not writable by group or others.
func checkConfigPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if (st.Uid != 0 && int(st.Uid) != os.Getuid()) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("bad owner or permissions on %s (ssh refuses it too)", path)
	}
	return nil
}

// splitKeyword splits a line into its lower-case keyword and the rest
// (after blanks and one optional '=').
func splitKeyword(line string) (key, rest string) {
	line = strings.TrimRight(line, " \t\r\n")
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), ""
	}
	key = strings.ToLower(line[:i])
	rest = strings.TrimLeft(line[i:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	return key, rest
}

// splitArgs is argv_split with comments: blanks separate arguments, "…"
// and '…' group, a backslash escapes a quote, a backslash or a blank, and
// an argument starting with # ends the line.
func splitArgs(s string) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) || s[i] == '#' {
			return out, nil
		}
		var b strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			if quote == 0 && (c == ' ' || c == '\t') {
				break
			}
			if c == '\\' && i+1 < len(s) {
				n := s[i+1]
				if (quote == 0 && (n == '\\' || n == '"' || n == '\'' || n == ' ' || n == '\t')) || (quote != 0 && n == quote) {
					b.WriteByte(n)
					i++
					continue
				}
			}
			if quote == 0 && (c == '"' || c == '\'') {
				quote = c
				continue
			}
			if quote != 0 && c == quote {
				quote = 0
				continue
			}
			b.WriteByte(c)
		}
		if quote != 0 {
			return nil, errors.New("unterminated quoted argument")
		}
		out = append(out, b.String())
	}
}

// restOfLine keywords take the line as written (commands).
var restOfLine = map[string]bool{"proxycommand": true, "localcommand": true, "remotecommand": true, "knownhostscommand": true}

// multiArg keywords keep all their arguments; the others take one.
var multiArg = map[string]bool{"userknownhostsfile": true, "globalknownhostsfile": true, "canonicaldomains": true,
	"canonicalizepermittedcnames": true, "sendenv": true, "setenv": true, "localforward": true, "remoteforward": true,
	"ipqos": true, "permitremoteopen": true, "addkeystoagent": false, "rekeylimit": true, "channeltimeout": true}

func (p *pass) line(text, where string, user, never bool, active *bool, depth int) error {
	key, rest := splitKeyword(text)
	if key == "" {
		return nil
	}
	if restOfLine[key] {
		if !knownKeyword[key] {
			return fmt.Errorf("bad configuration option: %s", key)
		}
		if rest == "" {
			return fmt.Errorf("%s: missing argument", key)
		}
		if *active && key == "proxycommand" && p.s.proxyCmd == nil {
			v := rest
			p.s.proxyCmd = &v
		} else if *active && !p.s.has(key) {
			p.s.vals[key] = []string{rest}
		}
		return nil
	}
	args, err := splitArgs(rest)
	if err != nil {
		return err
	}
	switch key {
	case "host":
		*active = false
		for _, a := range args {
			if never {
				break
			}
			neg := strings.HasPrefix(a, "!")
			if matchPattern(p.host, strings.TrimPrefix(a, "!")) {
				if neg {
					*active = false
					break
				}
				*active = true
			}
		}
		return nil
	case "match":
		ok, err := p.match(args)
		if err != nil {
			return err
		}
		*active = ok && !never
		return nil
	case "include":
		if len(args) == 0 {
			return errors.New("Include: missing argument")
		}
		for _, a := range args {
			if strings.HasPrefix(a, "~") && !user {
				return fmt.Errorf("Include: ~ is not allowed in system configuration files")
			}
			pat := a
			if !filepath.IsAbs(a) && !strings.HasPrefix(a, "~") {
				if user {
					pat = "~/.ssh/" + a
				} else {
					pat = "/etc/ssh/" + a
				}
			}
			pat = globTilde(pat)
			matches, err := filepath.Glob(pat)
			if err != nil {
				return fmt.Errorf("Include %s: %w", a, err)
			}
			outer := *active
			for _, m := range matches {
				err := p.readFile(m, user, true, never || !outer, active, depth+1)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("Include %s: %w", m, err)
				}
				*active = outer
			}
		}
		return nil
	case "ignoreunknown":
		if *active && p.s.ignore == "" {
			p.s.ignore = strings.Join(args, ",")
		}
		return nil
	}
	if !knownKeyword[key] {
		if p.s.ignore != "" && matchPatternList(key, p.s.ignore, true) == 1 {
			return nil
		}
		return fmt.Errorf("bad configuration option: %s", key)
	}
	if len(args) == 0 {
		return fmt.Errorf("%s: missing argument", key)
	}
	if !multiArg[key] && len(args) > 1 {
		return fmt.Errorf("%s: garbage at end of line", key)
	}
	if err := checkValue(key, args); err != nil {
		return err
	}
	if !*active {
		return nil
	}
	switch key {
	case "identityfile":
		p.s.identities = appendUnique(p.s.identities, args[0])
	case "certificatefile":
		p.s.certs = appendUnique(p.s.certs, args[0])
	case "proxyjump":
		if p.s.proxyCmd == nil && p.s.proxyJump == nil {
			v := args[0]
			p.s.proxyJump = &v
			if !strings.EqualFold(v, "none") {
				none := "none"
				p.s.proxyCmd = &none
			}
		}
	default:
		if !p.s.has(key) {
			p.s.vals[key] = args
		}
	}
	return nil
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// checkValue refuses what ssh refuses when it reads the line (whether or
// not the line is active).
func checkValue(key string, args []string) error {
	switch key {
	case "port":
		if n, err := strconv.Atoi(args[0]); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("bad Port %q", args[0])
		}
	case "connecttimeout", "serveraliveinterval":
		if key == "connecttimeout" && strings.EqualFold(args[0], "none") {
			return nil
		}
		if _, err := convtime(args[0]); err != nil {
			return fmt.Errorf("bad %s %q", key, args[0])
		}
	case "serveralivecountmax", "canonicalizemaxdots":
		if _, err := strconv.Atoi(args[0]); err != nil {
			return fmt.Errorf("bad %s %q", key, args[0])
		}
	case "proxyjump":
		if !strings.EqualFold(args[0], "none") {
			for _, h := range strings.Split(args[0], ",") {
				if _, err := parseHopSpec(h); err != nil {
					return fmt.Errorf("invalid ProxyJump %q", args[0])
				}
			}
		}
	case "canonicalizehostname":
		switch strings.ToLower(args[0]) {
		case "yes", "no", "always", "true", "false", "none":
		default:
			return fmt.Errorf("unsupported CanonicalizeHostname %q", args[0])
		}
	}
	return nil
}

// convtime is OpenSSH's time format: 90, 90s, 1m30s, 2h, 1d, 1w.
func convtime(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	total, num := 0, -1
	for _, c := range strings.ToLower(s) {
		if c >= '0' && c <= '9' {
			if num < 0 {
				num = 0
			}
			num = num*10 + int(c-'0')
			continue
		}
		if num < 0 {
			return 0, errors.New("bad time")
		}
		mult := map[rune]int{'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}[c]
		if mult == 0 {
			return 0, errors.New("bad time unit")
		}
		total += num * mult
		num = -1
	}
	if num >= 0 {
		total += num
	}
	return total, nil
}

// globTilde expands a leading ~ or ~user the way glob(3)'s GLOB_TILDE
// does: ~ is $HOME.
func globTilde(p string) string {
	if !strings.HasPrefix(p, "~") {
		return p
	}
	name, rest, _ := strings.Cut(p[1:], "/")
	var home string
	if name == "" {
		home = os.Getenv("HOME")
		if home == "" {
			home = localPasswd().home
		}
	} else if h, ok := userHome(name); ok {
		home = h
	} else {
		return p
	}
	return home + "/" + rest
}
