package wire

import (
	"fmt"
	"net/netip"
	"time"
)

// VerbBlock adds elements to, or removes them from, one of lifeline's
// block sets, with no transaction: one atomic batch per host (nft: one
// `nft -f` transaction; ipset: one `ipset restore -exist`), changing no
// rule. It takes no lock, so it works while another transaction is armed
// (a revert keeps the elements it added). When the set or its drop rule is
// not live, it changes nothing and answers BlockReport.Ready false: the
// workstation then creates them in a guarded transaction (ChangeBlock).
const VerbBlock = "block"

// ChangeBlock creates lifeline's block table, set and drop rule where they
// are missing and adds BlockChange.CIDRs to the set, as a guarded
// transaction: kept only when a fresh connection gets in, else reverted,
// and the revert removes the elements the transaction added (and the
// table, set and rule it created).
const ChangeBlock ChangeKind = "block"

// Block sets: names and bounds.
const (
	DefaultBlockSet = "blocked"
	MaxBlockCIDRs   = 4096
	// MaxBlockTTL bounds --ttl (ipset's timeout is a 32-bit count of
	// seconds; nft's a 64-bit one).
	MaxBlockTTL = 365 * 24 * time.Hour
)

// Block modes: where a host keeps its block set.
const (
	BlockModeNft   = "nft"   // table inet lifeline: set NAME (ipv4) and NAME6, chain input
	BlockModeIpset = "ipset" // ipsets lifeline-NAME, lifeline-NAME-v6; iptables chain LIFELINE-BLOCK
)

// BlockChange is ChangeBlock's payload.
type BlockChange struct {
	Set   string   `json:"set"`
	CIDRs []string `json:"cidrs"`
	// TTL: each element expires by itself after it (the kernel keeps the
	// countdown); 0 keeps it until unblocked.
	TTL Duration `json:"ttl,omitempty"`
}

// BlockArgs is VerbBlock's payload.
type BlockArgs struct {
	Set   string   `json:"set"`
	CIDRs []string `json:"cidrs"`
	TTL   Duration `json:"ttl,omitempty"`
	// Remove deletes the CIDRs (those in the set; the others are reported
	// Absent) instead of adding them.
	Remove bool `json:"remove,omitempty"`
	// Probe changes nothing: the report says only Mode and Ready.
	Probe bool `json:"probe,omitempty"`
}

// BlockReport is VerbBlock's answer (and stage's for a ChangeBlock).
type BlockReport struct {
	Mode string `json:"mode"`
	// Ready: the set and its drop rule are live (else nothing changed).
	Ready bool `json:"ready"`
	// Added / Removed: the elements the batch added or removed (already
	// present ones are refreshed and listed too); Absent: those to remove
	// that were not in the set.
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Absent  []string `json:"absent,omitempty"`
	// Created: stage created the table, set or rule.
	Created bool `json:"created,omitempty"`
}

// CheckBlockSet refuses a set name lifeline does not use: 1 to 16
// characters of a-z, 0-9 and _, starting with a letter (it names an nft
// set and, prefixed with "lifeline-", an ipset of at most 31 characters).
func CheckBlockSet(name string) error {
	if len(name) == 0 || len(name) > 16 || name[0] < 'a' || name[0] > 'z' {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("set name %q: use 1 to 16 characters a-z, 0-9, _ starting with a letter", name)}
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("set name %q: use 1 to 16 characters a-z, 0-9, _ starting with a letter", name)}
		}
	}
	return nil
}

// NormalizeCIDR parses an address or CIDR and returns the network it
// names, masked, in the form the block sets list it: "10.1.2.0/24", and a
// bare address for a single host ("192.0.2.7", "2001:db8::1").
func NormalizeCIDR(s string) (netip.Prefix, string, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, "", fmt.Errorf("%q is neither an address nor a CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = p.Masked()
	if p.Addr().Is4In6() {
		return netip.Prefix{}, "", fmt.Errorf("%q: write an IPv4-mapped address as plain IPv4", s)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, "", fmt.Errorf("%q blocks every address of its family: block narrower ranges", s)
	}
	if p.Bits() == p.Addr().BitLen() {
		return p, p.Addr().String(), nil
	}
	return p, p.String(), nil
}

func checkBlock(set string, cidrs []string, ttl Duration, needCIDRs bool) error {
	if err := CheckBlockSet(set); err != nil {
		return err
	}
	if needCIDRs && len(cidrs) == 0 {
		return &Error{Code: CodeBadRequest, Message: "no address or CIDR to block"}
	}
	if len(cidrs) > MaxBlockCIDRs {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("%d CIDRs, at most %d per call", len(cidrs), MaxBlockCIDRs)}
	}
	for _, c := range cidrs {
		if _, n, err := NormalizeCIDR(c); err != nil {
			return &Error{Code: CodeBadRequest, Message: err.Error()}
		} else if n != c {
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("CIDR %q is not normalised (send %q)", c, n)}
		}
	}
	if d := time.Duration(ttl); d < 0 || d > MaxBlockTTL || d > 0 && d < time.Second || d%time.Second != 0 {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("ttl %s: give whole seconds from 1s to %s, or 0 for none", d, MaxBlockTTL)}
	}
	return nil
}

// Check refuses a malformed block change.
func (b *BlockChange) Check() error { return checkBlock(b.Set, b.CIDRs, b.TTL, true) }

// Check refuses malformed block arguments.
func (b *BlockArgs) Check() error { return checkBlock(b.Set, b.CIDRs, b.TTL, true) }
