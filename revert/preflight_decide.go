package revert

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// decide probes a failed flow again (on the spare connection, with a
// longer timeout) while nft traces it and the iptables counters count it,
// and names what dropped it.
func (f *hostFirewall) decide(ctx context.Context, sb *pfSandbox, fl *pfFlow, flow string, loads []pfLoad, first error) PathVerdict {
	v := PathVerdict{Path: fl.path, Flow: flow, Method: PreflightKernel}
	var before []string
	for _, l := range loads {
		if l.ipt != nil {
			before = append(before, sb.save(ctx, f, l.ipt))
		}
	}
	var events []TraceEvent
	var probeErr error
	if f.has("nft") {
		events, probeErr = sb.traced(ctx, f, fl, func() error { return sb.probe(fl, flow, 1, confirmTimeout) })
	} else {
		probeErr = sb.probe(fl, flow, 1, confirmTimeout)
	}
	if probeErr == nil {
		v.Verdict = PreflightPass
		v.Reason = fmt.Sprintf("the first probe failed (%v) but the second, slower one passed: a busy host, not a rule", first)
		return v
	}
	v.Verdict = PreflightLockout
	i := 0
	for _, l := range loads {
		if l.ipt == nil {
			continue
		}
		after := sb.save(ctx, f, l.ipt)
		if d, ok := iptDecider(before[i], after, l.lines); ok {
			v.Table, v.Chain, v.Rule, v.Line, v.Policy, v.Reason = l.ipt.family()+" "+d.table, d.chain, d.rule, d.line, d.policy, d.reason
			return v
		}
		i++
	}
	for _, ev := range events {
		if ev.Table == pfTable || !dropVerdict(ev.Verdict) || (ev.Kind != "rule" && ev.Kind != "policy") {
			continue
		}
		v.Table, v.Chain = ev.Family+" "+ev.Table, ev.Chain
		if ev.Kind == "policy" {
			v.Policy = true
			v.Line = nftPolicyLine(loads, ev)
		} else {
			v.Rule = ev.Rule
			v.Line = nftRuleLine(loads, ev)
		}
		return v
	}
	v.Reason = fmt.Sprintf("the flow failed in the sandbox (%v), but neither the nft trace nor the iptables counters named the rule that dropped it", probeErr)
	return v
}

func dropVerdict(v string) bool {
	w, _, _ := strings.Cut(v, " ")
	return w == "drop" || w == "reject"
}

// nftRuleLine finds the operator's line of a traced rule: the line of the
// candidate whose text is the rule as nft printed it, inside the block of
// its chain when the file has one.
func nftRuleLine(loads []pfLoad, ev TraceEvent) int {
	for _, l := range loads {
		if l.what != "candidate" || l.src == "" {
			continue
		}
		table, chain, any := "", "", 0
		for i, line := range strings.Split(l.src, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[0] == "table":
				table, chain = f[1]+" "+strings.Trim(f[2], `"{`), ""
				if len(f) == 3 && !strings.HasSuffix(f[2], "{") {
					table = "" // table F N without a block
				}
				continue
			case len(f) >= 2 && f[0] == "chain":
				chain = strings.Trim(f[1], `"{`)
				continue
			}
			text := strings.Join(f, " ")
			if text != ev.Rule {
				continue
			}
			if table == ev.Family+" "+ev.Table && chain == ev.Chain {
				return i + 1
			}
			if any == 0 {
				any = i + 1
			}
		}
		return any
	}
	return 0
}

// nftPolicyLine finds the operator's line that sets the traced chain's
// policy (0: the chain is not the file's, or its policy is the default).
func nftPolicyLine(loads []pfLoad, ev TraceEvent) int {
	for _, l := range loads {
		if l.what != "candidate" || l.src == "" {
			continue
		}
		table, chain := "", ""
		for i, line := range strings.Split(l.src, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[0] == "table":
				table, chain = f[1]+" "+strings.Trim(f[2], `"{`), ""
			case len(f) >= 2 && f[0] == "chain":
				chain = strings.Trim(f[1], `"{`)
			}
			if table == ev.Family+" "+ev.Table && chain == ev.Chain && strings.Contains(line, "policy ") {
				return i + 1
			}
		}
	}
	return 0
}

