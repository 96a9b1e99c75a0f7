package wire

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkText refuses, before any tool sees it, a ruleset that is binary
// (a NUL byte or invalid UTF-8: the wrong file) or that mixes the two
// syntaxes (an nft file with iptables-save lines, or the other way round:
// two files concatenated), naming the first line of the other syntax.
func checkText(format Format, ruleset string) error {
	if i := strings.IndexByte(ruleset, 0); i >= 0 || !utf8.ValidString(ruleset) {
		line := 1
		if i >= 0 {
			line += strings.Count(ruleset[:i], "\n")
		}
		return &Error{Code: CodeInvalidRuleset, Message: fmt.Sprintf("the %s ruleset is binary data (a NUL byte or invalid UTF-8 near line %d), not a ruleset: check that it is the right file", format, line)}
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
