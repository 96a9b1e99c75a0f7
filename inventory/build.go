package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
)

// A value is one setting as written in the file, before precedence is applied.
type value struct {
	v   string
	src string // human description: "host h01 (inventory.yaml:12)"
	pos string // "inventory.yaml:12", for errors
}

// settings maps a setting key ("address", "port", "vars.NAME",
// "labels.NAME", ...) to its value at one level (defaults, a group, a host).
type settings map[string]value

type rawHost struct {
	name    string
	pos     string
	set     settings
	fileSet settings // from host_vars/: above the host's inventory vars
}

type rawGroup struct {
	name     string
	pos      string
	priority int      // ansible_group_priority (default 1): orders groups of one depth
	fileSet  settings // from group_vars/: above every group's inventory vars
	hosts    []string
	isHost   map[string]bool // hosts as a set, to add in O(1)
	children []string
	set      settings
}

func (g *rawGroup) addHost(name string) {
	if g.isHost == nil {
		g.isHost = map[string]bool{}
	}
	if !g.isHost[name] {
		g.isHost[name] = true
		g.hosts = append(g.hosts, name)
	}
}

// builder collects what a parser read; resolve turns it into an Inventory.
type builder struct {
	path   string // as given to Parse
	file   string // base name, used in sources
	dir    string // folder relative paths are resolved against
	format string

	defaults settings
	hosts    []*rawHost
	hostIdx  map[string]*rawHost
	groups   map[string]*rawGroup
	gorder   []string // groups in order of first appearance

	sshConfig, knownHosts string
	visits                int   // group definitions read, to bound alias blow-ups
	varsFS                fs.FS // the inventory's folder, for Ansible's host_vars/ and group_vars/; nil: none
}

func newBuilder(name, format string) *builder {
	return &builder{
		path:     name,
		file:     filepath.Base(name),
		dir:      filepath.Dir(name),
		format:   format,
		defaults: settings{},
		hostIdx:  map[string]*rawHost{},
		groups:   map[string]*rawGroup{},
	}
}

// at names a line for Sources (base name); loc names it for errors (path).
func (b *builder) at(line int) string  { return fmt.Sprintf("%s:%d", b.file, line) }
func (b *builder) loc(line int) string { return fmt.Sprintf("%s:%d", b.path, line) }

// errorf returns an error that starts with file:line, the way compilers do.
func (b *builder) errorf(line int, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s", b.path, line, fmt.Sprintf(format, a...))
}

// checkName refuses host and group names that target patterns could not
// name: empty, with spaces, commas or control characters, or starting with
// a pattern operator. Host names are held to [CheckHostName] as well.
func checkName(kind, name string) error {
	if kind == "host" {
		return CheckHostName(name)
	}
	if name == "" {
		return fmt.Errorf("empty %s name", kind)
	}
	if strings.ContainsAny(name, ", \"'") || hasControl(name) || strings.ContainsAny(name[:1], "!&~@") {
		return fmt.Errorf("%s name %s cannot be targeted: use letters, digits, '.', '-' and '_'", kind, textsafe.Quote(name))
	}
	return nil
}

// maxHostName is DNS's limit for a name; it also keeps the files named
// after a host in the run folder under the file system's 255 bytes.
const maxHostName = 253

