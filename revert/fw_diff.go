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

// reverseDiff turns a unified diff of a → b into one of b → a: headers,
// hunk ranges and the sign of every changed line swap. (Equal diffs live
// against the snapshot; what a change did reads from the snapshot to live.)
func reverseDiff(d string) string {
	lines := strings.SplitAfter(d, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "--- ") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "+++ "):
			lines[i], lines[i+1] = "--- "+strings.TrimPrefix(lines[i+1], "+++ "), "+++ "+strings.TrimPrefix(l, "--- ")
			i++
		case strings.HasPrefix(l, "@@ "):
			f := strings.Fields(l)
			if len(f) >= 4 && strings.HasPrefix(f[1], "-") && strings.HasPrefix(f[2], "+") {
				f[1], f[2] = "-"+f[2][1:], "+"+f[1][1:]
				lines[i] = strings.Join(f, " ") + "\n"
			}
		case strings.HasPrefix(l, "-"):
			lines[i] = "+" + l[1:]
		case strings.HasPrefix(l, "+"):
			lines[i] = "-" + l[1:]
		}
	}
	return strings.Join(lines, "")
}
