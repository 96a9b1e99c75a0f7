package revert

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// nftLiveChain is one chain as the kernel reports it over netlink.
type nftLiveChain struct {
	table nftTableID
	name  string
	hook  string // "" for a regular chain
}

// nftInventory reads the live nft tables and chains over netlink
// (google/nftables): no nft process, and no text to parse. Only names and
// hooks are read — never rules, which the library reads back lossily (see
// LIBRARY-FACTS.md); rules are snapshotted as text with the nft tool.
//
// FirewallOptions.NetNS, when set, names the network namespace to read
// (tests); otherwise the helper's own.
func (f *hostFirewall) nftInventory() ([]nftTableID, []nftLiveChain, error) {
	var opts []nftables.ConnOption
	if f.opts.NetNS != "" {
		ns, err := os.Open(f.opts.NetNS)
		if err != nil {
			return nil, nil, fmt.Errorf("open netns %s: %w", f.opts.NetNS, err)
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, nil, fmt.Errorf("list nft tables over netlink: %w", err)
	}
	var ids []nftTableID
	for _, t := range tables {
		if fam := nftFamilyName(t.Family); fam != "" {
			ids = append(ids, nftTableID{fam, t.Name})
		}
	}
	if len(ids) == 0 {
		return nil, nil, nil
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, nil, fmt.Errorf("list nft chains over netlink: %w", err)
	}
	var out []nftLiveChain
	for _, ch := range chains {
		fam := nftFamilyName(ch.Table.Family)
		if fam == "" {
			continue
		}
		lc := nftLiveChain{table: nftTableID{fam, ch.Table.Name}, name: ch.Name}
		if ch.Hooknum != nil {
			lc.hook = nftHookName(ch.Table.Family, uint32(*ch.Hooknum))
		}
		out = append(out, lc)
	}
	return ids, out, nil
}

func nftFamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return ""
}

// nftHookName names a base chain's hook the way nft prints it.
func nftHookName(f nftables.TableFamily, h uint32) string {
	switch f {
	case nftables.TableFamilyARP:
		switch h {
		case 0:
			return "input"
		case 1:
			return "output"
		}
	case nftables.TableFamilyNetdev:
		switch h {
		case 0:
			return "ingress"
		case 1:
			return "egress"
		}
	default:
		switch h {
		case unix.NF_INET_PRE_ROUTING:
			return "prerouting"
		case unix.NF_INET_LOCAL_IN:
			return "input"
		case unix.NF_INET_FORWARD:
			return "forward"
		case unix.NF_INET_LOCAL_OUT:
			return "output"
		case unix.NF_INET_POST_ROUTING:
			return "postrouting"
		case 5: // NF_INET_INGRESS (inet family)
			return "ingress"
		}
	}
	return fmt.Sprintf("hook%d", h)
}

// xtablesManaged reports whether a table is iptables-nft's: an ip/ip6
// table named like an xtables table whose base chains are named like their
// hooks in upper case (INPUT, PREROUTING, ...).
func xtablesManaged(t nftTableID, chains []nftLiveChain) bool {
	if !xtablesNames[t.name] || (t.family != "ip" && t.family != "ip6") {
		return false
	}
	for _, c := range chains {
		if c.table == t && c.hook != "" && c.name != strings.ToUpper(c.hook) {
			return false
		}
	}
	return true
}
