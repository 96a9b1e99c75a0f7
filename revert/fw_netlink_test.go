package revert

import (
	"testing"

	"github.com/google/nftables"
)

func TestXtablesManaged(t *testing.T) {
	ipFilter := nftTableID{"ip", "filter"}
	tests := []struct {
		name   string
		table  nftTableID
		chains []nftLiveChain
		want   bool
	}{
		{"iptables-nft filter", ipFilter, []nftLiveChain{{ipFilter, "INPUT", "input"}, {ipFilter, "DOCKER-USER", ""}}, true},
		{"native table named filter", ipFilter, []nftLiveChain{{ipFilter, "input", "input"}}, false},
		{"inet is never iptables-nft", nftTableID{"inet", "filter"}, []nftLiveChain{{nftTableID{"inet", "filter"}, "INPUT", "input"}}, false},
		{"other name", nftTableID{"ip", "mine"}, []nftLiveChain{{nftTableID{"ip", "mine"}, "INPUT", "input"}}, false},
		{"ip6 nat", nftTableID{"ip6", "nat"}, []nftLiveChain{{nftTableID{"ip6", "nat"}, "PREROUTING", "prerouting"}, {nftTableID{"ip6", "nat"}, "POSTROUTING", "postrouting"}}, true},
	}
	for _, tt := range tests {
		if got := xtablesManaged(tt.table, tt.chains); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNftHookName(t *testing.T) {
	tests := []struct {
		fam  nftables.TableFamily
		hook uint32
		want string
	}{
		{nftables.TableFamilyINet, 1, "input"},
		{nftables.TableFamilyIPv4, 0, "prerouting"},
		{nftables.TableFamilyIPv6, 4, "postrouting"},
		{nftables.TableFamilyARP, 1, "output"},
		{nftables.TableFamilyNetdev, 0, "ingress"},
	}
	for _, tt := range tests {
		if got := nftHookName(tt.fam, tt.hook); got != tt.want {
			t.Errorf("family %d hook %d: %q, want %q", tt.fam, tt.hook, got, tt.want)
		}
	}
}
