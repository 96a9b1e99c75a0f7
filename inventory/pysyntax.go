package inventory

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds the two pieces of Python syntax Ansible reads INI
// inventories and ssh arguments with: shlex.split (posix mode) and
// ast.literal_eval of a string literal. Both are ports of CPython's rules,
// pinned against Python in TestPySplit and TestPyLiteral.

var (
	errNoClosingQuote = errors.New("no closing quotation")
	errNoEscapedChar  = errors.New("no escaped character")
)

// pySplit is Python's shlex.split(s, comments=comments): words split on
// blanks; single quotes keep everything; in double quotes a backslash
// escapes only " and \ (any other backslash stays); outside quotes a
// backslash escapes the next character; quotes join the word they touch.
// With comments, an unquoted # ends the line, also inside a word (a#b is a).
func pySplit(s string, comments bool) ([]string, error) {
	const (
		blank = ' '
		word  = 'a'
	)
	words := []string{}
	var tok strings.Builder
	state, escaped := rune(blank), rune(0)
	emit := func() {
		words = append(words, tok.String())
		tok.Reset()
	}
	isBlank := func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch state {
		case blank, word:
			switch {
			case isBlank(c):
				if state == word {
					emit()
				}
				state = blank
			case comments && c == '#':
				// the rest of the line is a comment
				for i < len(rs) && rs[i] != '\n' {
					i++
				}
				if state == word {
					emit()
				}
				state = blank
			case c == '\\':
				escaped, state = word, '\\'
			case c == '\'' || c == '"':
				state = c
			default:
				tok.WriteRune(c)
				state = word
			}
		case '\'':
			if c == '\'' {
				state = word
			} else {
				tok.WriteRune(c)
			}
		case '"':
			switch c {
			case '"':
				state = word
			case '\\':
				escaped, state = '"', '\\'
			default:
				tok.WriteRune(c)
			}
		case '\\':
			if escaped == '"' && c != '\\' && c != '"' {
				tok.WriteRune('\\')
			}
			tok.WriteRune(c)
			state = escaped
		}
	}
	switch state {
	case '\'', '"':
		return nil, errNoClosingQuote
	case '\\':
		return nil, errNoEscapedChar
	case word:
		emit()
	}
	return words, nil
}

// pyValue is what Ansible's INI parser makes of a value with
// ast.literal_eval, as text: a Python string literal (or several side by
// side, which Python joins) is decoded, escapes and all; anything else
// (numbers, True, lists, or text that is no literal at all) is kept as
// written, which is how lifeline holds every variable.
func pyValue(v string) string {
	if s, ok := pyStringLiteral(v); ok {
		return s
	}
	return v
}

// pyStringLiteral decodes s when it is made only of Python string literals
// ('...', "...", ”'...”', """...""", with an optional r or u prefix),
// separated by blanks. Byte and f-strings are not decoded (literal_eval
// refuses f-strings; bytes are not text).
func pyStringLiteral(s string) (string, bool) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return "", false
	}
	var out strings.Builder
	for s != "" {
		raw := false
		switch {
		case len(s) > 1 && (s[0] == 'r' || s[0] == 'R') && (s[1] == '\'' || s[1] == '"'):
			raw, s = true, s[1:]
		case len(s) > 1 && (s[0] == 'u' || s[0] == 'U') && (s[1] == '\'' || s[1] == '"'):
			s = s[1:]
		}
		if s == "" || s[0] != '\'' && s[0] != '"' {
			return "", false
		}
		q := s[:1]
		if strings.HasPrefix(s, strings.Repeat(q, 3)) {
			q = s[:3]
		}
		body := s[len(q):]
		end := -1
		for i := 0; i < len(body); i++ {
			if body[i] == '\\' {
				i++
				continue
			}
			if strings.HasPrefix(body[i:], q) {
				end = i
				break
			}
			if len(q) == 1 && body[i] == '\n' {
				return "", false
			}
		}
		if end < 0 {
			return "", false
		}
		dec, ok := pyUnescape(body[:end], raw)
		if !ok {
			return "", false
		}
		out.WriteString(dec)
		s = strings.TrimLeft(body[end+len(q):], " \t")
	}
	return out.String(), true
}

// pyUnescape applies Python's string escapes; unknown escapes keep their
// backslash, as Python does.
func pyUnescape(s string, raw bool) (string, bool) {
	if raw || !strings.Contains(s, `\`) {
		return s, utf8.ValidString(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case '\n':
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+1+n > len(s) {
				return "", false
			}
			r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil || r > utf8.MaxRune {
				return "", false
			}
			b.WriteRune(rune(r))
			i += n
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			r, _ := strconv.ParseUint(s[i:j], 8, 32)
			b.WriteRune(rune(r))
			i = j - 1
		case 'N':
			return "", false // \N{NAME}: no name table here; kept as written
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String(), true
}
