package ruleset

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/rulesetgen"
)

func ipt(t *testing.T, src Source, text string) *Ruleset {
	t.Helper()
	rs, err := ParseIptablesSave(src, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func codes(a *AuditReport) []string {
	var out []string
	for _, f := range a.Findings {
		out = append(out, f.Code)
	}
	return out
}

const goodV4 = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
	"-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n" +
	"-A INPUT -p tcp -m multiport --dports 22,2222 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
const goodV6 = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
	"-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"

func TestAuditFindings(t *testing.T) {
	sample, err := os.ReadFile("testdata/sample1.json")
	if err != nil {
		t.Fatal(err)
	}
	nftSample, err := ParseNftJSON(sample)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		rs    *Ruleset
		facts Facts
		want  []string // codes that must be there
		not   []string // codes that must not
	}{
		{"clean iptables v4+v6", Merge(ipt(t, SourceIptablesNft, goodV4), ipt(t, SourceIp6tablesNft, goodV6)), Facts{IPv6: true, IPv4Forward: true},
			nil, []string{FindSSHNotAccepted, FindNoEstablished, FindIPv6Open, FindForwardOpen, FindMixedBackends, FindLogWithoutLimit, FindShadowed}},
		{"ssh by source only", ipt(t, SourceIptablesNft, "*filter\n:INPUT DROP [0:0]\n-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\n-A INPUT -s 198.18.0.0/16 -j ACCEPT\nCOMMIT\n"), Facts{},
			[]string{FindSSHNotAccepted}, []string{FindNoEstablished}},
		{"ssh only through a jump", ipt(t, SourceIptablesNft, "*filter\n:INPUT DROP [0:0]\n:SSH - [0:0]\n-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -j SSH\n-A SSH -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"), Facts{},
			nil, []string{FindSSHNotAccepted}},
		{"ssh accepted only established", ipt(t, SourceIptablesNft, "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n"), Facts{},
			[]string{FindSSHNotAccepted, FindNoEstablished}, nil},
		{"ssh on another port", ipt(t, SourceIptablesNft, goodV4), Facts{SSHPorts: []int{2200}}, []string{FindSSHNotAccepted}, nil},
		{"catch-all drop through a chain", ipt(t, SourceIptablesLegacy, "*filter\n:INPUT ACCEPT [0:0]\n:LOGDROP - [0:0]\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -j LOGDROP\n-A LOGDROP -j LOG\n-A LOGDROP -j DROP\nCOMMIT\n"), Facts{},
			[]string{FindSSHNotAccepted, FindNoEstablished, FindLogWithoutLimit}, nil},
		{"accept policy: not restrictive", ipt(t, SourceIptablesNft, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 192.0.2.0/24 -j DROP\nCOMMIT\n"), Facts{}, nil, []string{FindSSHNotAccepted, FindNoEstablished}},
		{"log with a limit", ipt(t, SourceIptablesNft, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m limit --limit 5/min -j LOG\nCOMMIT\n"), Facts{}, nil, []string{FindLogWithoutLimit}},
		{"ipv6 open", ipt(t, SourceIptablesNft, goodV4), Facts{IPv6: true}, []string{FindIPv6Open}, nil},
		{"ipv6 open but no v6 address", ipt(t, SourceIptablesNft, goodV4), Facts{}, nil, []string{FindIPv6Open}},
		{"forward open", ipt(t, SourceIptablesNft, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"), Facts{IPv4Forward: true}, []string{FindForwardOpen}, nil},
		{"forward on, filtered", ipt(t, SourceIptablesNft, goodV4), Facts{IPv4Forward: true}, nil, []string{FindForwardOpen}},
		{"mixed backends", Merge(ipt(t, SourceIptablesLegacy, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 192.0.2.1/32 -j DROP\nCOMMIT\n"), nftSample), Facts{}, []string{FindMixedBackends}, nil},
		{"docker publishes a port", Merge(ipt(t, SourceIptablesNft, goodV4), ipt(t, SourceIptablesNft, "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.2:80\nCOMMIT\n")), Facts{},
			[]string{FindDockerBypass}, nil},
		{"conntrack 85%", ipt(t, SourceIptablesNft, goodV4), Facts{ConntrackCount: 850, ConntrackMax: 1000}, []string{FindConntrackFull}, nil},
		{"conntrack 50%", ipt(t, SourceIptablesNft, goodV4), Facts{ConntrackCount: 500, ConntrackMax: 1000}, nil, []string{FindConntrackFull}},
		{"shadowed", ipt(t, SourceIptablesNft, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -j DROP\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"), Facts{}, []string{FindShadowed}, nil},
		{"nft sample: ssh accepted, established first", nftSample, Facts{}, nil, []string{FindSSHNotAccepted, FindNoEstablished}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := codes(Audit(tc.rs, tc.facts))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("missing %s in %v", w, got)
				}
			}
			for _, n := range tc.not {
				if slices.Contains(got, n) {
					t.Errorf("unexpected %s in %v", n, got)
				}
			}
		})
	}
	a := Audit(ipt(t, SourceIptablesNft, "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n:KUBE-SVC-AAA - [0:0]\n:KUBE-SEP-1 - [0:0]\n:KUBE-SEP-2 - [0:0]\n-A KUBE-SVC-AAA -j KUBE-SEP-1\nCOMMIT\n"), Facts{})
	if a.KubeServices != 1 || a.KubeEndpoints != 2 || len(a.Owners) != 2 {
		t.Fatalf("owner counts: services %d endpoints %d owners %+v", a.KubeServices, a.KubeEndpoints, a.Owners)
	}
}

func TestAuditScale(t *testing.T) {
	text, n := rulesetgen.Iptables(2000)
	start := time.Now()
	rs, err := ParseIptablesSave(SourceIptablesLegacy, text)
	if err != nil {
		t.Fatal(err)
	}
	a := Audit(rs, Facts{})
	took := time.Since(start)
	t.Logf("parse + audit of %d rules: %v (%d services, %d endpoints)", n, took, a.KubeServices, a.KubeEndpoints)
	if a.KubeServices < 1000 || a.Rules != n {
		t.Fatalf("counts: %d services, %d of %d rules", a.KubeServices, a.Rules, n)
	}
	if !raceEnabled && took > time.Second {
		t.Fatalf("parse + audit of %d rules took %v, want well under 1s", n, took)
	}
}
