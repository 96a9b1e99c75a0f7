package ruleset

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Packet is one packet of the operator's SSH path as the host sees it.
type Packet struct {
	Family           string // "ip" or "ip6"
	Iif, Oif         string // input / output interface names ("" = unknown)
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            string // "tcp"
	State            string // conntrack state: "new" or "established"
}

// Decision is how the ruleset treats one packet.
type Decision struct {
	Verdict string // "accept", "drop" (also reject), or "undecided"
	Table   string // Table.ID() of the deciding table ("" when accepted by all); undecided: the uncertain rule's
	Chain   string // deciding chain (undecided: the uncertain rule's)
	Rule    *Rule  // deciding rule; nil when a policy decided (Policy true) or accepted by all; undecided: the uncertain rule
	// Index is the deciding rule's 1-based position in Chain (0 without
	// a Rule): nft rules have no line, this names them.
	Index  int
	Policy bool
	Reason string   // for "undecided": exactly what could not be evaluated (the match and rule)
	Path   []string // "table/chain" visited, for explanations
}

// Decision verdicts.
const (
	EvalAccept    = "accept"
	EvalDrop      = "drop"
	EvalUndecided = "undecided"
)

// String names the verdict and what decided it: the table, the chain, the
// rule's text and its line (iptables) or position and handle (nft).
func (d Decision) String() string {
	switch {
	case d.Verdict == EvalUndecided:
		return "undecided: " + d.Reason
	case d.Verdict == EvalAccept && d.Table == "":
		return "accept: every base chain on the path lets it through"
	case d.Policy:
		return fmt.Sprintf("%s by the policy of %s chain %s", d.Verdict, d.Table, d.Chain)
	case d.Rule != nil:
		return fmt.Sprintf("%s by %s", d.Verdict, ruleRef(d.Table, d.Chain, d.Index, d.Rule))
	}
	return fmt.Sprintf("%s in %s chain %s", d.Verdict, d.Table, d.Chain)
}

// ruleRef names a rule for a person: `nft inet filter chain input rule 3
// (handle 7): "tcp dport 22 drop"`, `iptables-legacy filter chain INPUT
// rule 2 (line 9): "-p tcp --dport 22 -j DROP"`.
func ruleRef(table, chain string, index int, r *Rule) string {
	s := fmt.Sprintf("%s chain %s rule %d", table, chain, index)
	switch {
	case r.Line > 0:
		s += fmt.Sprintf(" (line %d)", r.Line)
	case r.Handle > 0:
		s += fmt.Sprintf(" (handle %d)", r.Handle)
	}
	return s + fmt.Sprintf(": %q", r.Text)
}

// EvaluateSSH evaluates the SSH path both ways: the client's packet in
// (Evaluate "input") and the server's reply out (src/dst and ports swapped,
// "output"); the first non-accept decides.
//
// The reply is an established packet whatever p's state (conntrack has
// seen the client's packet by then) and leaves through the interface p
// came in on (symmetric routing).
func EvaluateSSH(rs *Ruleset, p Packet) Decision {
	in := Evaluate(rs, "input", p)
	if in.Verdict != EvalAccept {
		return in
	}
	reply := Packet{Family: p.Family, Oif: p.Iif, Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort, Proto: p.Proto, State: "established"}
	out := Evaluate(rs, "output", reply)
	out.Path = append(append([]string{}, in.Path...), out.Path...)
	return out
}

// Evaluate follows p through every base chain of every table of rs on the
// hooks it crosses (inbound to a local socket: prerouting then input, by
// priority, across all tables and sources, as the kernel does: an accept ends
// only that base chain; a drop/reject anywhere ends the packet), jumps/gotos/
// returns into regular chains, policies. The first drop decides; "undecided"
// when a rule that could decide has a match the model cannot evaluate for p
// (Field "other", set lookups whose elements are not in rs, marks, limits
// treated as may-match -> undecided only if the outcome depends on it).
//
// hook is "input" (ingress, prerouting, input) or "output" (output,
// postrouting, egress); anything else is undecided. Evaluate only reads
// rs: calls may run concurrently on one Ruleset. See docs/ruleset.md,
// "Evaluating a path", for what the model knows and what it does not.
func Evaluate(rs *Ruleset, hook string, p Packet) Decision {
	hooks, ok := evalHooks[hook]
	if !ok {
		return Decision{Verdict: EvalUndecided, Reason: fmt.Sprintf("unknown hook %q (want input or output)", hook)}
	}
	if p.Family != "ip" && p.Family != "ip6" {
		return Decision{Verdict: EvalUndecided, Reason: fmt.Sprintf("unknown packet family %q (want ip or ip6)", p.Family)}
	}
	e := &evaluator{rs: rs, p: p, inbound: hook == "input", budget: evalBudget, memo: map[string]Decision{}}
	if p.Family == "ip" {
		e.p.Src, e.p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	}
	e.p.Proto = strings.ToLower(e.p.Proto)
	e.p.State = strings.ToLower(e.p.State)
	if e.inbound {
		e.p.Oif = "" // a packet on its way in has no output interface yet
	} else {
		e.p.Iif = ""
	}
	e.bases = baseChains(rs, hooks, p.Family)
	return e.run(evalState{})
}

