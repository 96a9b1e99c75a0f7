package inventory

import (
	"fmt"
	"strconv"
	"strings"
)

// maxRangeHosts bounds what one range pattern may expand to, so that a typo
// like web[1:99999999] fails instead of eating all memory.
const maxRangeHosts = 100000

// expandRange expands Ansible host ranges: "web[01:20].example.com" (zero
// padding kept when begin and end have the same width), "db-[a:c]", steps
// "[1:10:2]", several ranges in one name. A name without a range is
// returned as it is.
func expandRange(name string) ([]string, error) {
	// Count first, so that web[0:999][0:999] fails before it allocates.
	total, rest := 1, name
	for {
		i := strings.IndexByte(rest, '[')
		j := strings.IndexByte(rest, ']')
		if i < 0 || j < i {
			break
		}
		if inner := rest[i+1 : j]; strings.Contains(inner, ":") {
			vs, err := rangeValues(inner)
			if err != nil {
				return nil, fmt.Errorf("host range %q: %w", name, err)
			}
			if total *= len(vs); total > maxRangeHosts {
				return nil, fmt.Errorf("host range %q: expands to more than %d hosts", name, maxRangeHosts)
			}
		}
		rest = rest[j+1:]
	}
	out, err := expandFrom(name, nil)
	if err != nil {
		return nil, fmt.Errorf("host range %q: %w", name, err)
	}
	return out, nil
}

func expandFrom(name string, acc []string) ([]string, error) {
	i := strings.IndexByte(name, '[')
	if i < 0 {
		return append(acc, name), nil
	}
	j := strings.IndexByte(name[i:], ']')
	if j < 0 {
		return nil, fmt.Errorf("missing ] after [")
	}
	j += i
	inner := name[i+1 : j]
	if !strings.Contains(inner, ":") {
		return nil, fmt.Errorf("[%s] is not a range: write [BEGIN:END] or [BEGIN:END:STEP]", inner)
	}
	head, tail := name[:i], name[j+1:]
	values, err := rangeValues(inner)
	if err != nil {
		return nil, err
	}
	for _, v := range values {
		if acc, err = expandFrom(head+v+tail, acc); err != nil {
			return nil, err
		}
		if len(acc) > maxRangeHosts {
			return nil, fmt.Errorf("expands to more than %d hosts", maxRangeHosts)
		}
	}
	return acc, nil
}

func rangeValues(inner string) ([]string, error) {
	parts := strings.Split(inner, ":")
	if len(parts) > 3 {
		return nil, fmt.Errorf("[%s] has too many colons: write [BEGIN:END] or [BEGIN:END:STEP]", inner)
	}
	beg, end := parts[0], parts[1]
	step := 1
	if len(parts) == 3 {
		s, err := strconv.Atoi(parts[2])
		if err != nil || s < 1 {
			return nil, fmt.Errorf("step %q is not a positive number", parts[2])
		}
		step = s
	}
	if beg == "" {
		beg = "0"
	}
	if end == "" {
		return nil, fmt.Errorf("[%s] has no end", inner)
	}
	if isLetter(beg) && isLetter(end) {
		if beg[0] > end[0] {
			return nil, fmt.Errorf("begin %s is after end %s", beg, end)
		}
		var out []string
		for c := int(beg[0]); c <= int(end[0]); c += step {
			out = append(out, string(rune(c)))
		}
		return out, nil
	}
	b, errB := strconv.Atoi(beg)
	e, errE := strconv.Atoi(end)
	if errB != nil || errE != nil || b < 0 || e < 0 {
		return nil, fmt.Errorf("[%s]: begin and end must be both numbers or both single letters", inner)
	}
	if b > e {
		return nil, fmt.Errorf("begin %s is after end %s", beg, end)
	}
	if (e-b)/step+1 > maxRangeHosts {
		return nil, fmt.Errorf("expands to more than %d hosts", maxRangeHosts)
	}
	width := 0
	if len(beg) > 1 && beg[0] == '0' {
		if len(beg) != len(end) {
			return nil, fmt.Errorf("[%s]: a zero-padded begin and its end must have the same width", inner)
		}
		width = len(beg)
	}
	var out []string
	for n := b; n <= e; n += step {
		out = append(out, fmt.Sprintf("%0*d", width, n))
	}
	return out, nil
}

func isLetter(s string) bool {
	return len(s) == 1 && (s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z')
}
