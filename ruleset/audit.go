package ruleset

import (
	"fmt"
	"sort"
	"strings"
)

// Facts are what the host says about itself beyond its ruleset.
type Facts struct {
	SSHPorts                 []int // sshd's listening ports (default 22)
	IPv4Forward, IPv6Forward bool
	IPv6                     bool // the host has a global IPv6 address
	ConntrackCount           int
	ConntrackMax             int // 0: conntrack not loaded
}

// Finding codes: stable, for --json consumers.
const (
	FindMixedBackends   = "mixed-backends"
	FindSSHNotAccepted  = "ssh-not-accepted"
	FindNoEstablished   = "no-established-accept"
	FindDockerBypass    = "docker-bypasses-input"
	FindIPv6Open        = "ipv6-open"
	FindForwardOpen     = "forward-open"
	FindLogWithoutLimit = "log-without-limit"
	FindConntrackFull   = "conntrack-near-full"
	FindShadowed        = "shadowed-rule"
)

// Finding is one pitfall: why it matters and what to do, in a line each.
type Finding struct {
	Code     string `json:"code"`
	Severity string `json:"severity"` // error, warning, info
	Table    string `json:"table,omitempty"`
	Chain    string `json:"chain,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Why      string `json:"why"`
	Fix      string `json:"fix"`
}

// ChainSummary and TableSummary count a ruleset's rules.
type ChainSummary struct {
	Name   string `json:"name"`
	Hook   string `json:"hook,omitempty"`
	Policy string `json:"policy,omitempty"`
	Owner  string `json:"owner,omitempty"`
	Rules  int    `json:"rules"`
}

type TableSummary struct {
	Table  string         `json:"table"`
	Owner  string         `json:"owner,omitempty"`
	Rules  int            `json:"rules"`
	Chains []ChainSummary `json:"chains"`
}

// OwnerSummary is what one foreign tool (or lifeline) holds.
type OwnerSummary struct {
	Owner  string `json:"owner"`
	Tables int    `json:"tables"`
	Chains int    `json:"chains"`
	Rules  int    `json:"rules"`
}

// AuditReport is Audit's answer.
type AuditReport struct {
	// Backends that hold rules; Mixed: iptables-legacy and nf_tables
	// (nft or iptables-nft) both do.
	Backends      []string       `json:"backends"`
	Mixed         bool           `json:"mixed"`
	Rules         int            `json:"rules"`
	Tables        []TableSummary `json:"tables"`
	Owners        []OwnerSummary `json:"owners,omitempty"`
	KubeServices  int            `json:"kube_services,omitempty"`
	KubeEndpoints int            `json:"kube_endpoints,omitempty"`
	Shadowed      []Shadow       `json:"shadowed,omitempty"`
	// NotAnalysed: chains too long for the shadow analysis.
	NotAnalysed []string  `json:"not_analysed,omitempty"`
	Findings    []Finding `json:"findings"`
}

// Audit summarises r and lists its pitfalls. See docs/ruleset.md, "audit".
func Audit(r *Ruleset, f Facts) *AuditReport {
	if len(f.SSHPorts) == 0 {
		f.SSHPorts = []int{22}
	}
	a := &AuditReport{Findings: []Finding{}}
	owners := map[string]*OwnerSummary{}
	used := map[Source]bool{}
	for _, t := range r.Tables {
		ts := TableSummary{Table: t.ID(), Owner: t.Owner}
		if t.Owner != "" {
			o := ownerSum(owners, t.Owner)
			o.Tables++
		}
		for _, c := range t.Chains {
			ts.Chains = append(ts.Chains, ChainSummary{Name: c.Name, Hook: c.Hook, Policy: c.Policy, Owner: c.Owner, Rules: len(c.Rules)})
			ts.Rules += len(c.Rules)
			if c.Owner != "" {
				o := ownerSum(owners, c.Owner)
				o.Chains++
				o.Rules += len(c.Rules)
			}
			switch {
			case strings.HasPrefix(c.Name, "KUBE-SVC-") || t.Owner == OwnerKubeProxy && strings.HasPrefix(c.Name, "service-"):
				a.KubeServices++
			case strings.HasPrefix(c.Name, "KUBE-SEP-") || t.Owner == OwnerKubeProxy && strings.HasPrefix(c.Name, "endpoint-"):
				a.KubeEndpoints++
			}
			if len(c.Rules) > 0 || c.Base() && c.Policy != "" && c.Policy != "accept" {
				if t.Owner != OwnerLifeline {
					used[t.Source] = true
				}
			}
			if len(c.Rules) > MaxShadowRules {
				a.NotAnalysed = append(a.NotAnalysed, fmt.Sprintf("%s %s (%d rules)", t.ID(), c.Name, len(c.Rules)))
			}
			for _, s := range Shadowed(t, c) {
				a.Shadowed = append(a.Shadowed, s)
				a.add(Finding{Code: FindShadowed, Severity: "warning", Table: s.Table, Chain: s.Chain, Rule: s.RuleText,
					Why: fmt.Sprintf("rule %d can never match: rule %d (%s) catches all its packets first", s.Rule+1, s.By+1, s.ByText),
					Fix: "delete it, or move it above the rule that catches its packets"})
			}
			for _, rl := range c.Rules {
				if logs(t, rl) && !hasField(rl, "limit") {
					a.add(Finding{Code: FindLogWithoutLimit, Severity: "warning", Table: t.ID(), Chain: c.Name, Rule: rl.Text,
						Why: "a LOG rule without a limit writes one kernel log line per packet: a flood fills the disk and slows the host",
						Fix: "add a limit (iptables: -m limit --limit 5/min; nft: limit rate 5/minute) before the log"})
				}
			}
		}
		a.Rules += ts.Rules
		a.Tables = append(a.Tables, ts)
	}
	for _, o := range owners {
		a.Owners = append(a.Owners, *o)
	}
	sort.Slice(a.Owners, func(i, j int) bool { return a.Owners[i].Owner < a.Owners[j].Owner })
	for _, s := range []Source{SourceNft, SourceIptablesNft, SourceIp6tablesNft, SourceIptablesLegacy, SourceIp6tablesLegacy} {
		if used[s] {
			a.Backends = append(a.Backends, string(s))
		}
	}
	legacy := used[SourceIptablesLegacy] || used[SourceIp6tablesLegacy]
	nftSide := used[SourceNft] || used[SourceIptablesNft] || used[SourceIp6tablesNft]
	if a.Mixed = legacy && nftSide; a.Mixed {
		a.add(Finding{Code: FindMixedBackends, Severity: "error",
			Why: "rules are loaded both through iptables-legacy and through nf_tables (" + strings.Join(a.Backends, ", ") + "): each is evaluated on its own, so a rule in one never overrides a drop in the other (the classic \"my rule does nothing\")",
			Fix: "move every rule to one backend (iptables-nft or nft), then flush the other: iptables-legacy -F; iptables-legacy -X"})
	}
	a.inputFindings(r, f)
	a.dockerFinding(r)
	a.forwardFindings(r, f)
	if f.ConntrackMax > 0 && f.ConntrackCount*100 >= 80*f.ConntrackMax {
		sev := "warning"
		if f.ConntrackCount*100 >= 95*f.ConntrackMax {
			sev = "error"
		}
		a.add(Finding{Code: FindConntrackFull, Severity: sev,
			Why: fmt.Sprintf("the connection tracking table holds %d of %d entries (%.0f%%): when it is full the kernel drops the packets of new flows, new SSH logins included", f.ConntrackCount, f.ConntrackMax, 100*float64(f.ConntrackCount)/float64(f.ConntrackMax)),
			Fix: "see what fills it (lifeline conntrack HOST -v); exempt stateless traffic with notrack, shorten timeouts, or raise net.netfilter.nf_conntrack_max"})
	}
	return a
}

func ownerSum(m map[string]*OwnerSummary, owner string) *OwnerSummary {
	if m[owner] == nil {
		m[owner] = &OwnerSummary{Owner: owner}
	}
	return m[owner]
}

func (a *AuditReport) add(f Finding) { a.Findings = append(a.Findings, f) }

func hasField(r *Rule, field string) bool {
	for _, m := range r.Matches {
		if m.Field == field {
			return true
		}
	}
	return false
}

// logs reports whether a rule writes to the kernel log.
func logs(t *Table, r *Rule) bool {
	if t.Source != SourceNft {
		return r.Verdict.Kind == VerdictLog && (r.Verdict.Target == "LOG" || strings.Contains(r.Text, "-j LOG"))
	}
	for _, f := range strings.Fields(r.Text) {
		if f == "log" {
			return true
		}
	}
	return false
}

// v4/v6: which IP families a base chain sees.
func sees(t *Table, v6 bool) bool {
	switch t.Source {
	case SourceNft:
		return t.Family == "inet" || (!v6 && t.Family == "ip") || (v6 && t.Family == "ip6")
	case SourceIptablesNft, SourceIptablesLegacy:
		return !v6
	case SourceIp6tablesNft, SourceIp6tablesLegacy:
		return v6
	}
	return false
}

// filterChains returns the base chains on hook that filter family v6.
func filterChains(r *Ruleset, hook string, v6 bool) (ts []*Table, cs []*Chain) {
	for _, t := range r.Tables {
		if !sees(t, v6) || t.Owner == OwnerLifeline {
			continue
		}
		if t.Source != SourceNft && t.Name != "filter" {
			continue
		}
		for _, c := range t.Chains {
			if c.Hook == hook && (c.Type == "" || c.Type == "filter") {
				ts, cs = append(ts, t), append(cs, c)
			}
		}
	}
	return ts, cs
}
