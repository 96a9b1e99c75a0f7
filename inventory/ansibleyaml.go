package inventory

import (
	"go.yaml.in/yaml/v3"
	"io/fs"
)

var ansibleGroupKeys = []string{"hosts", "children", "vars"}

// parseAnsibleYAML reads an Ansible YAML inventory:
//
//	all:
//	  vars: {ansible_user: deploy}
//	  children:
//	    web:
//	      hosts:
//	        web[01:03]:
//	          ansible_host: 10.0.0.1
func parseAnsibleYAML(name string, top *yaml.Node, varsFS fs.FS) (*Inventory, error) {
	b := newBuilder(name, "ansible-yaml")
	b.varsFS = varsFS
	ps, err := b.mapping(top, "the inventory")
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := b.ansibleGroup(p, 0); err != nil {
			return nil, err
		}
	}
	return b.resolve()
}

// maxGroupNesting bounds recursion on hostile input; real inventories nest
// a handful of levels.
const maxGroupNesting = 100

func (b *builder) ansibleGroup(p pair, level int) error {
	b.visits++
	if b.visits > maxRangeHosts {
		return b.errorf(p.k.Line, "too many group definitions (aliases?)")
	}
	if level > maxGroupNesting {
		return b.errorf(p.k.Line, "groups nest deeper than %d levels", maxGroupNesting)
	}
	if err := checkName("group", p.key); err != nil {
		return b.errorf(p.k.Line, "%v", err)
	}
	g := b.group(p.key, p.k.Line)
	where := "group " + p.key
	ps, err := b.mapping(p.v, where)
	if err != nil {
		return err
	}
	for _, q := range ps {
		switch q.key {
		case "vars":
			vs, err := b.mapping(q.v, where+" vars")
			if err != nil {
				return err
			}
			for _, v := range vs {
				s, err := b.varString(v.v)
				if err != nil {
					return err
				}
				g.set["vars."+v.key] = value{v: s, src: "in group " + p.key + " vars (" + b.at(v.k.Line) + ")", pos: b.loc(v.k.Line)}
			}
		case "hosts":
			hs, err := b.mapping(q.v, where+" hosts")
			if err != nil {
				return err
			}
			for _, h := range hs {
				names, err := expandRange(h.key)
				if err != nil {
					return b.errorf(h.k.Line, "%v", err)
				}
				vs, err := b.mapping(h.v, "host "+h.key)
				if err != nil {
					return err
				}
				for _, n := range names {
					if err := checkName("host", n); err != nil {
						return b.errorf(h.k.Line, "%v", err)
					}
					rh := b.host(n, h.k.Line)
					g.addHost(n)
					for _, v := range vs {
						s, err := b.varString(v.v)
						if err != nil {
							return err
						}
						rh.set["vars."+v.key] = value{v: s, src: "on host " + n + " (" + b.at(v.k.Line) + ")", pos: b.loc(v.k.Line)}
					}
				}
			}
		case "children":
			cs, err := b.mapping(q.v, where+" children")
			if err != nil {
				return err
			}
			for _, c := range cs {
				if c.key == p.key {
					return b.errorf(c.k.Line, "group %s lists itself as a child", p.key)
				}
				if c.key == "all" {
					return b.errorf(c.k.Line, "group %s cannot have all as a child", p.key)
				}
				g.children = appendUnique(g.children, c.key)
				if err := b.ansibleGroup(c, level+1); err != nil {
					return err
				}
			}
		default:
			return b.unknownKey(q, where, ansibleGroupKeys)
		}
	}
	return nil
}
