package inventory

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ansibleVars maps Ansible connection variables to lifeline settings, in
// order of preference: the first one set wins.
var ansibleVars = []struct{ setting, v string }{
	{"address", "ansible_host"},
	{"address", "ansible_ssh_host"},
	{"user", "ansible_user"},
	{"user", "ansible_ssh_user"},
	{"port", "ansible_port"},
	{"port", "ansible_ssh_port"},
	{"identity_file", "ansible_ssh_private_key_file"},
	{"identity_file", "ansible_private_key_file"},
	{"ruleset", "lifeline_ruleset"},
}

// connectionVars are the variables that decide how a host is reached: a
// Jinja expression in one of them is evaluated (the trivial
// inventory_hostname family) or the host is refused, never dialed with the
// expression's text.
var connectionVars = []string{
	"ansible_host", "ansible_ssh_host", "ansible_user", "ansible_ssh_user", "ansible_port", "ansible_ssh_port",
	"ansible_ssh_private_key_file", "ansible_private_key_file", "ansible_ssh_args", "ansible_ssh_common_args",
	"ansible_ssh_extra_args", "ansible_connection", "ansible_become", "ansible_become_method", "ansible_become_user",
}

// defaultSSHArgs is Ansible's ssh_args when ansible_ssh_args is not set.
const defaultSSHArgs = "-C -o ControlMaster=auto -o ControlPersist=60s"

// groupPriorities reads ansible_group_priority from each group's vars in
// the inventory file (as Ansible, not from group_vars/: it is used before
// those are read). Groups of the same depth merge by priority, then name.
func (b *builder) groupPriorities() error {
	if b.format == "lifeline" {
		return nil
	}
	for _, name := range b.gorder {
		g := b.groups[name]
		v, ok := g.set["vars.ansible_group_priority"]
		if !ok {
			continue
		}
		p, err := strconv.Atoi(strings.TrimSpace(v.v))
		if err != nil {
			return fmt.Errorf("%s: group %s: ansible_group_priority %q is not a whole number", v.pos, name, v.v)
		}
		g.priority = p
	}
	return nil
}

// ansibleResult is what mapAnsible found besides settings.
type ansibleResult struct {
	options     []SSHOption
	unsupported []string
}

// mapAnsible moves the Ansible connection variables of a host's resolved
// vars into lifeline's settings the way Ansible's ssh connection uses
// them. It runs after precedence so that, as in Ansible, a host's
// ansible_ssh_common_args replaces its group's whole. The ssh command line
// is then read as ssh reads it (see sshLine).
func (b *builder) mapAnsible(name string, m settings) (ansibleResult, error) {
	var res ansibleResult
	refuse := func(v value, varName, format string, a ...any) {
		where := v.pos
		if where == "" {
			where = v.src
		}
		res.unsupported = append(res.unsupported, fmt.Sprintf("%s (%s): %s", varName, where, fmt.Sprintf(format, a...)))
	}
	// Jinja first: {{ inventory_hostname }} and friends are evaluated, any
	// other template refuses the host.
	for _, cv := range connectionVars {
		v, ok := m["vars."+cv]
		if !ok || !strings.Contains(v.v, "{{") && !strings.Contains(v.v, "{%") {
			continue
		}
		out, ok := evalTrivialJinja(v.v, name)
		if !ok {
			refuse(v, cv, "%q is a Jinja template lifeline does not evaluate (only {{ inventory_hostname }} and {{ inventory_hostname_short }}): write the value itself", v.v)
			delete(m, "vars."+cv)
			continue
		}
		v.v = out
		m["vars."+cv] = v
	}
	if v, ok := m["vars.ansible_connection"]; ok {
		switch c := strings.TrimSpace(v.v); c {
		case "ssh", "smart", "paramiko", "paramiko_ssh", "":
		default:
			m["connection"] = value{v: c, src: "ansible_connection " + v.src, pos: v.pos}
			hint := "lifeline reaches hosts over SSH only"
			if c == "local" {
				hint = "lifeline does not change the workstation's own firewall: target the host over SSH (remove ansible_connection=local for it, or leave it out of the target)"
			}
			refuse(v, "ansible_connection", "%s: %s", c, hint)
		}
	}
	if err := b.mapBecome(m, refuse); err != nil {
		return res, err
	}
	for _, a := range ansibleVars {
		key := "vars." + a.v
		v, ok := m[key]
		if !ok {
			continue
		}
		delete(m, key)
		if _, done := m[a.setting]; done {
			continue
		}
		v.src = a.v + " " + v.src
		if a.setting == "identity_file" || a.setting == "ruleset" {
			v.v = b.absPath(v.v)
		}
		m[a.setting] = v
	}
	// ssh is given ansible_host, or the inventory name, as its destination.
	alias := value{v: name, src: "inventory name", pos: ""}
	if a, ok := m["address"]; ok {
		alias = value{v: strings.TrimSpace(a.v), src: a.src, pos: a.pos}
		if ip, err := netip.ParseAddr(strings.Trim(alias.v, "[]")); err == nil {
			alias.v = ip.String()
		}
	}
	m["ssh_alias"] = alias
	line, err := b.sshLine(name, alias.v, m)
	if err != nil {
		return res, err
	}
	return res, line.apply(m, &res, refuse)
}

// mapBecome reads ansible_become and its method and user: sudo to root is
// what lifeline does for a login user that is not root; su, doas or
// another user are refused by name.
func (b *builder) mapBecome(m settings, refuse func(value, string, string, ...any)) error {
	v, ok := m["vars.ansible_become"]
	if !ok || !pyTrue(v.v) {
		return nil
	}
	method, user := "sudo", "root"
	if mv, ok := m["vars.ansible_become_method"]; ok {
		method = strings.TrimSpace(mv.v)
		if method != "sudo" {
			refuse(mv, "ansible_become_method", "%s: lifeline becomes root with sudo only (sudo -n): allow the login user passwordless sudo, or log in as root", method)
		}
	}
	if uv, ok := m["vars.ansible_become_user"]; ok && strings.TrimSpace(uv.v) != "" {
		user = strings.TrimSpace(uv.v)
		if user != "root" {
			refuse(uv, "ansible_become_user", "%s: lifeline changes the firewall as root; remove ansible_become_user or set it to root", user)
		}
	}
	become := method
	if user != "root" {
		become += ":" + user
	}
	m["become"] = value{v: become, src: "ansible_become " + v.src, pos: v.pos}
	return nil
}

// pyTrue is Ansible's boolean reading of a variable (yes, true, on, 1).
func pyTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "y", "true", "t", "on", "1", "1.0":
		return true
	}
	return false
}

// evalTrivialJinja replaces {{ inventory_hostname }} and {{
// inventory_hostname_short }} in s; ok is false when s holds any other
// template.
func evalTrivialJinja(s, host string) (string, bool) {
	if strings.Contains(s, "{%") || strings.Contains(s, "{#") {
		return "", false
	}
	var out strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			out.WriteString(s)
			return out.String(), true
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return "", false
		}
		out.WriteString(s[:i])
		switch strings.TrimSpace(s[i+2 : i+j]) {
		case "inventory_hostname":
			out.WriteString(host)
		case "inventory_hostname_short":
			short, _, _ := strings.Cut(host, ".")
			out.WriteString(short)
		default:
			return "", false
		}
		s = s[i+j+2:]
	}
}
