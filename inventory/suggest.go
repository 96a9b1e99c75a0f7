package inventory

import (
	"sort"
	"strings"
)

// closest returns up to n candidates that look like a typo of name: a
// small edit distance, or one being a prefix of the other. Closer ones come
// first; ties keep the candidates' order.
func closest(name string, candidates []string, n int) []string {
	type scored struct {
		s    string
		dist int
		i    int
	}
	limit := 1
	if len(name) > 3 {
		limit = max(2, len(name)/4)
	}
	lname := strings.ToLower(name)
	var found []scored
	seen := map[string]bool{}
	for i, c := range candidates {
		if seen[c] || c == name {
			continue
		}
		seen[c] = true
		lc := strings.ToLower(c)
		d := editDistance(lname, lc)
		prefix := len(lname) >= 2 && len(lc) >= 2 && (strings.HasPrefix(lc, lname) || strings.HasPrefix(lname, lc))
		if d <= limit || prefix {
			found = append(found, scored{c, d, i})
		}
	}
	sort.SliceStable(found, func(a, b int) bool {
		if found[a].dist != found[b].dist {
			return found[a].dist < found[b].dist
		}
		return found[a].i < found[b].i
	})
	var out []string
	for i := 0; i < len(found) && i < n; i++ {
		out = append(out, found[i].s)
	}
	return out
}

// editDistance is the optimal string alignment distance between a and b
// (Levenshtein plus swaps of two neighbours: "wbe" is 1 from "web"), in bytes.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
