package inventory

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Keys of lifeline's own YAML format. Unknown keys are an error naming
// file:line, like yaml's KnownFields(true), so that a typo never silently
// drops a setting.
var (
	topKeys      = []string{"ssh_config", "known_hosts", "defaults", "hosts", "groups"}
	settingKeys  = []string{"user", "port", "jump", "identity_file", "backend", "ruleset", "vars", "labels"}
	hostKeys     = append([]string{"address"}, settingKeys...)
	groupKeys    = append([]string{"hosts", "children"}, settingKeys...)
	defaultsKeys = settingKeys
)

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseLifeline reads lifeline's own YAML inventory (see the package docs).
func parseLifeline(name string, top *yaml.Node) (*Inventory, error) {
	b := newBuilder(name, "lifeline")
	if top == nil {
		return b.resolve()
	}
	ps, err := b.mapping(top, "the inventory")
	if err != nil {
		return nil, err
	}
	var hostsNode, groupsNode *yaml.Node
	for _, p := range ps {
		switch p.key {
		case "ssh_config", "known_hosts":
			s, err := b.scalar(p.v, p.key)
			if err != nil {
				return nil, err
			}
			if p.key == "ssh_config" {
				b.sshConfig = b.absPath(s)
			} else {
				b.knownHosts = b.absPath(s)
			}
		case "defaults":
			if err := b.lifelineSettings(p.v, b.defaults, "defaults", "defaults", defaultsKeys); err != nil {
				return nil, err
			}
		case "hosts":
			hostsNode = p.v
		case "groups":
			groupsNode = p.v
		default:
			return nil, b.unknownKey(p, "the inventory", topKeys)
		}
	}
	hps, err := b.mapping(hostsNode, "hosts")
	if err != nil {
		return nil, err
	}
	for _, p := range hps {
		if err := checkName("host", p.key); err != nil {
			return nil, b.errorf(p.k.Line, "%v", err)
		}
		h := b.host(p.key, p.k.Line)
		who := "host " + p.key
		if err := b.lifelineSettings(p.v, h.set, who, who, hostKeys); err != nil {
			return nil, err
		}
	}
	gps, err := b.mapping(groupsNode, "groups")
	if err != nil {
		return nil, err
	}
	for _, p := range gps {
		if p.key == "all" || p.key == "ungrouped" {
			return nil, b.errorf(p.k.Line, "group %s is implicit and cannot be defined: use defaults for settings every host shares", p.key)
		}
		if _, ok := b.hostIdx[p.key]; ok {
			return nil, b.errorf(p.k.Line, "group %s has the name of a host: patterns could not tell them apart", p.key)
		}
		if err := checkName("group", p.key); err != nil {
			return nil, b.errorf(p.k.Line, "%v", err)
		}
		g := b.group(p.key, p.k.Line)
		who := "group " + p.key
		if err := b.lifelineSettings(p.v, g.set, who, who, groupKeys); err != nil {
			return nil, err
		}
		gp, _ := b.mapping(p.v, who)
		for _, q := range gp {
			switch q.key {
			case "hosts":
				names, lines, err := b.stringList(q.v, who+" hosts")
				if err != nil {
					return nil, err
				}
				for i, n := range names {
					expanded, err := expandRange(n)
					if err != nil {
						return nil, b.errorf(lines[i], "%v", err)
					}
					for _, e := range expanded {
						if _, ok := b.hostIdx[e]; !ok {
							return nil, b.errorf(lines[i], "group %s lists host %s, which is not under hosts: add it there", p.key, e)
						}
						g.addHost(e)
					}
				}
			case "children":
				names, lines, err := b.stringList(q.v, who+" children")
				if err != nil {
					return nil, err
				}
				for i, n := range names {
					if err := checkName("group", n); err != nil {
						return nil, b.errorf(lines[i], "%v", err)
					}
					if _, ok := b.hostIdx[n]; ok {
						return nil, b.errorf(lines[i], "group %s lists %s as a child group, but it is a host: put it under hosts", p.key, n)
					}
					g.children = appendUnique(g.children, n)
				}
			}
		}
	}
	for _, name := range b.gorder {
		for _, c := range b.groups[name].children {
			if _, ok := b.groups[c]; !ok {
				return nil, fmt.Errorf("%s: group %s lists child group %s, which is not under groups: add it there", b.path, name, c)
			}
		}
	}
	return b.resolve()
}

// lifelineSettings reads the settings of defaults, a host or a group into set.
// hosts and children (groups only) are read by the caller.
func (b *builder) lifelineSettings(n *yaml.Node, set settings, where, who string, known []string) error {
	ps, err := b.mapping(n, where)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if !contains(known, p.key) {
			return b.unknownKey(p, where, known)
		}
		src := fmt.Sprintf("%s (%s)", who, b.at(p.k.Line))
		switch p.key {
		case "hosts", "children":
			continue
		case "backend":
			// Not read: kept, whatever its value, only for the warning
			// [builder.dropBackends] gives.
			set[p.key] = value{pos: b.loc(p.k.Line)}
			continue
		case "vars", "labels":
			vs, err := b.mapping(p.v, where+" "+p.key)
			if err != nil {
				return err
			}
			label := who
			if p.key == "vars" && who != "defaults" {
				label = who + " vars"
			}
			for _, v := range vs {
				var s string
				if p.key == "labels" {
					s, err = b.scalar(v.v, where+" label "+v.key)
				} else {
					s, err = b.varString(v.v)
				}
				if err != nil {
					return err
				}
				vsrc := fmt.Sprintf("%s (%s)", label, b.at(v.k.Line))
				set[p.key+"."+v.key] = value{v: s, src: vsrc, pos: b.loc(v.k.Line)}
			}
			continue
		}
		s, err := b.scalar(p.v, where+" "+p.key)
		if err != nil {
			return err
		}
		switch p.key {
		case "port":
			if _, err := checkPort(s); err != nil {
				return b.errorf(p.v.Line, "%s: %v", where, err)
			}
		case "jump":
			if strings.ContainsAny(s, " \t") {
				return b.errorf(p.v.Line, "%s: jump %q has spaces: separate hops with commas, e.g. b1,user@b2:2222", where, s)
			}
		case "ruleset", "identity_file":
			s = b.absPath(s)
		}
		set[p.key] = value{v: s, src: src, pos: b.loc(p.k.Line)}
	}
	return nil
}