var evalHooks = map[string][]string{
	"input":  {"ingress", "prerouting", "input"},
	"output": {"output", "postrouting", "egress"},
}

// evalBudget bounds the rules one Evaluate visits over all the branches
// uncertain matches open.
const evalBudget = 200000

// maxJumpDepth is deeper than the kernel allows (16 for nft): a deeper
// path is a loop the kernel would have refused.
const maxJumpDepth = 32

type baseChain struct {
	t    *Table
	c    *Chain
	hook int // index in the hook list
}

// baseChains lists the base chains p crosses, in the kernel's order: by
// hook, then priority; equal priorities (whose order the kernel keeps by
// registration) by table and chain name, so the result never depends on
// the order of rs.Tables.
func baseChains(rs *Ruleset, hooks []string, family string) []baseChain {
	viaIpt := map[string]bool{}
	for _, t := range rs.Tables {
		if t.Source == SourceIptablesNft || t.Source == SourceIp6tablesNft {
			viaIpt[t.Family+" "+t.Name] = true
		}
	}
	var out []baseChain
	for _, t := range rs.Tables {
		if !tableSees(t, family) || t.Source == SourceNft && viaIpt[t.Family+" "+t.Name] {
			continue
		}
		for _, c := range t.Chains {
			for i, h := range hooks {
				if c.Hook == h {
					out = append(out, baseChain{t, c, i})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.hook != b.hook {
			return a.hook < b.hook
		}
		if a.c.Priority != b.c.Priority {
			return a.c.Priority < b.c.Priority
		}
		if a.t.ID() != b.t.ID() {
			return a.t.ID() < b.t.ID()
		}
		return a.c.Name < b.c.Name
	})
	return out
}

// tableSees: the table's base chains see packets of that family.
func tableSees(t *Table, family string) bool {
	switch t.Source {
	case SourceNft:
		return t.Family == "inet" || t.Family == "netdev" || t.Family == family
	case SourceIptablesNft, SourceIptablesLegacy:
		return family == "ip"
	case SourceIp6tablesNft, SourceIp6tablesLegacy:
		return family == "ip6"
	}
	return false
}

type evaluator struct {
	rs      *Ruleset
	p       Packet
	inbound bool
	bases   []baseChain
	budget  int
	cur     baseChain // the base chain whose rules are being matched
	memo    map[string]Decision
}

type frame struct {
	t *Table
	c *Chain
	i int // next rule
}

// evalState is where one branch of the evaluation stands. It is copied
// when an uncertain match forks the evaluation.
type evalState struct {
	base    int     // index in bases
	stack   []frame // stack[0]: the base chain (or the chain it went to)
	path    []string
	entered bool // stack is live for bases[base]
}

func (s evalState) clone() evalState {
	s.stack = append([]frame(nil), s.stack...)
	s.path = append([]string(nil), s.path...)
	return s
}

// action is one thing a rule may do with p.
type action struct {
	kind   string // a Verdict kind, or "" for: the rule does not apply
	target string
	nat    string // the nat target, for kind nat
}

var actContinue = action{}

func undecided(s evalState, reason string) Decision {
	return Decision{Verdict: EvalUndecided, Reason: reason, Path: s.path}
}

// undecidedBy: rule r (at top) makes the outcome unknown.
func undecidedBy(s evalState, top frame, r *Rule, why string) Decision {
	return Decision{Verdict: EvalUndecided, Table: top.t.ID(), Chain: top.c.Name, Rule: r, Index: top.i,
		Reason: ruleRef(top.t.ID(), top.c.Name, top.i, r) + ": " + why, Path: s.path}
}
