package wire

// VerbState reads the host's whole firewall state (every table of every
// backend that lists one, with counters; ipset sets; the facts an audit
// needs) and changes nothing. It takes no lock: a read racing a change
// sees the state before or after it, each tool's listing being atomic.
const VerbState = "state"

// StateArgs is state's payload (and, on confirm, asks for the state after
// the confirm in the same helper run, for the workstation's history).
type StateArgs struct {
	// Candidate, when set, is also loaded into a private, empty network
	// namespace (the trial load begin uses) and listed back the way the
	// kernel holds it: how `lifeline diff HOST FILE` compares a file in
	// nft syntax with the live state. Nothing live changes.
	Candidate *RulesetChange `json:"candidate,omitempty"`
	// Zero resets the packet and byte counters of every rule (and
	// iptables chain policy) after listing them: the only thing the state
	// verb ever changes, and nothing a packet's fate depends on.
	Zero bool `json:"zero,omitempty"`
}

// Part formats of a StatePart.
const (
	StateNftJSON      = "nft-json"      // nft -j list ruleset
	StateIptablesSave = "iptables-save" // iptables-save -c (or ip6tables-save -c)
	StateIpsetSave    = "ipset-save"    // ipset save
)

// StatePart is one tool's listing.
type StatePart struct {
	// Source: nft, iptables-nft, ip6tables-nft, iptables-legacy,
	// ip6tables-legacy, ipset (ruleset.Source).
	Source string `json:"source"`
	Format string `json:"format"`
	Text   string `json:"text"`
}

// StateReport is state's payload.
type StateReport struct {
	Parts []StatePart `json:"parts"`
	Facts HostFacts   `json:"facts"`
	// Candidate: the StateArgs.Candidate ruleset as the trial namespace's
	// kernel lists it.
	Candidate []StatePart `json:"candidate,omitempty"`
	// Zeroed names the backends whose counters were reset (StateArgs.Zero);
	// Facts.Notes says why any other was not.
	Zeroed []string `json:"zeroed,omitempty"`
}

// HostFacts are what the host says about itself beyond the ruleset, for an
// audit. Missing files leave their fields zero (Notes says which).
type HostFacts struct {
	IPv4Forward bool `json:"ipv4_forward"`
	IPv6Forward bool `json:"ipv6_forward"`
	// IPv6: the host has a global IPv6 address.
	IPv6 bool `json:"ipv6"`
	// ConntrackMax is 0 when conntrack is not loaded.
	ConntrackCount int `json:"conntrack_count"`
	ConntrackMax   int `json:"conntrack_max"`
	// Active: the backends that hold rules (Detect.Active); set only when
	// a candidate was loaded (the listings in Parts say it otherwise).
	Active []string `json:"active,omitempty"`
	// SSHPorts: the TCP ports sshd listens on (from /proc: sockets in
	// LISTEN owned by a process named sshd); empty when unknown.
	SSHPorts []int    `json:"ssh_ports,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}