// CheckHostName refuses a host name that is not safe both as a target and
// as one component of a file name: a host's results are stored as
// NAME.json in the run folder. A safe name is made of letters, digits,
// '.', '-' and '_', does not start with '.' or '-', has no "..", and is at
// most 253 bytes long; or a bare IPv6 address (2001:db8::1). The error quotes the name escaped.
func CheckHostName(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if ip, err := netip.ParseAddr(name); err == nil && ip.Is6() && ip.Zone() == "" {
		return nil // a bare IPv6 address, as Ansible inventories may list hosts
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isNameByte(c) {
			return fmt.Errorf("host name %s cannot be targeted: use letters, digits, '.', '-' and '_'", textsafe.Quote(name))
		}
	}
	if name[0] == '.' || name[0] == '-' || strings.Contains(name, "..") {
		return fmt.Errorf("host name %s cannot be targeted: it must not start with '.' or '-' or contain '..'", textsafe.Quote(name))
	}
	if len(name) > maxHostName {
		return fmt.Errorf("host name %s is %d bytes long: at most %d", textsafe.Quote(name), len(name), maxHostName)
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// hasControl reports whether s holds a control character (C0, DEL or C1):
// none belongs in an address, a user or a name, and a newline in one could
// add lines to an ssh_config or a command.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return true
		}
	}
	return false
}

// checkConnValue refuses an address, user, jump or identity file that ssh
// could read as something else: with a control character, or (but for the
// identity file, a path) starting with '-', which ssh takes as an option.
func checkConnValue(key, v string) error {
	if hasControl(v) {
		return fmt.Errorf("%s %s has a control character", key, textsafe.Quote(v))
	}
	if key != "identity_file" && strings.HasPrefix(v, "-") {
		return fmt.Errorf("%s %s starts with '-'", key, textsafe.Quote(v))
	}
	return nil
}

// host returns the host called name, adding it (in file order) when new.
func (b *builder) host(name string, line int) *rawHost {
	if h, ok := b.hostIdx[name]; ok {
		return h
	}
	h := &rawHost{name: name, pos: b.loc(line), set: settings{}, fileSet: settings{}}
	b.hosts = append(b.hosts, h)
	b.hostIdx[name] = h
	return h
}

// group returns the group called name, adding it when new.
func (b *builder) group(name string, line int) *rawGroup {
	if g, ok := b.groups[name]; ok {
		return g
	}
	pos := b.file
	if line > 0 {
		pos = b.at(line)
	}
	g := &rawGroup{name: name, pos: pos, set: settings{}, fileSet: settings{}, priority: 1}
	b.groups[name] = g
	b.gorder = append(b.gorder, name)
	return g
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// absPath resolves a path written in the inventory against its folder.
// Paths starting with "~" are kept: the SSH layer expands them the way
// ssh_config's IdentityFile is expanded.
func (b *builder) absPath(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "~") {
		return p
	}
	return filepath.Join(b.dir, p)
}

func checkPort(v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", v)
	}
	return p, nil
}

