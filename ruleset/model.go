// Package ruleset is lifeline's one typed model of a host's firewall state:
// tables, chains (hook, priority, policy), rules (matches, verdict,
// counters, comment), sets with their elements, and the owner of each table
// and chain (Docker, kube-proxy, firewalld, ... or lifeline itself).
//
// It is pure: it parses what the kernel tools print (nft's own JSON,
// `nft -j list ruleset`; `iptables-save -c` and `ip6tables-save -c` for each
// iptables backend; `ipset save`) and imports nothing but the standard
// library, so the helper on the host and the workstation use the same code.
// Every command that reads state — snapshot, diff, drift, audit, counters,
// preflight — works on this model.
//
// A Ruleset is built from several sources at once (a host can hold nft
// tables and iptables-legacy tables side by side); each Table records the
// source it came from. Canonical gives the counter- and handle-free form
// that identifies a state: two reads of an unchanged host give the same
// bytes.
package ruleset

// Source is where a table was read from; the names are those of
// wire.Part.Backend.
type Source string

const (
	SourceNft             Source = "nft"              // nft -j list ruleset (native nft tables)
	SourceIptablesNft     Source = "iptables-nft"     // iptables-nft-save -c
	SourceIp6tablesNft    Source = "ip6tables-nft"    // ip6tables-nft-save -c
	SourceIptablesLegacy  Source = "iptables-legacy"  // iptables-legacy-save -c
	SourceIp6tablesLegacy Source = "ip6tables-legacy" // ip6tables-legacy-save -c
	SourceIpset           Source = "ipset"            // ipset save
)

// Owners recognised by OwnerOf. The empty owner is the operator's own.
const (
	OwnerDocker     = "docker"
	OwnerKubeProxy  = "kube-proxy"
	OwnerCalico     = "calico"
	OwnerFirewalld  = "firewalld"
	OwnerUfw        = "ufw"
	OwnerFail2ban   = "fail2ban"
	OwnerCrowdSec   = "crowdsec"
	OwnerLifeline   = "lifeline"
	OwnerIptablesNf = "iptables-nft" // an nft table iptables-nft manages (listed by nft too)
)

// Ruleset is a host's firewall state, from one or more sources.
type Ruleset struct {
	Tables []*Table `json:"tables"`
	// Sets not inside a table (ipset's, which are global).
	Sets []*Set `json:"sets,omitempty"`
}

// Table is one table of one source: an nft table (Family ip, ip6, inet,
// arp, bridge, netdev) or an iptables table (Family ip or ip6; Name filter,
// nat, mangle, raw, security).
type Table struct {
	Source Source   `json:"source"`
	Family string   `json:"family"`
	Name   string   `json:"name"`
	Owner  string   `json:"owner,omitempty"`
	Chains []*Chain `json:"chains"`
	Sets   []*Set   `json:"sets,omitempty"` // nft sets and maps of this table
	Handle uint64   `json:"handle,omitempty"`
}

// Chain is a base chain (Hook set) or a regular chain. For iptables the
// built-in chains (INPUT, FORWARD, ...) are base chains with their policy;
// their Hook is the lower-case hook name and Priority the table's.
type Chain struct {
	Name     string `json:"name"`
	Type     string `json:"type,omitempty"` // filter, nat, route
	Hook     string `json:"hook,omitempty"` // prerouting, input, forward, output, postrouting, ingress, egress
	Priority int    `json:"priority,omitempty"`
	Device   string `json:"device,omitempty"` // netdev chains
	// Policy of a base chain, lower case: accept or drop ("" for a
	// regular chain).
	Policy        string  `json:"policy,omitempty"`
	PolicyPackets uint64  `json:"policy_packets,omitempty"`
	PolicyBytes   uint64  `json:"policy_bytes,omitempty"`
	Owner         string  `json:"owner,omitempty"`
	Rules         []*Rule `json:"rules"`
	Handle        uint64  `json:"handle,omitempty"`
}

// Base reports whether the chain is attached to a hook.
func (c *Chain) Base() bool { return c.Hook != "" }

