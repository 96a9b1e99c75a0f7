package revert

import (
	"strings"
	"testing"
)

func TestReverseDiff(t *testing.T) {
	a, b := "x\ny\nz\n", "x\nY\nz\nw\n"
	if got, want := reverseDiff(unifiedDiff("a", "b", a, b)), unifiedDiff("b", "a", b, a); got != want && !sameLines(got, want) {
		t.Fatalf("reverseDiff:\n%s\nwant (up to line order within a change):\n%s", got, want)
	}
}

// sameLines: the same multiset of lines (a reversed diff lists a change's
// additions before its deletions).
func sameLines(a, b string) bool {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