// resolve applies precedence (host > groups by depth, then name > defaults)
// and returns the finished inventory.
func (b *builder) resolve() (*Inventory, error) {
	if err := b.groupPriorities(); err != nil {
		return nil, err
	}
	if b.varsFS != nil && b.format != "lifeline" {
		if err := b.readVarDirs(); err != nil {
			return nil, err
		}
	}
	warnings := b.dropBackends()
	all := b.group("all", 0)
	// Hosts that are in no group but all are in ungrouped, like Ansible.
	member := map[string]bool{}
	for _, g := range b.groups {
		if g.name == "all" {
			continue
		}
		for _, h := range g.hosts {
			member[h] = true
		}
	}
	for _, h := range b.hosts {
		if !member[h.name] {
			u := b.group("ungrouped", 0)
			u.addHost(h.name)
		}
	}
	for _, name := range append([]string(nil), b.gorder...) {
		g := b.groups[name]
		for _, h := range g.hosts {
			if _, ok := b.hostIdx[h]; !ok {
				return nil, fmt.Errorf("%s: group %s lists host %s, which is not defined", b.path, g.name, h)
			}
		}
		for _, c := range g.children {
			if c == "all" {
				return nil, fmt.Errorf("%s: group %s cannot have all as a child", b.path, g.name)
			}
			if _, ok := b.groups[c]; !ok {
				b.group(c, 0)
			}
		}
	}
	// all's children are the groups nobody else claims.
	parents := map[string][]string{}
	for _, name := range b.gorder {
		for _, c := range b.groups[name].children {
			parents[c] = appendUnique(parents[c], name)
		}
	}
	for _, name := range b.gorder {
		if name != "all" && len(parents[name]) == 0 {
			all.children = appendUnique(all.children, name)
			parents[name] = []string{"all"}
		}
	}
	depth, err := b.depths(parents)
	if err != nil {
		return nil, err
	}

	inv := &Inventory{
		Path:       b.path,
		Format:     b.format,
		Groups:     map[string]*Group{},
		SSHConfig:  b.sshConfig,
		KnownHosts: b.knownHosts,
		Warnings:   warnings,
	}
	for _, name := range b.gorder {
		g := b.groups[name]
		out := &Group{Name: name, Hosts: g.hosts, Children: g.children}
		all := settings{}
		for k, v := range g.set {
			all[k] = v
		}
		for k, v := range g.fileSet {
			all[k] = v
		}
		for k, v := range all {
			if n, ok := strings.CutPrefix(k, "vars."); ok {
				if out.Vars == nil {
					out.Vars = map[string]string{}
				}
				out.Vars[n] = v.v
			}
		}
		if r, ok := g.set["ruleset"]; ok {
			out.Ruleset = r.v
		} else if r, ok := all["vars.lifeline_ruleset"]; ok && b.format != "lifeline" {
			out.Ruleset = b.absPath(r.v)
		}
		inv.Groups[name] = out
	}

	direct := map[string][]string{} // host → groups that list it
	for _, name := range b.gorder {
		for _, h := range b.groups[name].hosts {
			direct[h] = append(direct[h], name)
		}
	}
	for _, rh := range b.hosts {
		// Every group the host is in, directly or through children.
		in := map[string]bool{}
		var walk func(string)
		walk = func(g string) {
			if in[g] {
				return
			}
			in[g] = true
			for _, p := range parents[g] {
				walk(p)
			}
		}
		for _, name := range direct[rh.name] {
			walk(name)
		}
		walk("all")
		groups := make([]string, 0, len(in))
		for g := range in {
			groups = append(groups, g)
		}
		sort.Slice(groups, func(i, j int) bool {
			if depth[groups[i]] != depth[groups[j]] {
				return depth[groups[i]] < depth[groups[j]]
			}
			if pi, pj := b.groups[groups[i]].priority, b.groups[groups[j]].priority; pi != pj {
				return pi < pj
			}
			return groups[i] < groups[j]
		})
		merged := settings{}
		for k, v := range b.defaults {
			merged[k] = v
		}
		// Ansible's order: every group's inventory vars, then every
		// group's group_vars/ files, then the host's, then host_vars/.
		for _, g := range groups {
			for k, v := range b.groups[g].set {
				merged[k] = v
			}
		}
		for _, g := range groups {
			for k, v := range b.groups[g].fileSet {
				merged[k] = v
			}
		}
		for k, v := range rh.set {
			merged[k] = v
		}
		for k, v := range rh.fileSet {
			merged[k] = v
		}
		h, err := b.finish(rh.name, merged)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			if g != "all" {
				h.Groups = append(h.Groups, g)
			}
		}
		sort.Strings(h.Groups)
		inv.Hosts = append(inv.Hosts, h)
	}
	return inv, nil
}

// backendUnread ends the warning for a backend setting: the helper on the
// host detects the firewall backend, and nothing reads the setting.
const backendUnread = "is not read: lifeline detects each host's firewall backend itself; remove it"

