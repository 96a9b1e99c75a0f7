package inventory

import (
	"sort"
	"strings"
)

// closest returns up to max candidates that look like a typo of name: a
// small edit distance, or one being a prefix of the other. Closer ones come
// first; ties keep the candidates' order.
func closest(name string, candidates []string, max int) []string {
	type scored struct {
		s    string
		dist int
		i    int
	}
	limit := len(name) / 3
	if limit < 1 {
		limit = 1
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
	for i := 0; i < len(found) && i < max; i++ {
		out = append(out, found[i].s)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
