package ruleset

import "testing"

func TestOwnerOf(t *testing.T) {
	for _, tc := range []struct {
		src                  Source
		family, table, chain string
		want                 string
	}{
		{SourceIptablesNft, "ip", "filter", "DOCKER", OwnerDocker},
		{SourceIptablesLegacy, "ip", "filter", "DOCKER-USER", OwnerDocker},
		{SourceIptablesNft, "ip", "filter", "DOCKER-ISOLATION-STAGE-1", OwnerDocker},
		{SourceNft, "ip", "docker-bridges", "", OwnerDocker},
		{SourceNft, "ip6", "docker-bridges", "filter-forward", OwnerDocker},
		{SourceNft, "ip", "docker-nat", "", OwnerDocker},
		{SourceIptablesNft, "ip", "nat", "KUBE-SERVICES", OwnerKubeProxy},
		{SourceIp6tablesNft, "ip6", "nat", "KUBE-SVC-ABCDEF", OwnerKubeProxy},
		{SourceNft, "ip", "kube-proxy", "", OwnerKubeProxy},
		{SourceNft, "ip6", "kube-proxy", "services", OwnerKubeProxy},
		{SourceIptablesLegacy, "ip", "filter", "cali-INPUT", OwnerCalico},
		{SourceNft, "inet", "firewalld", "", OwnerFirewalld},
		{SourceNft, "ip", "firewalld", "", OwnerFirewalld},
		{SourceNft, "ip6", "firewalld", "filter_INPUT", OwnerFirewalld},
		{SourceNft, "bridge", "firewalld", "", ""},
		{SourceIptablesNft, "ip", "filter", "ufw-before-input", OwnerUfw},
		{SourceIp6tablesNft, "ip6", "filter", "ufw6-before-input", OwnerUfw},
		{SourceIptablesNft, "ip", "filter", "f2b-sshd", OwnerFail2ban},
		{SourceNft, "inet", "f2b-table", "", OwnerFail2ban},
		{SourceNft, "ip", "crowdsec", "", OwnerCrowdSec},
		{SourceNft, "ip6", "crowdsec6", "", OwnerCrowdSec},
		{SourceIptablesNft, "ip", "filter", "CROWDSEC_CHAIN", OwnerCrowdSec},
		{SourceNft, "inet", "lifeline_trace", "", OwnerLifeline},
		{SourceNft, "inet", "lifeline_trace", "trace_pre", OwnerLifeline},
		{SourceIptablesNft, "ip", "filter", "LIFELINE-X", OwnerLifeline},
		{SourceNft, "inet", BlockTable, "", OwnerLifeline},
		{SourceNft, "inet", BlockTable, "input", OwnerLifeline},
		{SourceIptablesLegacy, "ip", "filter", BlockChain, OwnerLifeline},
		{SourceIp6tablesNft, "ip6", "filter", BlockChain, OwnerLifeline},
		{SourceIptablesNft, "ip", "filter", "INPUT", ""},
		{SourceIptablesNft, "ip", "filter", "", ""},
		{SourceIptablesNft, "ip", "filter", "mychain", ""},
		{SourceNft, "inet", "filter", "", ""},
		{SourceNft, "inet", "filter", "input", ""},
		{SourceNft, "ip", "filter", "DOCKER-USER", OwnerDocker}, // an iptables-nft table seen by nft
		{SourceNft, "inet", "dockerish", "", OwnerDocker},
	} {
		if got := OwnerOf(tc.src, tc.family, tc.table, tc.chain); got != tc.want {
			t.Errorf("OwnerOf(%s, %s, %s, %q) = %q, want %q", tc.src, tc.family, tc.table, tc.chain, got, tc.want)
		}
	}
}

func TestRuleAndSetOwner(t *testing.T) {
	for _, tc := range []struct {
		comment, want string
	}{
		{"lifeline-guard tx-1", OwnerLifeline},
		{"lifeline-block", OwnerLifeline},         // the jump from INPUT into LIFELINE-BLOCK
		{"lifeline-block blocked", OwnerLifeline}, // the drop rules
		{"ssh in", ""},
		{"", ""},
	} {
		if got := (&Rule{Comment: tc.comment}).Owner(); got != tc.want {
			t.Errorf("rule comment %q: owner %q, want %q", tc.comment, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"lifeline_guard", OwnerLifeline}, {"lifeline_guard_arp", OwnerLifeline},
		{"lifeline-blocked", OwnerLifeline}, {"lifeline-blocked-v6", OwnerLifeline},
		{"f2b-sshd", OwnerFail2ban}, {"KUBE-CLUSTER-IP", OwnerKubeProxy}, {"crowdsec-blacklists", OwnerCrowdSec}, {"blocklist", ""},
	} {
		if got := (&Set{Name: tc.name}).Owner(); got != tc.want {
			t.Errorf("set %q: owner %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParsersSetOwners(t *testing.T) {
	rs, err := ParseNftJSON(readFile(t, "testdata/ipt1-nft.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := rs.Table("nft ip filter")
	if f.Owner != OwnerIptablesNf {
		t.Errorf("iptables-nft table seen by nft: owner %q", f.Owner)
	}
	if c := f.Chain("DOCKER"); c.Owner != OwnerDocker {
		t.Errorf("DOCKER chain owner %q", c.Owner)
	}
	if c := f.Chain("INPUT"); c.Owner != "" {
		t.Errorf("INPUT chain owner %q", c.Owner)
	}
	rs, err = ParseNftJSON([]byte(`{"nftables":[{"table":{"family":"ip","name":"kube-proxy","handle":3}},{"chain":{"family":"ip","table":"kube-proxy","name":"services","handle":1}},{"table":{"family":"inet","name":"filter","handle":4}},{"chain":{"family":"inet","table":"filter","name":"INPUT","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if k := rs.Table("nft ip kube-proxy"); k.Owner != OwnerKubeProxy || k.Chains[0].Owner != OwnerKubeProxy {
		t.Errorf("kube-proxy table %+v chain %+v", k, k.Chains[0])
	}
	if f := rs.Table("nft inet filter"); f.Owner != "" {
		t.Errorf("inet filter with an INPUT chain: owner %q", f.Owner)
	}
}
