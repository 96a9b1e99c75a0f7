package inventory

import (
	"fmt"
	"sort"
	"strings"
)

// Graph draws the group tree from all, like ansible-inventory --graph:
// child groups first (sorted), then the group's own hosts (in inventory
// order).
func (inv *Inventory) Graph() string {
	s, _ := inv.GraphFrom("all")
	return s
}

// GraphFrom draws the tree below one group; an unknown group is an
// [*UnknownError].
func (inv *Inventory) GraphFrom(group string) (string, error) {
	if _, ok := inv.Groups[group]; !ok {
		if group != "all" {
			return "", &UnknownError{Name: group, Suggestions: closest(group, sortedKeys(inv.Groups), 5)}
		}
	}
	var sb strings.Builder
	inv.graph(&sb, group, "", map[string]bool{})
	return sb.String(), nil
}

func (inv *Inventory) graph(sb *strings.Builder, name, indent string, onPath map[string]bool) {
	fmt.Fprintf(sb, "%s@%s:\n", indentPrefix(indent), name)
	if onPath[name] { // cycles are refused at parse time; stay safe anyway
		return
	}
	onPath[name] = true
	defer delete(onPath, name)
	g := inv.Groups[name]
	if g == nil {
		return
	}
	children := append([]string(nil), g.Children...)
	sort.Strings(children)
	for _, c := range children {
		if c == "ungrouped" && len(inv.Groups[c].Hosts) == 0 && len(inv.Groups[c].Children) == 0 {
			continue
		}
		inv.graph(sb, c, indent+"  |", onPath)
	}
	if name == "all" {
		return // all's hosts are shown under their groups or ungrouped
	}
	direct := map[string]bool{}
	for _, h := range g.Hosts {
		direct[h] = true
	}
	for _, h := range inv.Hosts {
		if direct[h.Name] {
			fmt.Fprintf(sb, "%s  |--%s\n", indent, h.Name)
		}
	}
}

func indentPrefix(indent string) string {
	if indent == "" {
		return ""
	}
	return indent + "--"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
