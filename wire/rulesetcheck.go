package wire

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkText refuses, before any tool sees it, a ruleset that is binary
// (the wrong file: see binaryAt) or that mixes the two
// syntaxes (an nft file with iptables-save lines, or the other way round:
// two files concatenated), naming the first line of the other syntax.
func checkText(format Format, ruleset string) error {
	if i := binaryAt(ruleset); i >= 0 {
		line := 1 + strings.Count(ruleset[:i], "\n")
		return &Error{Code: CodeInvalidRuleset, Message: fmt.Sprintf("the %s ruleset is binary data (a NUL byte, or mostly bytes that are not text, near line %d), not a ruleset: check that it is the right file", format, line)}
	}
	// the first line of each syntax; both present: two files in one
	firstNft, firstIpt := 0, 0
	var nftText, iptText string
	for n, l := range strings.Split(ruleset, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case firstIpt == 0 && iptablesLine(l):
			firstIpt, iptText = n+1, l
		case firstNft == 0 && nftLine(l):
			firstNft, nftText = n+1, l
		}
		if firstNft > 0 && firstIpt > 0 {
			line, text, other := firstIpt, iptText, "iptables-save"
			if format != FormatNft {
				line, text, other = firstNft, nftText, "nft"
			}
			return &Error{Code: CodeInvalidRuleset, Line: line, Text: text, Message: fmt.Sprintf("the file mixes nft and iptables-save syntax (nft from line %d, iptables-save from line %d; %s at line %d: %.60q): one file holds one format; split it", firstNft, firstIpt, other, line, text)}
		}
	}
	return nil
}

// iptablesLine: a table header (*filter), a chain declaration (:INPUT
// ACCEPT [0:0]), a rule (-A ...) or COMMIT.
func iptablesLine(l string) bool {
	switch {
	case l == "COMMIT":
		return true
	case strings.HasPrefix(l, "*") && len(l) > 1 && !strings.ContainsAny(l, " {"):
		return true
	case strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, "-I ") || strings.HasPrefix(l, "-N "):
		return true
	case strings.HasPrefix(l, ":") && strings.Count(l, " ") >= 1 && strings.HasSuffix(l, "]"):
		return true
	}
	return false
}

// nftLine: a table or chain block, or one of nft's top-level commands.
func nftLine(l string) bool {
	for _, p := range []string{"table ", "flush ruleset", "define ", "add table ", "add chain ", "add rule ", "delete table ", "include "} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// binaryAt returns the offset of a NUL byte, or 0 when more than a tenth
// of the bytes are neither UTF-8 text nor tab, newline or carriage return
// (a compressed or executable file); -1 for text. A stray invalid byte
// (a Latin-1 comment) or a terminal escape is text here: the tools refuse
// or keep it, and lifeline prints it escaped.
func binaryAt(s string) int {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return i
	}
	bad := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' && r != 0x1b {
			bad++
		}
		i += n
	}
	if bad*10 > len(s) {
		return 0
	}
	return -1
}
