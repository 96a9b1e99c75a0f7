package inventory

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the inventory file at path and parses it with [Parse]. Relative
// paths inside it are resolved against the file's folder.
func Load(path string) (*Inventory, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("inventory %s is a folder: give the inventory file inside it", path)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	return parse(abs, data, os.DirFS(filepath.Dir(abs)))
}

// Parse parses an inventory. name is the file's path: it names the file in
// errors and Sources, and relative paths inside the inventory are resolved
// against its folder (pass an absolute name to get absolute paths).
//
// The format is sniffed from the content: a file whose first line is an INI
// section header, or that is not a YAML mapping, is an Ansible INI
// inventory; a YAML mapping with the key all, or whose every entry looks
// like an Ansible group (only hosts, children and vars), is an Ansible YAML
// inventory; anything else is lifeline's own YAML, which refuses unknown keys.
func Parse(name string, data []byte) (*Inventory, error) {
	return parse(name, data, nil)
}

// parse is Parse that also reads Ansible's host_vars/ and group_vars/ from
// varsFS (the inventory's folder) when it is not nil.
func parse(name string, data []byte, varsFS fs.FS) (*Inventory, error) {
	if looksLikeINI(data) {
		return parseINI(name, data, varsFS)
	}
	top, err := parseYAML(name, data)
	if err != nil {
		if ext := strings.ToLower(filepath.Ext(name)); ext == ".yaml" || ext == ".yml" {
			return nil, err
		}
		return parseINI(name, data, varsFS)
	}
	if top != nil && top.Kind != yaml.MappingNode {
		if ext := strings.ToLower(filepath.Ext(name)); ext == ".yaml" || ext == ".yml" {
			return nil, fmt.Errorf("%s:%d: an inventory must be a mapping (hosts:, groups:, ... or all:), got %s", name, top.Line, kindName(top))
		}
		return parseINI(name, data, varsFS)
	}
	if top != nil && looksLikeAnsibleYAML(top) {
		return parseAnsibleYAML(name, top, varsFS)
	}
	return parseLifeline(name, top)
}

// looksLikeINI reports whether the first line that is not blank or a
// comment is an INI section header such as [web] or [web:vars].
func looksLikeINI(data []byte) bool {
	for line := range strings.Lines(string(data)) {
		t := strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		t = strings.TrimSpace(stripComment(t))
		return strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") && !strings.Contains(t, ",")
	}
	return false
}

func looksLikeAnsibleYAML(top *yaml.Node) bool {
	ps, err := pairs(top)
	if err != nil || len(ps) == 0 {
		return false
	}
	for _, p := range ps {
		if p.key == "all" {
			return true
		}
	}
	for _, p := range ps {
		if contains(topKeys, p.key) {
			return false
		}
	}
	for _, p := range ps {
		gp, err := pairs(p.v)
		if err != nil {
			return false
		}
		for _, q := range gp {
			if !contains(ansibleGroupKeys, q.key) {
				return false
			}
		}
	}
	return true
}
