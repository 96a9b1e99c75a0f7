//go:build linux

package lab

import (
	"fmt"

	"github.com/coreos/go-iptables/iptables"
)

// IPTables runs fn with a go-iptables handle on host's own ruleset (IPv4,
// or IPv6 with v6), the way Docker and kube-proxy drive iptables: tests use
// it to plant their chains before an apply. The handle runs the binary of
// the host's backend (iptables-legacy or iptables-nft) from a thread inside
// the host's network namespace, so it never touches the machine's ruleset.
func (l *Lab) IPTables(host string, v6 bool, fn func(*iptables.IPTables) error) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	bin := "/usr/sbin/iptables-nft"
	if h.Backend == "iptables-legacy" {
		bin = "/usr/sbin/iptables-legacy"
	}
	proto := iptables.ProtocolIPv4
	if v6 {
		proto = iptables.ProtocolIPv6
		bin = "/usr/sbin/ip6" + bin[len("/usr/sbin/ip"):]
	}
	return inNetns(h.Netns, func() error {
		ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(bin), iptables.Timeout(10))
		if err != nil {
			return fmt.Errorf("lab host %s: %s: %w", host, bin, err)
		}
		return fn(ipt)
	})
}
