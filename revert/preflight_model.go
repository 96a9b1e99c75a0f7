package revert

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/trace"
	"github.com/lifeline-dev/lifeline/ruleset"
)

// The model method: where the candidate matches on what the sandbox cannot
// reproduce (a uid, a cgroup, a mark, a runtime set), the kernel's verdict
// in the sandbox is not the host's, and the ruleset model
// (ruleset.EvaluateSSH) evaluates the flow over what the sandbox's kernel
// holds after the loads; a match the model cannot evaluate either leaves
// the flow undecided, with the model's reason. Never a guess.

// modelVerdict is the model's verdict on one flow; kernel is the
// sandbox's, kept in the reason.
func (f *hostFirewall) modelVerdict(ctx context.Context, sb *pfSandbox, fl *pfFlow, flow string, loads []pfLoad, kernel PathVerdict, caveats []string) PathVerdict {
	was := "passed"
	if kernel.Verdict == PreflightLockout {
		was = "dropped it (" + kernel.Decider() + ")"
	}
	why := fmt.Sprintf("the ruleset matches on what the sandbox cannot reproduce (%s); the sandbox %s", strings.Join(caveats, "; "), was)
	v := PathVerdict{Path: fl.path, Flow: flow, Verdict: PreflightUndecided, Method: PreflightModel}
	rs, err := sb.kernelRuleset(ctx, f, loads)
	if err != nil {
		v.Reason = why + "; the model could not read the sandbox's ruleset: " + err.Error()
		return v
	}
	fam := "ip"
	if fl.src.Is6() {
		fam = "ip6"
	}
	state := "new"
	sport := uint16(40000)
	if flow == FlowEstablished {
		state = "established"
		if fl.path.SrcPort > 0 {
			sport = uint16(fl.path.SrcPort)
		}
	}
	d := ruleset.EvaluateSSH(rs, ruleset.Packet{Family: fam, Iif: fl.iface, Src: fl.src, Dst: fl.dst,
		SrcPort: sport, DstPort: uint16(fl.path.Port), Proto: "tcp", State: state})
	switch d.Verdict {
	case ruleset.EvalAccept:
		v.Verdict, v.Reason = PreflightPass, why
	case ruleset.EvalDrop:
		v.Verdict, v.Reason = PreflightLockout, why
		v.Table, v.Chain, v.Policy = d.Table, d.Chain, d.Policy
		if d.Rule != nil {
			v.Rule = d.Rule.Text
			v.Line = modelLine(loads, d)
		}
	default:
		v.Reason = why + "; the model cannot decide either: " + d.Reason
	}
	return v
}

// modelLine is the operator's line of the model's deciding rule: by its
// position in the chain (iptables), or by its text (nft).
func modelLine(loads []pfLoad, d ruleset.Decision) int {
	for _, l := range loads {
		if l.what != "candidate" {
			continue
		}
		if l.ipt != nil {
			table := strings.TrimPrefix(d.Table, l.ipt.name()+" ")
			if n, ok := l.lines[table+"/"+d.Chain+"/"+strconv.Itoa(d.Index)]; ok {
				return n
			}
			continue
		}
		fam, name, _ := strings.Cut(strings.TrimPrefix(d.Table, "nft "), " ")
		return nftRuleLine(loads, TraceEvent{Family: fam, Table: name, Chain: d.Chain, Rule: strings.Join(strings.Fields(d.Rule.Text), " ")})
	}
	return 0
}

// kernelRuleset lists what the sandbox's kernel holds (nft's tables as JSON,
// each iptables backend's with its save), without lifeline's own tables,
// as one model.
func (sb *pfSandbox) kernelRuleset(ctx context.Context, f *hostFirewall, loads []pfLoad) (*ruleset.Ruleset, error) {
	var parts []*ruleset.Ruleset
	seen := map[string]bool{}
	for _, l := range loads {
		if l.ipt == nil || seen[l.ipt.name()] {
			continue
		}
		seen[l.ipt.name()] = true
		rs, err := ruleset.ParseIptablesSave(ruleset.Source(l.ipt.name()), []byte(sb.save(ctx, f, l.ipt)))
		if err != nil {
			return nil, fmt.Errorf("parse %s in the sandbox: %w", l.ipt.save(), err)
		}
		parts = append(parts, rs)
	}
	if f.has("nft") {
		var out []byte
		err := sb.s.do(func() (err error) {
			out, _, err = localExec(ctx, nil, f.tool("nft"), "-j", "list", "ruleset")
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("nft -j list ruleset in the sandbox: %w", err)
		}
		rs, err := ruleset.ParseNftJSON(out)
		if err != nil {
			return nil, fmt.Errorf("parse nft -j list ruleset in the sandbox: %w", err)
		}
		var keep []*ruleset.Table
		for _, t := range rs.Tables {
			if t.Name == pfTable || t.Name == trace.TableName || iptListed(parts, t) {
				continue // ours, or an iptables-nft table its save already gave
			}
			keep = append(keep, t)
		}
		rs.Tables = keep
		parts = append(parts, rs)
	}
	return ruleset.Merge(parts...), nil
}

func iptListed(parts []*ruleset.Ruleset, t *ruleset.Table) bool {
	for _, p := range parts {
		for _, pt := range p.Tables {
			if pt.Family == t.Family && pt.Name == t.Name {
				return true
			}
		}
	}
	return false
}
