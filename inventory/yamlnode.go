package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the document's top node (nil for an empty document),
// turning yaml's "line N" errors into "file:N" ones.
func parseYAML(name string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", name, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return deref(doc.Content[0]), nil
}

// deref follows YAML aliases (*anchor).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// pair is one key: value of a YAML mapping.
type pair struct {
	key string
	k   *yaml.Node
	v   *yaml.Node
}

var errNotMapping = errors.New("not a mapping")

// pairs lists a mapping's entries in order; null counts as empty. Merge
// keys (<<) are expanded, entries written in the mapping itself win.
func pairs(n *yaml.Node) ([]pair, error) {
	n = deref(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, errNotMapping
	}
	var out, merged []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: a key must be a plain string", k.Line)
		}
		if k.Tag == "!!merge" {
			var srcs []*yaml.Node
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			} else {
				srcs = []*yaml.Node{v}
			}
			for _, s := range srcs {
				ps, err := pairs(s)
				if err != nil {
					return nil, err
				}
				merged = append(merged, ps...)
			}
			continue
		}
		if j, dup := seen[k.Value]; dup {
			return nil, fmt.Errorf("line %d: key %q is already defined at line %d", k.Line, k.Value, out[j].k.Line)
		}
		seen[k.Value] = len(out)
		out = append(out, pair{key: k.Value, k: k, v: v})
	}
	for _, p := range merged {
		if _, ok := seen[p.key]; !ok {
			seen[p.key] = len(out)
			out = append(out, p)
		}
	}
	return out, nil
}

// mapping is pairs with errors naming file:line and what was expected.
func (b *builder) mapping(n *yaml.Node, what string) ([]pair, error) {
	ps, err := pairs(n)
	if errors.Is(err, errNotMapping) {
		return nil, b.errorf(n.Line, "%s must be a mapping (key: value), got %s", what, kindName(n))
	}
	if err != nil {
		if rest, ok := strings.CutPrefix(err.Error(), "line "); ok {
			return nil, fmt.Errorf("%s:%s", b.path, rest)
		}
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	return ps, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// scalar returns a scalar's text ("" for null); lists and mappings are an
// error naming file:line.
func (b *builder) scalar(n *yaml.Node, what string) (string, error) {
	n = deref(n)
	if isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", b.errorf(n.Line, "%s must be a single value, got %s", what, kindName(n))
	}
	return n.Value, nil
}

// varString turns any YAML value into the string kept in Vars: scalars as
// written, lists and mappings as compact JSON.
func (b *builder) varString(n *yaml.Node) (string, error) {
	n = deref(n)
	if isNull(n) {
		return "", nil
	}
	if n.Kind == yaml.ScalarNode {
		return n.Value, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return "", b.errorf(n.Line, "%v", err)
	}
	out, err := json.Marshal(jsonable(v))
	if err != nil {
		return "", b.errorf(n.Line, "%v", err)
	}
	return string(out), nil
}

// jsonable converts yaml's map[any]any leftovers into JSON-encodable maps.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}

// stringList reads a list of names (a single name is accepted too).
func (b *builder) stringList(n *yaml.Node, what string) ([]string, []int, error) {
	n = deref(n)
	if isNull(n) {
		return nil, nil, nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}, []int{n.Line}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nil, b.errorf(n.Line, "%s must be a list of names, got %s", what, kindName(n))
	}
	var out []string
	var lines []int
	for _, e := range n.Content {
		e = deref(e)
		if e.Kind != yaml.ScalarNode || isNull(e) {
			return nil, nil, b.errorf(e.Line, "%s must be a list of names, got %s", what, kindName(e))
		}
		out = append(out, e.Value)
		lines = append(lines, e.Line)
	}
	return out, lines, nil
}

// unknownKey reports a key the format does not know, with the close ones.
func (b *builder) unknownKey(p pair, where string, known []string) error {
	msg := fmt.Sprintf("unknown key %q in %s", p.key, where)
	if s := closest(p.key, known, 2); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
	} else {
		msg += fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
	}
	return b.errorf(p.k.Line, "%s", msg)
}
