package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kevinburke/ssh_config"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/remote"
)

// resolveTargets loads the inventory (-i or $LIFELINE_INVENTORY, may be
// absent) and selects the hosts pattern and limit name. Without an
// inventory the pattern is a list of ssh_config aliases or host names. With
// one, a name the inventory does not know is still accepted when ssh_config
// has a Host entry for it. Errors are usage errors (exit 2).
func resolveTargets(g *globals, pattern, limit string) (*inventory.Inventory, []*inventory.Host, error) {
	if g.inventory == "" {
		if limit != "" {
			return nil, nil, usagef("--limit needs an inventory: give -i FILE or set $LIFELINE_INVENTORY")
		}
		hosts, err := inventory.FromAliases(pattern)
		if err != nil {
			return nil, nil, usageError{err}
		}
		return nil, hosts, nil
	}
	inv, err := inventory.Load(g.inventory)
	if err != nil {
		return nil, nil, usageError{err}
	}
	warnInventory(g, inv)
	hosts, warnings, err := inv.SelectWarn(pattern, limit)
	var ue *inventory.UnknownError
	if (errors.As(err, &ue) || len(warnings) > 0) && limit == "" {
		if alt, ok := aliasesInSSHConfig(g, inv, pattern); ok {
			return inv, alt, refuseUnsupported(alt)
		}
	}
	if err != nil {
		return nil, nil, usageError{err}
	}
	for _, w := range warnings {
		fmt.Fprintln(g.stderr, "lifeline: warning: "+textsafe.Escape(w))
	}
	if err := refuseUnsupported(hosts); err != nil {
		return nil, nil, err
	}
	return inv, hosts, nil
}

// refuseUnsupported refuses the target when an Ansible inventory asks for
// something on a selected host that lifeline cannot do (a ProxyCommand,
// StrictHostKeyChecking from ssh args, ansible_connection=local, a
// template, ...): connecting some other way than Ansible would is worse
// than not connecting. Every such setting of every host is named.
func refuseUnsupported(hosts []*inventory.Host) error {
	var lines []string
	for _, h := range hosts {
		for _, u := range h.Unsupported {
			lines = append(lines, "  "+h.Name+": "+u)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return usagef("the inventory asks for what lifeline cannot do on %d setting(s); nothing was contacted:\n%s (hint: lifeline inventory list --sources TARGET shows each host's settings; leave those hosts out with TARGET:!HOST)", len(lines), strings.Join(lines, "\n"))
}

// aliasesInSSHConfig selects pattern as plain names when each is an
// inventory host or a Host alias in the ssh_config in use.
func aliasesInSSHConfig(g *globals, inv *inventory.Inventory, pattern string) ([]*inventory.Host, bool) {
	hosts, err := inventory.FromAliases(pattern)
	if err != nil {
		return nil, false
	}
	known := map[string]*inventory.Host{}
	for _, h := range inv.Hosts {
		known[h.Name] = h
	}
	aliases := sshConfigAliases(configFiles(g, inv))
	var out []*inventory.Host
	for _, h := range hosts {
		if ih, ok := known[h.Name]; ok && h.User == "" {
			out = append(out, ih)
			continue
		}
		if !aliases[h.Name] {
			return nil, false
		}
		out = append(out, h)
	}
	return out, true
}

// sshConfigAliases lists the literal (pattern-free) names of Host lines.
func sshConfigAliases(files []string) map[string]bool {
	out := map[string]bool{}
	if files == nil {
		if home, err := os.UserHomeDir(); err == nil {
			files = append(files, home+"/.ssh/config")
		}
		files = append(files, "/etc/ssh/ssh_config")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, n := range hostAliases(b) {
			out[n] = true
		}
	}
	return out
}

// hostAliases lists the literal names of a config's Host lines (no
// wildcard, no negation), through kevinburke/ssh_config's decoder (Match
// blocks skipped); a file it cannot decode is scanned line by line. It
// only names targets: resolving them is remote's (OpenSSH's rules).
func hostAliases(b []byte) []string {
	var out []string
	if cfg, err := ssh_config.DecodeBytes(b); err == nil {
		for _, h := range cfg.Hosts {
			if strings.HasPrefix(strings.TrimSpace(h.String()), "Match") {
				continue // Match criteria name no target
			}
			for _, p := range h.Patterns {
				if n := p.String(); !strings.ContainsAny(n, "*?!") {
					out = append(out, n)
				}
			}
		}
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(strings.ReplaceAll(sc.Text(), "=", " "))
		if len(fields) < 2 || !strings.EqualFold(fields[0], "host") {
			continue
		}
		for _, n := range fields[1:] {
			if !strings.ContainsAny(n, "*?!") {
				out = append(out, n)
			}
		}
	}
	return out
}

func configFiles(g *globals, inv *inventory.Inventory) []string {
	switch {
	case g.sshConfig != "":
		return []string{g.sshConfig}
	case inv != nil && inv.SSHConfig != "":
		return []string{inv.SSHConfig}
	}
	return nil
}

// newDialer builds the Dialer for a command: -F wins over the inventory's
// ssh_config, which wins over the user's defaults; the inventory's
// known_hosts replaces the user's; -v logs diagnostics on stderr.
func newDialer(g *globals, inv *inventory.Inventory) *remote.Dialer {
	o := remote.Options{ConfigFiles: configFiles(g, inv), AcceptNew: g.acceptNew}
	if inv != nil && inv.KnownHosts != "" {
		o.KnownHosts = []string{inv.KnownHosts}
	}
	if g.verbose {
		w := &lockedWriter{w: g.stderr}
		o.Log = func(format string, args ...any) {
			fmt.Fprintf(w, "lifeline: "+format+"\n", args...)
		}
	}
	return remote.NewDialer(o)
}

// targetOf maps an inventory host to what the transport dials.
// For an Ansible inventory, ssh_config is matched against the destination
// Ansible's ssh would be given (ansible_host when set), not the inventory
// name, so that a Host 10.0.0.5 block applies as it does for Ansible.
func targetOf(h *inventory.Host) remote.Target {
	t := remote.Target{Name: h.Name, Address: h.Address, User: h.User, Port: h.Port, Jump: h.Jump, IdentityFile: h.IdentityFile, ProxyCommand: h.ProxyCommand}
	if h.SSHAlias != "" {
		t.Name, t.Address = h.SSHAlias, ""
	}
	for _, o := range h.SSHOptions {
		t.Options = append(t.Options, o.Key+" "+o.Value)
	}
	return t
}
