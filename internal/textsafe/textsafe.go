// Package textsafe makes text that came from input or from a host safe to
// print on a terminal: [Escape] writes control characters and invalid UTF-8
// as \xNN, [Truncate] cuts very long lines, [Text] does both, and [Quote]
// quotes one value for an error message.
//
// The workstation runs everything it prints through these: error text can
// carry a host's stderr or bytes of a ruleset or inventory, and a terminal
// would otherwise obey escape sequences in them ("\x1b[2J" clears it).
// The package imports only the standard library, so that cmd, session and
// inventory can all use it.
package textsafe

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxQuoted is how many bytes of one quoted value [Quote] keeps.
	MaxQuoted = 200
	// MaxLine is how many bytes of one line [Truncate] keeps. It is larger
	// than MaxQuoted because a line also carries lifeline's own words (file,
	// host, phase, hint), which must survive.
	MaxLine = 1000
)

// Escape returns s with every byte or character a terminal could act on
// written as an escape: C0 controls other than \n and \t, DEL and invalid
// UTF-8 bytes as \xNN; C1 controls and invisible format characters (bidi
// overrides, zero-width spaces) as \uNNNN. Everything else, backslashes
// included, is kept as it is.
func Escape(s string) string {
	if safe(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
				fmt.Fprintf(&b, `\x%02x`, c)
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, c)
		case !unicode.IsGraphic(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// safe reports whether Escape would keep s as it is.
func safe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return false // decide per character, in Escape
		}
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// Truncate cuts every line of s longer than MaxLine bytes to its first
// MaxLine bytes (never inside a UTF-8 character) followed by "… (N bytes)",
// N being the line's whole length. It does not escape: use it where the
// output is JSON, whose encoder escapes by itself.
func Truncate(s string) string {
	return truncateLines(s, MaxLine)
}

// Text is [Truncate] then [Escape]: what may be printed on a terminal.
func Text(s string) string {
	return Escape(Truncate(s))
}

// Quote returns s in double quotes, escaped like [Escape] (and " and \ like
// Go's %q, so that the quotes stay unambiguous), cut after MaxQuoted bytes
// with "… (N bytes)".
func Quote(s string) string {
	cut, more := cutAt(s, MaxQuoted)
	q := strconv.Quote(cut)
	if more {
		q += fmt.Sprintf("… (%d bytes)", len(s))
	}
	return q
}

func truncateLines(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	var b strings.Builder
	for line := range strings.Lines(s) {
		body, nl := strings.CutSuffix(line, "\n")
		if cut, more := cutAt(body, limit); more {
			fmt.Fprintf(&b, "%s… (%d bytes)", cut, len(body))
		} else {
			b.WriteString(body)
		}
		if nl {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// cutAt returns at most limit bytes of s, backing off to the start of a
// UTF-8 character, and whether anything was cut.
func cutAt(s string, limit int) (string, bool) {
	if len(s) <= limit {
		return s, false
	}
	i := limit
	for k := 0; k < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); k++ {
		i--
	}
	return s[:i], true
}