// Rule is one rule.
type Rule struct {
	// Text is the rule in its own tool's syntax, without counters or
	// handles: for iptables the rule line after `-A CHAIN ` ("-p tcp -m
	// tcp --dport 22 -j ACCEPT"), for nft the statement list as nft
	// prints it ("tcp dport 22 counter accept" minus the counter values:
	// "tcp dport 22 counter accept").
	Text    string  `json:"text"`
	Matches []Match `json:"matches,omitempty"`
	Verdict Verdict `json:"verdict"`
	Comment string  `json:"comment,omitempty"`
	// Counter: the rule counts (always for iptables; nft only with a
	// `counter` statement). Packets and Bytes are meaningful only then.
	Counter bool   `json:"counter"`
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`
	Handle  uint64 `json:"handle,omitempty"` // nft rule handle
	Line    int    `json:"line,omitempty"`   // 1-based line in the source text
}

// Match is one condition of a rule, in a form shared by both syntaxes so
// analyses (shadowing, preflight) can compare rules across tools.
//
// Field names: "l4proto" (tcp, udp, icmp, ...), "saddr", "daddr" (an
// address or CIDR; Family says 4 or 6 through the value), "sport",
// "dport" (a port, "lo-hi" range, or set "{22,80}"), "iif", "oif"
// (interface names, "+"/"*" wildcards as written), "ct state" (comma list,
// lower case: new,established,related,invalid,untracked), "set" (a named
// set lookup: Value "@name" or ipset "name src"), "limit", "mark",
// "icmp type", and "other" for anything the model does not interpret (Value
// holds the text). Analyses must treat "other" as unknown, never as
// always-true.
type Match struct {
	Field  string `json:"field"`
	Value  string `json:"value"`
	Negate bool   `json:"negate,omitempty"`
}

// Verdict kinds.
const (
	VerdictNone     = ""         // no verdict: the rule only counts, logs, marks, ...
	VerdictAccept   = "accept"   // ACCEPT, accept
	VerdictDrop     = "drop"     // DROP, drop
	VerdictReject   = "reject"   // REJECT, reject
	VerdictJump     = "jump"     // -j CHAIN, jump CHAIN
	VerdictGoto     = "goto"     // -g CHAIN, goto CHAIN
	VerdictReturn   = "return"   // RETURN, return
	VerdictQueue    = "queue"    // NFQUEUE, queue
	VerdictContinue = "continue" // continue
	VerdictNat      = "nat"      // DNAT, SNAT, MASQUERADE, REDIRECT, dnat, snat, masquerade, redirect (terminal)
	VerdictLog      = "log"      // LOG/NFLOG/log without another verdict (non terminal)
	VerdictOther    = "other"    // another target (MARK, CT, TRACE, ...): non terminal unless Terminal says so
)

// Verdict is what a rule does with a matching packet.
type Verdict struct {
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"` // the chain of a jump/goto; the target's name for nat/other/log
}

// Terminal reports whether a matching packet stops being evaluated in this
// chain by this rule (accept, drop, reject, queue, nat, goto, return).
// A jump is not terminal: the packet may come back.
func (v Verdict) Terminal() bool {
	switch v.Kind {
	case VerdictAccept, VerdictDrop, VerdictReject, VerdictQueue, VerdictNat, VerdictGoto, VerdictReturn:
		return true
	}
	return false
}

// Set is an nft set or map (Table set) or an ipset (Ruleset.Sets, Source
// ipset).
type Set struct {
	Source Source `json:"source"`
	Family string `json:"family,omitempty"`
	Table  string `json:"table,omitempty"`
	Name   string `json:"name"`
	// Type: nft's type ("ipv4_addr", "inet_service", concatenations
	// joined with " . "), ipset's ("hash:net").
	Type  string   `json:"type"`
	Map   string   `json:"map,omitempty"` // a map's value type
	Flags []string `json:"flags,omitempty"`
	// Timeout is the set's default element timeout as written ("1h"),
	// "" for none.
	Timeout string `json:"timeout,omitempty"`
	// Elements, normalised and sorted: "10.0.0.0/24", "22", "1.2.3.4 .
	// 80", a map entry "k : v". Per-element timeouts and expiry are not
	// part of an element (they change by themselves).
	Elements []string `json:"elements,omitempty"`
	// Expires: the seconds left of the elements that expire by themselves
	// (nft's "expires", ipset's "timeout N" with N > 0), keyed by
	// element; no part of the state's identity (Canonical and Diff leave
	// it out).
	Expires map[string]int64 `json:"expires,omitempty"`
}

// ID names a table uniquely within a Ruleset: "nft inet filter",
// "iptables-legacy filter", "ip6tables-nft nat".
func (t *Table) ID() string {
	if t.Source == SourceNft {
		return "nft " + t.Family + " " + t.Name
	}
	return string(t.Source) + " " + t.Name
}

// Chain returns the table's chain of that name, or nil.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Table returns the table with that ID, or nil.
func (r *Ruleset) Table(id string) *Table {
	for _, t := range r.Tables {
		if t.ID() == id {
			return t
		}
	}
	return nil
}
