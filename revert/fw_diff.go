package revert

import (
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"
)

// unifiedDiff returns a unified diff (3 lines of context) that turns a into
// b, or "" when they are equal (github.com/aymanbagabas/go-udiff, a copy of
// the diff package of gopls). A text without a final newline is compared
// as if it had one, so the diff never carries "\ No newline" markers.
func unifiedDiff(aName, bName, a, b string) string {
	a, b = withFinalNewline(a), withFinalNewline(b)
	if a == b {
		return ""
	}
	return udiff.Unified(aName, bName, a, b)
}

func withFinalNewline(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// splitLines splits s into lines without their newlines (nil for "").
func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
