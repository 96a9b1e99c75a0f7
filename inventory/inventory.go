// Package inventory resolves which hosts a command targets and with which
// settings: lifeline's own YAML inventory, Ansible INI and YAML inventories
// (read-only), and bare ssh_config aliases. It is pure: no network, no SSH,
// no subprocess; only [Load] reads files.
//
// # Formats
//
// [Parse] sniffs the format. lifeline's own YAML:
//
//	ssh_config: ssh_config        # optional, relative to this file
//	known_hosts: known_hosts      # optional
//	defaults: {user: root, port: 22, jump: bastion, identity_file: ~/.ssh/id_ed25519,
//	           ruleset: rules/default.nft, vars: {k: v}, labels: {k: v}}
//	hosts:
//	  h01: {address: 10.0.0.1, jump: "b1,b2", labels: {role: web}, ruleset: rules/h01.nft}
//	  h02: {}                     # nothing set: ssh_config decides
//	groups:
//	  web: {hosts: [h01], children: [db], vars: {k: v}, ruleset: rules/web.nft}
//
// Groups may also set user, port, jump, identity_file and labels.
// Unknown keys are errors naming file:line. An empty value ("") clears an
// inherited one, e.g. jump: "" on the bastion itself.
//
// lifeline detects each host's firewall backend on the host, so a backend
// setting (backend: here, lifeline_backend in Ansible inventories) is not
// read: it loads, and adds a line to [Inventory.Warnings] naming where it
// is set.
//
// Ansible INI and YAML inventories are read as Ansible reads them (ranges
// such as web[01:20] and db-[a:c], [group:vars], [group:children], and, in
// [Load], host_vars/ and group_vars/ next to the file). Connection variables
// map to settings: ansible_host → Address, ansible_user → User,
// ansible_port → Port, ansible_ssh_private_key_file → IdentityFile, a jump
// in ansible_ssh_common_args or ansible_ssh_extra_args (-J X, -o
// ProxyJump=X, -o ProxyCommand="ssh -W %h:%p X") → Jump, lifeline_ruleset →
// Ruleset; every other variable but lifeline_backend stays in Vars. The
// ssh command line is read as Ansible builds it and ssh reads it (first
// value wins; see sshline.go), ssh_config is matched on ansible_host
// ([Host.SSHAlias]), and what lifeline cannot carry is kept and listed in
// [Host.Unsupported] rather than dropped. TestAnsibleOracle checks all of
// it against Ansible itself.
//
// # Precedence
//
// The most specific value wins: the host's own, then its groups' — a child
// group beats its parent, groups at the same depth apply in name order, the
// later winning (Ansible's rule) — then defaults (or Ansible's all vars).
// Every resolved setting names its origin in [Host.Sources].
//
// # Paths
//
// Relative paths (ruleset, ssh_config, known_hosts, identity_file) are
// resolved against the inventory file's folder. Paths starting with "~" are
// kept as written: the SSH layer expands them, as it does ssh_config's.
//
// # Targets
//
// [Inventory.Select] takes Ansible's patterns (see there); without an
// inventory, [FromAliases] turns a list of names into hosts.
package inventory

// Host is one resolved target. Empty fields mean "not set here": the SSH
// layer then falls back to ssh_config and OpenSSH defaults.
type Host struct {
	Name         string            `json:"name"`              // inventory name; also the ssh_config Host alias matched
	Address      string            `json:"address,omitempty"` // HostName override
	User         string            `json:"user,omitempty"`
	Port         int               `json:"port,omitempty"`
	Jump         string            `json:"jump,omitempty"`          // ProxyJump spec: "h1,user@h2:2222"
	IdentityFile string            `json:"identity_file,omitempty"` // absolute path, or "~/..." as written
	Ruleset      string            `json:"ruleset,omitempty"`       // absolute path of this host's ruleset file, if any
	Labels       map[string]string `json:"labels,omitempty"`
	Vars         map[string]string `json:"vars,omitempty"`
	Groups       []string          `json:"groups,omitempty"` // every group the host is in, sorted, "all" excluded
	// Set only by Ansible inventories:
	// SSHAlias is the destination Ansible's ssh connection gives ssh,
	// ansible_host when set, else the name: ssh_config's Host blocks
	// match it, not the inventory name.
	SSHAlias string `json:"ssh_alias,omitempty"`
	// ProxyCommand is a ProxyCommand from the ssh args that is not a
	// plain "ssh -W %h:%p HOST" (which becomes Jump): as written.
	ProxyCommand string `json:"proxy_command,omitempty"`
	// SSHOptions are the other ssh options of the ssh args that matter to
	// where or how the host is reached or trusted (first one wins, as in
	// ssh): StrictHostKeyChecking, UserKnownHostsFile, ...
	SSHOptions []SSHOption `json:"ssh_options,omitempty"`
	// Connection is ansible_connection when it is not ssh ("local", ...).
	Connection string `json:"connection,omitempty"`
	// Become is ansible_become's method ("sudo", "su", "doas") when
	// ansible_become is true, with ":USER" for a become user other than root.
	Become string `json:"become,omitempty"`
	// Unsupported lists what the inventory asks for this host that
	// lifeline cannot do, one message each naming the variable and where
	// it is set. A command targeting the host refuses it with them,
	// rather than connect some other way than Ansible would.
	Unsupported []string `json:"unsupported,omitempty"`
	// Sources maps each setting above ("address", "user", "port", "jump",
	// "identity_file", "ruleset", "vars.NAME", ...) to where its
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
	// Warnings are problems that did not stop the load, one line each,
	// "FILE:LINE: WHERE: MESSAGE", for the user to read and fix: a setting
	// lifeline does not read. Empty when there is nothing to fix.
	Warnings []string `json:"warnings,omitempty"`
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

// SSHOption is one ssh option an Ansible inventory sets (in
// ansible_ssh_args, ansible_ssh_common_args or ansible_ssh_extra_args)
// that has no field of its own in [Host]: kept, with where it came from,
// so that nothing the inventory says about a connection is dropped.
type SSHOption struct {
	Key   string `json:"key"` // ssh_config keyword as written, e.g. StrictHostKeyChecking
	Value string `json:"value"`
	From  string `json:"from"` // e.g. "ansible_ssh_common_args in group all:vars (hosts:3)"
}
