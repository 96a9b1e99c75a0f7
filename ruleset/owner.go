package ruleset

import "strings"

// Lifeline's own names. The kernel guard puts no table of its own: it
// inserts rules whose comment starts with GuardCommentPrefix at the top of
// the operator's base chains and adds sets named GuardSetPrefix... to their
// tables (revert/fw_nft.go, revert/guard.go). `lifeline trace` uses the nft
// table TraceTable. Any nft table or chain whose name starts with
// "lifeline" (and iptables chains starting with "LIFELINE") is lifeline's.
const (
	GuardCommentPrefix = "lifeline-guard"
	GuardSetPrefix     = "lifeline_guard"
	TraceTable         = "lifeline_trace"
	// Block sets (lifeline block): on nft hosts the table `inet
	// BlockTable` holds set NAME (ipv4) and NAME+"6" (ipv6) and one base
	// chain "input" whose rules (comment BlockCommentPrefix+" NAME") drop
	// their source addresses; on iptables hosts the ipsets
	// BlockIpsetPrefix+NAME (and +"-v6") are matched by the rules of the
	// filter chain BlockChain, which INPUT jumps to (that jump's comment
	// is BlockCommentPrefix too). apply and every revert carry them over
	// as they are live, like Docker's chains.
	BlockTable         = "lifeline"
	BlockChain         = "LIFELINE-BLOCK"
	BlockCommentPrefix = "lifeline-block"
	BlockIpsetPrefix   = "lifeline-"
)

// BlockSetNames are the names of block set name's parts: the nft sets
// (ipv4, ipv6) in table inet BlockTable and the ipsets.
func BlockSetNames(name string) (nft4, nft6, ipset4, ipset6 string) {
	return name, name + "6", BlockIpsetPrefix + name, BlockIpsetPrefix + name + "-v6"
}

// builtinChains maps iptables' built-in chain names to their hooks.
var builtinChains = map[string]string{
	"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward",
	"OUTPUT": "output", "POSTROUTING": "postrouting",
}

// OwnerOf says which tool owns a table (chain "") or a chain of it, from
// their names alone: one of the Owner constants, or "" for the operator's
// own. iptables tables themselves (filter, nat, ...) and built-in chains
// have no owner; native nft tables are owned as a whole.
func OwnerOf(src Source, family, table, chain string) string {
	if src == SourceNft {
		if o := nftTableOwner(family, table); o != "" {
			return o
		}
	}
	if chain == "" {
		return ""
	}
	if builtinChains[chain] != "" && src != SourceNft {
		return ""
	}
	return ownerOfName(chain)
}

func nftTableOwner(family, table string) string {
	switch {
	case table == TraceTable || strings.HasPrefix(table, "lifeline"):
		return OwnerLifeline
	case table == "docker-bridges" || strings.HasPrefix(table, "docker"):
		return OwnerDocker
	case table == "kube-proxy":
		return OwnerKubeProxy
	case table == "calico" || strings.HasPrefix(table, "calico-") || strings.HasPrefix(table, "cali-"):
		return OwnerCalico
	case table == "firewalld" && (family == "inet" || family == "ip" || family == "ip6"):
		return OwnerFirewalld
	case table == "f2b-table":
		return OwnerFail2ban
	case table == "crowdsec" || table == "crowdsec6":
		return OwnerCrowdSec
	}
	return ""
}

// ownerOfName: the owner a chain (or ipset) name says.
func ownerOfName(name string) string {
	switch {
	case strings.HasPrefix(name, "DOCKER"):
		return OwnerDocker
	case strings.HasPrefix(name, "KUBE-"):
		return OwnerKubeProxy
	case strings.HasPrefix(name, "cali-") || strings.HasPrefix(name, "cali:"):
		return OwnerCalico
	case strings.HasPrefix(name, "ufw-") || strings.HasPrefix(name, "ufw6-"):
		return OwnerUfw
	case strings.HasPrefix(name, "f2b-"):
		return OwnerFail2ban
	case strings.HasPrefix(name, "CROWDSEC") || strings.HasPrefix(name, "crowdsec"):
		return OwnerCrowdSec
	case strings.HasPrefix(name, "LIFELINE") || strings.HasPrefix(name, "lifeline"):
		return OwnerLifeline
	}
	return ""
}

// Owner is the rule's own owner when it differs from its chain's: lifeline
// for the kernel guard's rules (comment "lifeline-guard ..."), "" otherwise.
func (r *Rule) Owner() string {
	if strings.HasPrefix(r.Comment, GuardCommentPrefix) || strings.HasPrefix(r.Comment, BlockCommentPrefix) {
		return OwnerLifeline
	}
	return ""
}

// Owner is the set's owner from its name: lifeline for the guard's sets
// (lifeline_guard, lifeline_guard_arp, ...), a tool for its ipsets
// (f2b-sshd, KUBE-CLUSTER-IP, crowdsec-blacklists, ...), else "" (an nft
// set of an owned table belongs to the table's owner; see Table.Owner).
func (s *Set) Owner() string {
	if strings.HasPrefix(s.Name, GuardSetPrefix) {
		return OwnerLifeline
	}
	return ownerOfName(s.Name)
}