// iptRuleLines maps "table/chain/k" (k-th rule of the chain, from 1) of an
// iptables load file to the operator's line.
func iptRuleLines(lf *loadFile) map[string]int {
	m := map[string]int{}
	n := map[string]int{}
	table := ""
	for _, l := range lf.lines {
		t := strings.TrimSpace(l.text)
		if name, ok := strings.CutPrefix(t, "*"); ok {
			table = name
			continue
		}
		if rest, ok := strings.CutPrefix(t, ":"); ok && l.origin > 0 {
			m[table+"/"+strings.Fields(rest)[0]+"/0"] = l.origin // the chain's policy
			continue
		}
		if rest, ok := strings.CutPrefix(t, "-A "); ok {
			chain := strings.Fields(rest)[0]
			key := table + "/" + chain
			n[key]++
			m[key+"/"+strconv.Itoa(n[key])] = l.origin
		}
	}
	return m
}

// ---- naming the rule from iptables counters ----

type iptDecision struct {
	table, chain, rule string
	line               int
	policy             bool
	reason             string
}

var iptCountRE = regexp.MustCompile(`^\[(\d+):\d+\] (.*)$`)
var iptPolicyRE = regexp.MustCompile(`^:(\S+) (\S+) \[(\d+):\d+\]$`)

type iptCount struct {
	table, chain, text string
	k                  int // k-th rule of the chain, from 1; 0 for a policy
	policy             string
	pkts               int64
}

func iptCounts(save string) []iptCount {
	var out []iptCount
	table := ""
	n := map[string]int{}
	for _, l := range strings.Split(save, "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "*"); ok {
			table = name
			continue
		}
		if m := iptPolicyRE.FindStringSubmatch(l); m != nil {
			p, _ := strconv.ParseInt(m[3], 10, 64)
			out = append(out, iptCount{table: table, chain: m[1], policy: m[2], pkts: p})
			continue
		}
		if m := iptCountRE.FindStringSubmatch(l); m != nil {
			rest, ok := strings.CutPrefix(m[2], "-A ")
			if !ok {
				continue
			}
			chain := strings.Fields(rest)[0]
			n[table+"/"+chain]++
			p, _ := strconv.ParseInt(m[1], 10, 64)
			out = append(out, iptCount{table: table, chain: chain, text: m[2], k: n[table+"/"+chain], pkts: p})
		}
	}
	return out
}

// iptTableOrder is the order the tables see a packet in (hook priority).
var iptTableOrder = map[string]int{"raw": 0, "mangle": 1, "nat": 2, "filter": 3, "security": 4}

// iptDecider names the rule (DROP or REJECT) or the chain policy (DROP)
// whose packet counter rose between two saves: what dropped the probe.
func iptDecider(before, after string, lines map[string]int) (iptDecision, bool) {
	b := iptCounts(before)
	a := iptCounts(after)
	if len(a) != len(b) {
		return iptDecision{}, false
	}
	var rules, policies, nat []int
	for i := range a {
		if a[i].pkts <= b[i].pkts {
			continue
		}
		switch tgt := ruleTarget(a[i].text); {
		case a[i].k > 0 && (tgt == "DROP" || tgt == "REJECT"):
			rules = append(rules, i)
		case a[i].k > 0 && (tgt == "DNAT" || tgt == "REDIRECT"):
			nat = append(nat, i)
		case a[i].k == 0 && a[i].policy == "DROP":
			policies = append(policies, i)
		}
	}
	order := func(is []int) {
		slices.SortStableFunc(is, func(x, y int) int { return iptTableOrder[a[x].table] - iptTableOrder[a[y].table] })
	}
	order(rules)
	order(policies)
	if len(rules) > 0 {
		c := a[rules[0]]
		return iptDecision{table: c.table, chain: c.chain, rule: c.text, line: lines[c.table+"/"+c.chain+"/"+strconv.Itoa(c.k)]}, true
	}
	if len(policies) > 0 {
		c := a[policies[0]]
		return iptDecision{table: c.table, chain: c.chain, policy: true, line: lines[c.table+"/"+c.chain+"/0"]}, true
	}
	if len(nat) > 0 {
		c := a[nat[0]]
		return iptDecision{table: c.table, chain: c.chain, rule: c.text, line: lines[c.table+"/"+c.chain+"/"+strconv.Itoa(c.k)],
			reason: "the rule redirects the connection away from sshd"}, true
	}
	return iptDecision{}, false
}
