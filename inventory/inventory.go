// Package inventory resolves which hosts a command targets and with which
// settings: lifeline's own YAML inventory, Ansible INI and YAML inventories
// (read-only), and bare ssh_config aliases. It is pure: no network, no SSH.
package inventory

// Host is one resolved target. Empty fields mean "not set here": the SSH
// layer then falls back to ssh_config and OpenSSH defaults.
type Host struct {
	Name         string            `json:"name"`              // inventory name; also the ssh_config Host alias matched
	Address      string            `json:"address,omitempty"` // HostName override
	User         string            `json:"user,omitempty"`
	Port         int               `json:"port,omitempty"`
	Jump         string            `json:"jump,omitempty"`          // ProxyJump spec: "h1,user@h2:2222"
	IdentityFile string            `json:"identity_file,omitempty"` // absolute path
	Backend      string            `json:"backend,omitempty"`       // nft | iptables-nft | iptables-legacy | "" (auto)
	Ruleset      string            `json:"ruleset,omitempty"`       // absolute path of this host's ruleset file, if any
	Labels       map[string]string `json:"labels,omitempty"`
	Vars         map[string]string `json:"vars,omitempty"`
	Groups       []string          `json:"groups,omitempty"` // every group the host is in, sorted, "all" excluded
	// Sources maps each setting above ("address", "user", "port", "jump",
	// "identity_file", "backend", "ruleset", "vars.NAME", ...) to where its
	// value came from, e.g. "host h01 (inventory.yaml:12)",
	// "group web vars", "defaults", "ansible_host".
	Sources map[string]string `json:"sources,omitempty"`
}

// Inventory is a loaded inventory file.
type Inventory struct {
	Path   string            `json:"path"`
	Format string            `json:"format"` // "lifeline", "ansible-ini", "ansible-yaml", "ssh_config"
	Hosts  []*Host           `json:"hosts"`  // in file order
	Groups map[string]*Group `json:"groups"`
	// SSHConfig and KnownHosts are files the inventory points at (absolute
	// paths; "" when not set): used instead of the user's defaults.
	SSHConfig  string `json:"ssh_config,omitempty"`
	KnownHosts string `json:"known_hosts,omitempty"`
}

// Group is a named set of hosts and child groups.
type Group struct {
	Name     string            `json:"name"`
	Hosts    []string          `json:"hosts,omitempty"`    // direct members
	Children []string          `json:"children,omitempty"` // child groups
	Vars     map[string]string `json:"vars,omitempty"`
	Ruleset  string            `json:"ruleset,omitempty"` // absolute path
}

// Lookup returns the host called name, or nil.
func (inv *Inventory) Lookup(name string) *Host {
	for _, h := range inv.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}
