// Package shquote quotes words for a POSIX shell: the one implementation
// for the workstation (commands sent over SSH) and the helper (scripts run
// on the host). Pure; no OS dependencies.
package shquote

import "strings"

// Quote quotes s for a POSIX shell: unchanged when it holds only safe
// characters, else in single quotes, each ' inside written as (close the
// quotes, an escaped quote, reopen them):
//
//	'\''
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with spaces: a command line whose
// words the shell splits back exactly.
func Join(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