// dropBackends removes the backend settings that older inventories may
// still hold (backend: in lifeline's YAML, lifeline_backend in Ansible's)
// and returns a warning for each, naming where it is set: defaults first,
// then groups in order of appearance, then hosts in file order.
func (b *builder) dropBackends() []string {
	key, written := "backend", "backend:"
	if b.format != "lifeline" {
		key, written = "vars.lifeline_backend", "lifeline_backend"
	}
	var warnings []string
	drop := func(set settings, who string) {
		if v, ok := set[key]; ok {
			delete(set, key)
			warnings = append(warnings, fmt.Sprintf("%s: %s: %s %s", v.pos, who, written, backendUnread))
		}
	}
	drop(b.defaults, "defaults")
	for _, name := range b.gorder {
		drop(b.groups[name].set, "group "+name)
		drop(b.groups[name].fileSet, "group "+name)
	}
	for _, h := range b.hosts {
		drop(h.set, "host "+h.name)
		drop(h.fileSet, "host "+h.name)
	}
	return warnings
}

// depths gives each group its longest distance from all (all = 0) and
// refuses cycles.
func (b *builder) depths(parents map[string][]string) (map[string]int, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	depth := map[string]int{"all": 0}
	var stack []string
	var visit func(string) error
	visit = func(g string) error {
		switch state[g] {
		case done:
			return nil
		case visiting:
			i := 0
			for stack[i] != g {
				i++
			}
			cycle := append(append([]string{}, stack[i:]...), g)
			return fmt.Errorf("%s: group %s is its own descendant (%s): remove one of these children", b.path, g, strings.Join(cycle, " -> "))
		}
		state[g] = visiting
		stack = append(stack, g)
		for _, c := range b.groups[g].children {
			if err := visit(c); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[g] = done
		return nil
	}
	for _, name := range b.gorder {
		if err := visit(name); err != nil {
			return nil, err
		}
	}
	// Longest path from all, in a DAG: relax until stable (bounded by the
	// number of groups, since there is no cycle).
	for range len(b.gorder) + 1 {
		changed := false
		for _, name := range b.gorder {
			if name == "all" {
				continue
			}
			d := 0
			for _, p := range parents[name] {
				if depth[p]+1 > d {
					d = depth[p] + 1
				}
			}
			if depth[name] != d {
				depth[name] = d
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	return depth, nil
}

// finish turns a host's merged settings into a Host.
func (b *builder) finish(name string, m settings) (*Host, error) {
	h := &Host{Name: name, Sources: map[string]string{}}
	if b.format != "lifeline" {
		a, err := b.mapAnsible(name, m)
		if err != nil {
			return nil, err
		}
		h.SSHOptions, h.Unsupported = a.options, a.unsupported
	}
	for k, v := range m {
		h.Sources[k] = v.src
		switch k {
		case "address", "user", "jump", "identity_file", "ssh_alias":
			if _, ok := m["address"]; ok && k == "ssh_alias" {
				break // the address is checked, under its own name
			}
			if err := checkConnValue(k, v.v); err != nil {
				return nil, fmt.Errorf("%s: host %s: %w", v.pos, name, err)
			}
		}
		switch k {
		case "address":
			h.Address = v.v
		case "user":
			h.User = v.v
		case "port":
			p, err := checkPort(v.v)
			if err != nil {
				return nil, fmt.Errorf("%s: host %s: %w", v.pos, name, err)
			}
			h.Port = p
		case "jump":
			h.Jump = v.v
		case "identity_file":
			h.IdentityFile = v.v
		case "ruleset":
			h.Ruleset = v.v
		case "ssh_alias":
			h.SSHAlias = v.v
		case "proxy_command":
			h.ProxyCommand = v.v
		case "connection":
			h.Connection = v.v
		case "become":
			h.Become = v.v
		default:
			if n, ok := strings.CutPrefix(k, "vars."); ok {
				if h.Vars == nil {
					h.Vars = map[string]string{}
				}
				h.Vars[n] = v.v
			} else if n, ok := strings.CutPrefix(k, "labels."); ok {
				if h.Labels == nil {
					h.Labels = map[string]string{}
				}
				h.Labels[n] = v.v
			} else {
				return nil, fmt.Errorf("%s: internal error: unknown setting %q", v.pos, k)
			}
		}
	}
	if len(h.Sources) == 0 {
		h.Sources = nil
	}
	return h, nil
}
