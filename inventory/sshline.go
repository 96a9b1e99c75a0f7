package inventory

import (
	"fmt"
	"strings"
)

// sshWord is one word of the ssh command line Ansible would run, with the
// variable it came from.
type sshWord struct {
	w      string
	origin value
	from   string // variable name, for messages and sources
}

// sshCmdline is a host's ssh command line as Ansible's ssh connection
// builds it (ansible.plugins.connection.ssh _build_command): ssh_args
// (ansible_ssh_args, else Ansible's default), -o Port=ansible_port,
// -o IdentityFile="key", -o User="user", then ansible_ssh_common_args and
// ansible_ssh_extra_args, then the destination.
type sshCmdline struct {
	host  string // inventory name, for errors
	alias string // ssh's destination, which ssh_config's Host blocks match
	words []sshWord
}

func (b *builder) sshLine(name, alias string, m settings) (*sshCmdline, error) {
	l := &sshCmdline{host: name, alias: alias}
	add := func(from string, v value, text string) error {
		words, err := splitWords(text)
		if err != nil {
			return fmt.Errorf("%s: host %s: %s: %w", v.pos, name, from, err)
		}
		for _, w := range words {
			if w = strings.TrimSpace(w); w != "" {
				l.words = append(l.words, sshWord{w: w, origin: v, from: from})
			}
		}
		return nil
	}
	if v, ok := m["vars.ansible_ssh_args"]; ok {
		if err := add("ansible_ssh_args", v, v.v); err != nil {
			return nil, err
		}
	} else if err := add("ssh_args", value{src: "Ansible's default ssh_args"}, defaultSSHArgs); err != nil {
		return nil, err
	}
	for _, s := range []struct{ setting, opt string }{{"port", "Port=%s"}, {"identity_file", `IdentityFile="%s"`}, {"user", `User="%s"`}} {
		if v, ok := m[s.setting]; ok {
			l.words = append(l.words, sshWord{w: "-o", origin: v, from: s.setting}, sshWord{w: fmt.Sprintf(s.opt, v.v), origin: v, from: s.setting})
		}
	}
	for _, a := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args"} {
		if v, ok := m["vars."+a]; ok {
			if err := add(a, v, v.v); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// sshNoEffect are ssh options that change nothing about which host is
// reached, as whom, or which host key is trusted (lowercase).
var sshNoEffect = map[string]bool{
	"compression": true, "controlmaster": true, "controlpersist": true, "controlpath": true,
	"connecttimeout": true, "serveraliveinterval": true, "serveralivecountmax": true, "tcpkeepalive": true,
	"loglevel": true, "kbdinteractiveauthentication": true, "challengeresponseauthentication": true,
	"preferredauthentications": true, "passwordauthentication": true, "gssapiauthentication": true,
	"gssapidelegatecredentials": true, "forwardagent": true, "forwardx11": true, "requesttty": true,
	"sendenv": true, "setenv": true, "batchmode": true, "numberofpasswordprompts": true,
	"hashknownhosts": true, "visualhostkey": true, "addkeystoagent": true, "escapechar": true,
}

// sshFlagNoEffect are ssh's flags without an argument that change nothing
// lifeline honours: -A -a -C -f -g -K -k -M -N -n -q -s -T -t -V -v -X -x -Y -y.
const sshFlagNoEffect = "AaCfgKkMNnqsTtVvXxYy"

// apply reads the command line the way ssh does — the first value of each
// option wins, identity files add up, -J, ProxyJump and ProxyCommand are
// one setting — into m's settings and res. What lifeline cannot honour is
// refused by name (res.unsupported), never dropped.
func (l *sshCmdline) apply(m settings, res *ansibleResult, refuse func(value, string, string, ...any)) error {
	var loadErr error
	seen := map[string]bool{}
	var identities []sshWord
	first := func(key string) bool {
		if seen[key] {
			return false
		}
		seen[key] = true
		return true
	}
	set := func(setting string, w sshWord, v string) {
		if w.from == setting {
			m[setting] = w.origin // the variable itself: keep its source
			return
		}
		m[setting] = value{v: v, src: w.from + " " + w.origin.src, pos: w.origin.pos}
	}
	option := func(w sshWord, key, val string) {
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1] // Ansible's -o User="name", IdentityFile="key"
		}
		lk := strings.ToLower(key)
		switch {
		case lk == "identityfile":
			identities = append(identities, sshWord{w: val, origin: w.origin, from: w.from})
			return
		case sshNoEffect[lk] || !first(lk):
			return
		}
		switch lk {
		case "port":
			if _, err := checkPort(val); err != nil {
				refuse(w.origin, w.from, "-o %s=%s: %v", key, val, err)
				return
			}
			set("port", w, val)
		case "user":
			set("user", w, val)
		case "proxyjump", "proxycommand":
			if !first("proxy") {
				return // ssh: the first of ProxyJump and ProxyCommand wins
			}
			delete(m, "jump")
			if strings.EqualFold(val, "none") {
				return
			}
			if lk == "proxyjump" {
				set("jump", w, val)
				return
			}
			if _, err := splitWords(val); err != nil && loadErr == nil {
				loadErr = fmt.Errorf("%s: host %s: %s: %w", w.origin.pos, l.host, w.from, err)
				return
			}
			jump, err := jumpFromProxyCommand(val)
			if err == nil {
				set("jump", w, jump)
				return
			}
			// run as written, like ssh: the hop's own options (-i, -o
			// StrictHostKeyChecking, known hosts) apply to the hop
			m["proxy_command"] = value{v: val, src: w.from + " " + w.origin.src, pos: w.origin.pos}
		default:
			// given to the transport like ssh's -o (remote.Target.Options):
			// it refuses a keyword it cannot honour, by name, and says what
			// StrictHostKeyChecking no costs
			res.options = append(res.options, SSHOption{Key: key, Value: val, From: w.from + " " + w.origin.src})
		}
	}
	words := l.words
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w.w, "-") || len(w.w) < 2 {
			refuse(w.origin, w.from, "%q is not an option: ssh would take it as the destination", w.w)
			continue
		}
	flags:
		for k := 1; k < len(w.w); k++ {
			f := w.w[k]
			if strings.IndexByte(sshArgFlags, f) < 0 {
				if strings.IndexByte(sshFlagNoEffect, f) < 0 {
					refuse(w.origin, w.from, "ssh flag -%c: lifeline cannot honour it from an inventory", f)
				}
				continue
			}
			arg := w.w[k+1:]
			if arg == "" {
				if i+1 >= len(words) {
					refuse(w.origin, w.from, "-%c has no argument", f)
					break flags
				}
				i++
				arg = words[i].w
			}
			switch f {
			case 'o':
				key, val := splitOption(arg)
				option(w, key, val)
			case 'p':
				option(w, "Port", arg)
			case 'l':
				option(w, "User", arg)
			case 'i':
				option(w, "IdentityFile", arg)
			case 'J':
				option(w, "ProxyJump", arg)
			case 'F':
				if first("-F") {
					res.options = append(res.options, SSHOption{Key: "-F", Value: arg, From: w.from + " " + w.origin.src})
					refuse(w.origin, w.from, "-F %s: give the ssh_config file with lifeline's -F, or ssh_config: in a lifeline inventory", arg)
				}
			case 'c', 'm', 'b', 'B', 'E', 'I', 'Q', 'O', 'W', 'w':
				refuse(w.origin, w.from, "-%c %s: lifeline cannot honour it from an inventory", f, arg)
			}
			break flags
		}
	}
	if len(identities) > 0 {
		id := identities[0]
		set("identity_file", id, id.w) // from ssh args: as ssh reads it, "~" left to the SSH layer
		for _, other := range identities[1:] {
			if other.w != id.w {
				refuse(other.origin, other.from, "a second identity file %s (after %s): ssh would try both, lifeline takes one; keep one, or list them as IdentityFile lines in ssh_config", other.w, id.w)
			}
		}
	}
	return loadErr
}
