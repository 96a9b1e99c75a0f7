package ruleset

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
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

// run evaluates from state s to the end. A state reached again by
// another branch (both sides of an uncertain jump that returns meet again)
// is evaluated once: the rest of the walk depends on nothing else.
func (e *evaluator) run(s evalState) Decision {
	key := s.key()
	if d, ok := e.memo[key]; ok {
		d.Path = append(append([]string(nil), s.path...), d.Path...)
		return d
	}
	n := len(s.path)
	d := e.walk(s)
	m := d
	if len(d.Path) >= n {
		m.Path = append([]string(nil), d.Path[n:]...)
	}
	e.memo[key] = m
	return d
}

// key identifies where s stands (not how it got there).
func (s evalState) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%t", s.base, s.entered)
	for _, f := range s.stack {
		fmt.Fprintf(&b, "/%p:%d", f.c, f.i)
	}
	return b.String()
}

func (e *evaluator) walk(s evalState) Decision {
	for {
		if e.budget--; e.budget < 0 {
			return undecided(s, fmt.Sprintf("too many uncertain matches to follow (more than %d rule visits)", evalBudget))
		}
		if !s.entered {
			if s.base == len(e.bases) {
				return Decision{Verdict: EvalAccept, Path: s.path}
			}
			b := e.bases[s.base]
			applies, why := e.chainApplies(b)
			switch applies {
			case triFalse:
				s.base++
				continue
			case triUnknown:
				skip := s.clone()
				skip.base++
				enter := s.clone()
				enter.enter(b)
				return e.fork(Decision{Verdict: EvalUndecided, Table: b.t.ID(), Chain: b.c.Name, Reason: why}, []evalState{enter, skip})
			}
			s.enter(b)
		}
		b := e.bases[s.base]
		top := &s.stack[len(s.stack)-1]
		if top.i >= len(top.c.Rules) {
			if s.pop() {
				if d, done := s.policy(b); done {
					return d
				}
			}
			continue
		}
		r := top.c.Rules[top.i]
		top.i++
		e.cur = b
		acts, why := e.actions(top.t, r)
		if len(acts) == 1 {
			if d, done := e.apply(&s, acts[0], r); done {
				return d
			}
			continue
		}
		who := Decision{Verdict: EvalUndecided, Table: top.t.ID(), Chain: top.c.Name, Rule: r, Index: top.i,
			Reason: fmt.Sprintf("%s: %s", ruleRef(top.t.ID(), top.c.Name, top.i, r), why)}
		return e.forkActions(who, s, acts, r)
	}
}

// forkActions evaluates each possible action of an uncertain rule from
// state s; the outcome is certain only if every branch gives the same
// verdict.
func (e *evaluator) forkActions(who Decision, s evalState, acts []action, r *Rule) Decision {
	ds := make([]Decision, len(acts))
	for i, a := range acts {
		b := s.clone()
		if d, done := e.apply(&b, a, r); done {
			ds[i] = d
		} else {
			ds[i] = e.run(b)
		}
	}
	return merge(who, ds)
}

// fork evaluates each branch state; see forkActions.
func (e *evaluator) fork(who Decision, states []evalState) Decision {
	ds := make([]Decision, len(states))
	for i, b := range states {
		ds[i] = e.run(b)
	}
	return merge(who, ds)
}

// merge: the branches' common verdict (the first branch, where the
// uncertain rule does not apply, tells what decided), or who: undecided,
// naming the uncertain rule and match.
func merge(who Decision, ds []Decision) Decision {
	first := ds[0]
	same := true
	for _, d := range ds[1:] {
		if d.Verdict != first.Verdict || d.Verdict == EvalUndecided && d.Reason != first.Reason {
			same = false
		}
	}
	if same {
		return first
	}
	d := who
	d.Path = first.Path
	reason := who.Reason
	for _, x := range ds {
		// The outcome depends on this rule; the first later uncertainty
		// on a branch is worth naming too (only its own clause).
		if x.Verdict == EvalUndecided {
			other, _, _ := strings.Cut(x.Reason, reasonSep)
			if other != reason {
				d.Reason += reasonSep + other
				break
			}
		}
	}
	return d
}

// reasonSep joins the uncertain match that decides to the next one.
const reasonSep = "; and "

func (s *evalState) enter(b baseChain) {
	s.entered = true
	s.stack = []frame{{t: b.t, c: b.c}}
	s.path = append(s.path, b.t.ID()+"/"+b.c.Name)
}

// pop leaves the top chain; true when the base chain itself ended (its
// policy decides).
func (s *evalState) pop() bool {
	s.stack = s.stack[:len(s.stack)-1]
	return len(s.stack) == 0
}

// policy ends base chain b: a drop policy decides, accept moves on.
func (s *evalState) policy(b baseChain) (Decision, bool) {
	if b.c.Policy == VerdictDrop {
		return Decision{Verdict: EvalDrop, Table: b.t.ID(), Chain: b.c.Name, Policy: true, Path: s.path}, true
	}
	s.next()
	return Decision{}, false
}

func (s *evalState) next() {
	s.entered = false
	s.stack = nil
	s.base++
}

// apply does a with the packet in state s; done when it decides.
func (e *evaluator) apply(s *evalState, a action, r *Rule) (Decision, bool) {
	b := e.bases[s.base]
	top := s.stack[len(s.stack)-1]
	decided := func(verdict string) Decision {
		return Decision{Verdict: verdict, Table: top.t.ID(), Chain: top.c.Name, Rule: r, Index: top.i, Path: s.path}
	}
	switch a.kind {
	case "":
		return Decision{}, false
	case VerdictAccept:
		s.next()
	case VerdictDrop, VerdictReject:
		return decided(EvalDrop), true
	case VerdictReturn:
		if s.pop() {
			return s.policy(b)
		}
	case VerdictJump, VerdictGoto:
		sub := top.t.Chain(a.target)
		if sub == nil {
			return undecidedBy(*s, top, r, fmt.Sprintf("%s to chain %s, which is not in the ruleset", a.kind, a.target)), true
		}
		if len(s.stack) >= maxJumpDepth {
			return undecidedBy(*s, top, r, fmt.Sprintf("jumps nest deeper than %d (a loop?)", maxJumpDepth)), true
		}
		if a.kind == VerdictGoto {
			s.stack = s.stack[:len(s.stack)-1]
		}
		s.stack = append(s.stack, frame{t: top.t, c: sub})
		s.path = append(s.path, top.t.ID()+"/"+sub.Name)
	case VerdictNat:
		switch strings.ToLower(a.nat) {
		case "snat", "masquerade":
			// Source NAT keeps the destination: for the filter it is an
			// accept of this base chain.
			s.next()
		default:
			return undecidedBy(*s, top, r, strings.ToUpper(a.nat)+" rewrites the destination of the path: the packet may no longer reach the local socket"), true
		}
	case VerdictQueue:
		return undecidedBy(*s, top, r, "queues the packet to a userspace program, which decides"), true
	default:
		return undecidedBy(*s, top, r, "target "+a.target+" is not part of the model"), true
	}
	return Decision{}, false
}

// nonTerminalTargets are iptables targets (and nft xt targets) that change
// the packet or its metadata and let it go on through the chain.
var nonTerminalTargets = map[string]bool{
	"MARK": true, "CONNMARK": true, "CT": true, "NOTRACK": true, "TRACE": true, "TCPMSS": true,
	"CHECKSUM": true, "DSCP": true, "TOS": true, "ECN": true, "TTL": true, "HL": true, "CLASSIFY": true,
	"SECMARK": true, "CONNSECMARK": true, "SET": true, "AUDIT": true, "LED": true, "IDLETIMER": true,
	"RATEEST": true, "TEE": true, "HMARK": true, "LOG": true, "NFLOG": true, "ULOG": true, "TCPOPTSTRIP": true,
}

// ruleVerdict is the action of r when it applies.
func ruleVerdict(r *Rule) []action {
	v := r.Verdict
	switch v.Kind {
	case VerdictNone, VerdictLog, VerdictContinue:
		return []action{actContinue}
	case VerdictOther:
		if nonTerminalTargets[strings.ToUpper(v.Target)] {
			return []action{actContinue}
		}
		return []action{{kind: VerdictOther, target: v.Target}}
	case VerdictNat:
		return []action{{kind: VerdictNat, nat: v.Target}}
	}
	return []action{{kind: v.Kind, target: v.Target}}
}

// vmapActions: what a verdict map does with p. When the map's key is one
// the model reads and its elements are in rs, exact is true and acts holds
// the one action (the entry the key finds, or none: the rule does not
// apply). Otherwise acts holds every verdict the map may give and no
// verdict (the key is not in the map).
func (e *evaluator) vmapActions(t *Table, r *Rule) (acts []action, exact bool) {
	var entries []string
	before, after, ok := strings.Cut(r.Text, " vmap ")
	dynamic := false
	switch {
	case !ok:
	case strings.HasPrefix(after, "@"):
		name := strings.Fields(after)[0][1:]
		found := false
		for _, s := range t.Sets {
			if s.Name == name {
				found, entries = true, s.Elements
				dynamic = contains(s.Flags, "dynamic") || filledByRules(t, name)
			}
		}
		if !found {
			// A map that is not in rs: nothing is known of it.
			return []action{actContinue, {kind: VerdictOther, target: "vmap @" + name}}, false
		}
	case strings.HasPrefix(after, "{"):
		body, _, _ := strings.Cut(after[1:], "}")
		entries = strings.Split(body, ",")
	}
	parsed := make([][2]string, 0, len(entries))
	for _, en := range entries {
		en, _, _ = strings.Cut(en, " comment ")
		k, v, ok := strings.Cut(en, " : ")
		if ok {
			parsed = append(parsed, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	if keys := keysBefore(before); keys != nil && !dynamic {
		if a, ok := e.vmapLookup(keys, parsed); ok {
			return []action{a}, true
		}
	}
	acts = []action{actContinue}
	seen := map[action]bool{actContinue: true}
	for _, kv := range parsed {
		a := vmapVerdict(kv[1])
		if !seen[a] {
			seen[a] = true
			acts = append(acts, a)
		}
	}
	return acts, false
}

// vmapVerdict reads a verdict map's value ("accept", "goto chain").
func vmapVerdict(v string) action {
	f := strings.Fields(v)
	if len(f) == 0 {
		return action{kind: VerdictOther, target: "vmap"}
	}
	a := action{kind: f[0]}
	if len(f) > 1 {
		a.target = f[1]
	}
	switch a.kind {
	case VerdictContinue:
		return actContinue
	case VerdictAccept, VerdictDrop, VerdictReturn, VerdictJump, VerdictGoto:
		return a
	}
	return action{kind: VerdictOther, target: "vmap " + v}
}

// vmapLookup finds p's key among a map's entries; false when p's key or an
// entry is not one the model reads.
func (e *evaluator) vmapLookup(keys []string, entries [][2]string) (action, bool) {
	vals, kinds, miss, ok := e.keyValues(keys)
	if !ok {
		return action{}, false
	}
	if miss {
		return actContinue, true
	}
	for _, kv := range entries {
		in, ok := e.elemMatches(kv[0], vals, kinds)
		if !ok {
			return action{}, false
		}
		if in {
			return vmapVerdict(kv[1]), true
		}
	}
	return actContinue, true
}

// actions: what r may do with p, and why when more than one.
func (e *evaluator) actions(t *Table, r *Rule) ([]action, string) {
	verdicts := ruleVerdict(r)
	vmapExact := true
	if r.Verdict.Kind == VerdictOther && r.Verdict.Target == "vmap" {
		verdicts, vmapExact = e.vmapActions(t, r)
	}
	if len(verdicts) == 1 && verdicts[0] == actContinue {
		return verdicts, "" // whether it matches changes nothing
	}
	m, why := e.ruleMatches(t, r)
	switch m {
	case triFalse:
		return []action{actContinue}, ""
	case triTrue:
		if !vmapExact {
			return verdicts, "a verdict map decides by a key the model does not look up"
		}
		return verdicts, ""
	}
	if verdicts[0] != actContinue {
		verdicts = append([]action{actContinue}, verdicts...)
	}
	return verdicts, why
}

type tri int

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// ruleMatches: whether every match of r holds for p.
func (e *evaluator) ruleMatches(t *Table, r *Rule) (tri, string) {
	if t.Source == SourceNft && t.Family != "ip" && t.Family != "ip6" {
		if fam := nftRuleFamily(r); fam != "" && fam != e.p.Family {
			// nft adds "meta nfproto" before an ip or ip6 header match in
			// an inet table: the rule does not apply to the other family,
			// whatever its matches say (ip protocol tcp, ip dscp ...).
			return triFalse, ""
		}
	}
	res, why := triTrue, ""
	setIdx := 0
	for _, m := range r.Matches {
		var v tri
		var w string
		if m.Field == "set" {
			v, w = e.setMatch(t, r, m, setIdx)
			setIdx++
		} else {
			v, w = e.match(t, m)
		}
		switch v {
		case triFalse:
			return triFalse, ""
		case triUnknown:
			if res == triTrue {
				res, why = triUnknown, w
			}
		}
	}
	if res == triTrue {
		if w := unmodelledStatement(r); w != "" {
			return triUnknown, w
		}
	}
	return res, why
}

// unmodelledStatement: a statement of an nft rule that conditions it
// without being a match (a quota), or one the parser kept as JSON.
func unmodelledStatement(r *Rule) string {
	text := r.Text
	if r.Comment != "" {
		text = strings.TrimSuffix(text, " comment "+quote(r.Comment))
	}
	for _, f := range strings.Fields(text) {
		if f == "quota" {
			return "a quota may or may not be used up"
		}
		if strings.HasPrefix(f, `{"`) {
			return "statement " + f + " is not part of the model"
		}
	}
	return ""
}

// negated applies a match's negation to a known result.
func negated(v tri, neg bool) tri {
	if v == triUnknown || !neg {
		return v
	}
	return triOf(v == triFalse)
}

func (e *evaluator) match(t *Table, m Match) (tri, string) {
	p := e.p
	desc := matchText(m)
	switch m.Field {
	case "l4proto":
		if p.Proto == "" {
			return triUnknown, desc + ": the packet's protocol is unknown"
		}
		hit := false
		for _, x := range items(m.Value) {
			if x == "all" || protoNumber(x) == protoNumber(p.Proto) {
				hit = true
			}
		}
		return negated(triOf(hit), m.Negate), ""
	case "saddr", "daddr":
		a, which := p.Src, "source"
		if m.Field == "daddr" {
			a, which = p.Dst, "destination"
		}
		return addrMatch(m, a, which, p.Family)
	case "sport", "dport":
		port := p.SrcPort
		if m.Field == "dport" {
			port = p.DstPort
		}
		if p.Proto == "" {
			return triUnknown, desc + ": the packet's protocol is unknown"
		}
		if !hasPorts(p.Proto) {
			return triFalse, ""
		}
		vals := items(m.Value)
		for _, x := range vals {
			if _, _, ok := portRange(x); !ok {
				return triUnknown, desc + ": port " + x + " is not a number"
			}
		}
		return negated(triOf(portIn(m.Value, int(port))), m.Negate), ""
	case "iif", "oif":
		name := p.Iif
		if m.Field == "oif" {
			name = p.Oif
		}
		known := name != "" || m.Field == "iif" && !e.inbound || m.Field == "oif" && e.inbound
		hit := false
		for _, x := range items(m.Value) {
			x = strings.Trim(x, `"`)
			if !known {
				// A packet from another host does not come in on
				// loopback.
				if x == "lo" && m.Field == "iif" && p.Src.IsValid() && !p.Src.IsLoopback() {
					continue
				}
				return triUnknown, desc + ": the packet's " + map[string]string{"iif": "input", "oif": "output"}[m.Field] + " interface is unknown"
			}
			if ifaceMatch(x, name) {
				hit = true
			}
		}
		return negated(triOf(hit), m.Negate), ""
	case "ct state":
		if e.beforeConntrack() {
			// No conntrack entry yet: nft and iptables see "invalid".
			return negated(triOf(contains(items(m.Value), "invalid")), m.Negate), ""
		}
		if p.State == "" {
			return triUnknown, desc + ": the packet's conntrack state is unknown"
		}
		vals := items(m.Value)
		if contains(vals, p.State) {
			return negated(triTrue, m.Negate), ""
		}
		if contains(vals, "snat") || contains(vals, "dnat") {
			return triUnknown, desc + ": whether the connection is NATed is not part of the model"
		}
		return negated(triFalse, m.Negate), ""
	case "icmp type":
		if p.Proto != "" && protoNumber(p.Proto) != 1 && protoNumber(p.Proto) != 58 {
			return triFalse, "" // an icmp type match implies the protocol
		}
		return triUnknown, desc + ": icmp types are not part of the packet"
	case "limit":
		return triUnknown, desc + ": a rate limit may or may not match"
	case "mark":
		return triUnknown, desc + ": the packet's mark is not part of the model (it may be set elsewhere)"
	case "other":
		return e.otherMatch(m)
	}
	return triUnknown, desc + ": this match is not part of the model"
}

func matchText(m Match) string {
	s := m.Field
	if m.Field == "other" || m.Field == "set" {
		s = ""
	}
	if m.Negate {
		s += " !"
	}
	return strings.TrimSpace(s + " " + m.Value)
}

// beforeConntrack: the chain runs before conntrack has looked at the
// packet (raw priority, -300, on prerouting and output; ingress).
func (e *evaluator) beforeConntrack() bool {
	switch e.cur.c.Hook {
	case "ingress":
		return true
	case "prerouting", "output":
		return e.cur.c.Priority < -200
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

var protoNumbers = map[string]int{"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136, "dccp": 33}

func protoNumber(s string) int {
	if n, ok := protoNumbers[s]; ok {
		return n
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return -1
}

func hasPorts(proto string) bool {
	switch protoNumber(proto) {
	case 6, 17, 132, 136, 33:
		return true
	}
	return false
}

// ifaceMatch: an interface name pattern as written (iptables "eth+", nft
// "eth*") matches name.
func ifaceMatch(pat, name string) bool {
	if strings.HasSuffix(pat, "+") || strings.HasSuffix(pat, "*") && !strings.HasSuffix(pat, `\*`) {
		return strings.HasPrefix(name, pat[:len(pat)-1])
	}
	return strings.ReplaceAll(pat, `\*`, "*") == name
}

// addrMatch: an address match value (address, prefix, range, or a set of
// them) holds for a. A value of the other family never matches, negated or
// not (`ip saddr != x` implies IPv4).
func addrMatch(m Match, a netip.Addr, which, family string) (tri, string) {
	vals := items(m.Value)
	if len(vals) == 0 {
		return triUnknown, matchText(m) + ": no address"
	}
	hit := false
	for _, x := range vals {
		in, fam, ok := addrIn(x, a)
		if !ok {
			return triUnknown, matchText(m) + ": " + x + " is not an address"
		}
		if fam != family {
			return triFalse, ""
		}
		if !a.IsValid() {
			return triUnknown, matchText(m) + ": the packet's " + which + " address is unknown"
		}
		hit = hit || in
	}
	return negated(triOf(hit), m.Negate), ""
}

// addrIn: element x (address, prefix, "lo-hi" range) holds a; fam is x's
// family ("ip"/"ip6").
func addrIn(x string, a netip.Addr) (in bool, fam string, ok bool) {
	famOf := func(b netip.Addr) string {
		if b.Is4() {
			return "ip"
		}
		return "ip6"
	}
	if lo, hi, isRange := strings.Cut(x, "-"); isRange {
		l, err1 := netip.ParseAddr(lo)
		h, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil || l.Is4() != h.Is4() {
			return false, "", false
		}
		return a.IsValid() && a.Is4() == l.Is4() && l.Compare(a) <= 0 && a.Compare(h) <= 0, famOf(l), true
	}
	pfx, ok := prefixOf(x)
	if !ok {
		return false, "", false
	}
	return a.IsValid() && a.Is4() == pfx.Addr().Is4() && pfx.Contains(a), famOf(pfx.Addr()), true
}

// otherMatch interprets the few "other" matches whose answer follows from
// what Evaluate models; anything else is unknown, with the reason.
func (e *evaluator) otherMatch(m Match) (tri, string) {
	p := e.p
	v := strings.Join(strings.Fields(m.Value), " ")
	if m.Negate {
		// iptables keeps the "!" in the text of a match it does not
		// interpret, and says it in Negate too; nft's "!=" is in the text
		// only.
		v = strings.Replace(v, " ! ", " ", 1)
	}
	desc := matchText(m)
	switch {
	case strings.HasPrefix(v, "meta nfproto "):
		want := strings.TrimPrefix(v, "meta nfproto ")
		neg := m.Negate
		if w, ok := strings.CutPrefix(want, "!= "); ok {
			want, neg = w, !neg
		}
		fam := map[string]string{"ipv4": "ip", "ipv6": "ip6"}[want]
		if fam == "" {
			break
		}
		return negated(triOf(fam == p.Family), neg), ""
	case strings.HasPrefix(v, "tcp flags ") || strings.HasPrefix(v, "tcp --tcp-flags ") || v == "tcp --syn":
		if protoNumber(p.Proto) != 6 && p.Proto != "" {
			return triFalse, ""
		}
		test, ok := tcpFlagsTest(v)
		if !ok || p.Proto == "" {
			break
		}
		// The first packet of a connection is a lone SYN; a later one
		// carries ACK, with PSH when it holds data (the server's reply,
		// the client's keystrokes).
		var seen []tri
		switch p.State {
		case "new":
			seen = []tri{triOf(test(tcpSYN))}
		case "established":
			seen = []tri{triOf(test(tcpACK)), triOf(test(tcpACK | tcpPSH))}
		default:
			break
		}
		if len(seen) == 0 {
			break
		}
		if len(seen) == 2 && seen[0] != seen[1] {
			return triUnknown, desc + ": an established packet carries ACK, with or without PSH, and the model does not know which"
		}
		return negated(seen[0], m.Negate), ""
	case strings.HasPrefix(v, "meta pkttype ") || strings.HasPrefix(v, "pkttype --pkt-type "):
		// Inbound, the path is unicast to this host.
		if !e.inbound {
			break
		}
		rest := v[strings.LastIndex(v, " ")+1:]
		neg := m.Negate
		if strings.HasPrefix(v, "meta pkttype ") {
			rest = strings.TrimPrefix(v, "meta pkttype ")
			if r, ok := strings.CutPrefix(rest, "!= "); ok {
				rest, neg = r, !neg
			}
		}
		hit := false
		for _, x := range items(strings.ReplaceAll(rest, " ", "")) {
			if x == "host" || x == "unicast" {
				hit = true
			}
		}
		return negated(triOf(hit), neg), ""
	case v == "ct status dnat" && (p.State == "new" || !e.hasDNAT()):
		// A new connection is DNATed only by a nat rule on this path,
		// which would have left the outcome undecided already; an
		// established one only if the ruleset DNATs at all.
		return negated(triFalse, m.Negate), ""
	case strings.HasPrefix(v, "fib daddr type ") || strings.HasPrefix(v, "addrtype --dst-type "):
		// Inbound, the path ends at a local socket; outbound, it goes
		// to the client's unicast address.
		typ := "unicast"
		if e.inbound {
			typ = "local"
		}
		neg := m.Negate
		rest := v[strings.LastIndex(v, "type ")+len("type "):]
		if r, ok := strings.CutPrefix(rest, "!= "); ok {
			rest, neg = r, !neg
		}
		if strings.Contains(rest, "@") || strings.ContainsAny(rest, "/&|") {
			break
		}
		hit := false
		for _, x := range items(strings.ReplaceAll(rest, " ", "")) {
			if strings.EqualFold(x, typ) {
				hit = true
			}
		}
		return negated(triOf(hit), neg), ""
	case e.inbound && strings.HasPrefix(v, "fib saddr . ") && strings.HasSuffix(v, " oif missing"):
		// Reverse path filter: the client's address routes back through
		// the interface it came in on, as a working SSH session needs.
		return negated(triFalse, m.Negate), ""
	case strings.HasPrefix(v, "iprange --src-range ") || strings.HasPrefix(v, "iprange --dst-range "):
		a := p.Src
		if strings.HasPrefix(v, "iprange --dst-range ") {
			a = p.Dst
		}
		rng := strings.Fields(v)[2]
		in, fam, ok := addrIn(rng, a)
		if !ok || !a.IsValid() {
			break
		}
		if fam != p.Family {
			return triFalse, ""
		}
		return negated(triOf(in), m.Negate), ""
	case strings.HasPrefix(v, "multiport --ports "):
		if p.Proto == "" {
			break
		}
		if !hasPorts(p.Proto) {
			return triFalse, ""
		}
		ports := portValue(strings.Fields(v)[2])
		return negated(triOf(portIn(ports, int(p.SrcPort)) || portIn(ports, int(p.DstPort))), m.Negate), ""
	case strings.HasPrefix(v, "meta skuid") || strings.HasPrefix(v, "meta skgid") || strings.HasPrefix(v, "skuid") || strings.HasPrefix(v, "skgid") || strings.HasPrefix(v, "owner "):
		return triUnknown, desc + ": the owner of the sending socket is not part of the model"
	case strings.HasPrefix(v, "meta cgroup") || strings.HasPrefix(v, "socket cgroupv2") || strings.HasPrefix(v, "cgroup "):
		return triUnknown, desc + ": the sending process's cgroup is not part of the model"
	case strings.Contains(v, "ct mark") || strings.HasPrefix(v, "connmark ") || strings.Contains(v, "meta mark"):
		return triUnknown, desc + ": the packet's mark is not part of the model (it may be set elsewhere)"
	}
	return triUnknown, desc + ": this match is not part of the model"
}

// setMatch: the idx-th set lookup of r (an nft "@name" in the rule's
// table, an ipset "NAME src,dst" in rs.Sets) holds for p.
func (e *evaluator) setMatch(t *Table, r *Rule, m Match, idx int) (tri, string) {
	desc := matchText(m)
	if strings.HasPrefix(m.Value, "@") {
		name := m.Value[1:]
		var set *Set
		for _, s := range t.Sets {
			if s.Name == name {
				set = s
			}
		}
		if set == nil {
			return triUnknown, desc + ": set " + name + " is not in the ruleset"
		}
		if contains(set.Flags, "dynamic") || filledByRules(t, name) {
			return triUnknown, desc + ": set " + name + " is filled by the packet path at run time"
		}
		key := nftSetKey(r.Text, m.Value, idx)
		if key == nil {
			return triUnknown, desc + ": the looked-up key is not part of the model"
		}
		v, why := e.nftSetLookup(set, key)
		if v == triUnknown {
			return v, desc + ": " + why
		}
		return negated(v, m.Negate), ""
	}
	f := strings.Fields(m.Value)
	if len(f) != 2 {
		return triUnknown, "ipset " + desc + ": not a set and direction"
	}
	var set *Set
	for _, s := range e.rs.Sets {
		if s.Name == f[0] && s.Source == SourceIpset {
			set = s
		}
	}
	if set == nil {
		return triUnknown, "ipset " + desc + ": set " + f[0] + " is not in the ruleset (read ipset save too)"
	}
	v, why := e.ipsetLookup(set, strings.Split(f[1], ","))
	if v == triUnknown {
		return v, "ipset " + desc + ": " + why
	}
	return negated(v, m.Negate), ""
}

// nftKeys the model can look up, as nft prints them before a set
// reference.
var nftSetKeys = []string{"ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "tcp dport", "tcp sport", "udp dport", "udp sport",
	"th dport", "th sport", "sctp dport", "sctp sport", "iifname", "oifname", "iif", "oif", "meta l4proto", "ip protocol", "ip6 nexthdr", "ct state"}

// nftSetKey reads the key of the idx-th set lookup of an nft rule's text
// ("ip saddr @blocked", "ip saddr . tcp dport != @allowed"): one key per
// part of a concatenation, nil when a part is not one the model knows.
func nftSetKey(text, ref string, idx int) []string {
	pos := -1
	for i, off := 0, 0; i <= idx; i++ {
		j := strings.Index(text[off:], ref)
		if j < 0 {
			return nil
		}
		pos = off + j
		off = pos + len(ref)
		if off < len(text) && text[off] != ' ' {
			i-- // a longer name with this prefix
		}
	}
	return keysBefore(text[:pos])
}

// keysBefore reads the key an nft rule's text ends with ("ip saddr",
// "ip daddr . meta l4proto . th dport", with a trailing "!=" allowed): one
// key per part of a concatenation, nil when a part is not one the model
// knows.
func keysBefore(before string) []string {
	before = strings.TrimSuffix(strings.TrimRight(before, " "), " !=")
	var keys []string
	for {
		k := ""
		for _, c := range nftSetKeys {
			if strings.HasSuffix(before, c) && (len(before) == len(c) || before[len(before)-len(c)-1] == ' ') {
				k = c
				break
			}
		}
		if k == "" {
			return nil
		}
		keys = append([]string{k}, keys...)
		before = strings.TrimSuffix(before, k)
		rest, isConcat := strings.CutSuffix(before, " . ")
		if !isConcat {
			return keys
		}
		before = rest
	}
}

// nftKeyValue: p's value for an nft key, its kind (addr, port, name,
// proto, state), and false when p does not have the key at all (an IPv6
// packet's ip saddr, a UDP packet's tcp dport).
func (e *evaluator) nftKeyValue(k string) (val, kind string, ok bool) {
	p := e.p
	switch k {
	case "ip saddr", "ip6 saddr", "ip daddr", "ip6 daddr":
		if strings.HasPrefix(k, "ip6 ") != (p.Family == "ip6") {
			return "", "", false
		}
		a := p.Src
		if strings.HasSuffix(k, "daddr") {
			a = p.Dst
		}
		if !a.IsValid() {
			return "", "addr", true
		}
		return a.String(), "addr", true
	case "iifname", "iif":
		return p.Iif, "name", p.Iif != "" || e.inbound
	case "oifname", "oif":
		return p.Oif, "name", p.Oif != "" || !e.inbound
	case "meta l4proto", "ip protocol", "ip6 nexthdr":
		return p.Proto, "proto", true
	case "ct state":
		if e.beforeConntrack() {
			return "invalid", "state", true
		}
		return p.State, "state", true
	}
	proto, f, _ := strings.Cut(k, " ")
	if proto != "th" && protoNumber(proto) != protoNumber(p.Proto) || !hasPorts(p.Proto) {
		return "", "", false
	}
	if f == "dport" {
		return strconv.Itoa(int(p.DstPort)), "port", true
	}
	return strconv.Itoa(int(p.SrcPort)), "port", true
}

// keyValues: p's values for keys; miss when p has no value for one of
// them at all (the lookup cannot find it), ok false when one is unknown.
func (e *evaluator) keyValues(keys []string) (vals, kinds []string, miss, ok bool) {
	vals = make([]string, len(keys))
	kinds = make([]string, len(keys))
	for i, k := range keys {
		v, kind, has := e.nftKeyValue(k)
		if !has {
			return nil, nil, true, true
		}
		if v == "" {
			return nil, nil, false, false
		}
		vals[i], kinds[i] = v, kind
	}
	return vals, kinds, false, true
}

// elemMatches: element el ("10.0.0.0/8", "10.0.0.1 . tcp . 22") holds
// vals; ok false when el is not one the model reads.
func (e *evaluator) elemMatches(el string, vals, kinds []string) (in, ok bool) {
	el, _, _ = strings.Cut(el, " comment ")
	parts := strings.Split(el, " . ")
	if len(parts) != len(vals) {
		return false, false
	}
	all := true
	for i, part := range parts {
		in, ok := elemHolds(strings.TrimSpace(part), vals[i], kinds[i])
		if !ok {
			return false, false
		}
		all = all && in
	}
	return all, true
}

func (e *evaluator) nftSetLookup(s *Set, keys []string) (tri, string) {
	vals, kinds, miss, ok := e.keyValues(keys)
	if !ok {
		return triUnknown, "the packet's " + strings.Join(keys, " . ") + " is unknown"
	}
	if miss {
		return triFalse, ""
	}
	for _, el := range s.Elements {
		in, ok := e.elemMatches(el, vals, kinds)
		if !ok {
			return triUnknown, fmt.Sprintf("set %s's element %q is not one the model reads (key %s)", s.Name, el, strings.Join(keys, " . "))
		}
		if in {
			return triTrue, ""
		}
	}
	return triFalse, ""
}

// elemHolds: one element (or one part of a concatenated element) holds
// value v of that kind.
func elemHolds(el, v, kind string) (in, ok bool) {
	switch kind {
	case "addr":
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false, false
		}
		in, _, ok := addrIn(el, a)
		return in, ok
	case "port":
		lo, hi, ok := portRange(el)
		n, _ := strconv.Atoi(v)
		return ok && lo <= n && n <= hi, ok
	case "name":
		return ifaceMatch(strings.Trim(el, `"`), v), true
	case "proto":
		return protoNumber(el) == protoNumber(v), true
	case "state":
		return el == v, true
	}
	return false, false
}

// ipsetLookup: the packet is in ipset s, looked up by dirs (src/dst per
// dimension).
func (e *evaluator) ipsetLookup(s *Set, dirs []string) (tri, string) {
	p := e.p
	method, dims, ok := strings.Cut(s.Type, ":")
	if !ok || method != "hash" && method != "bitmap" {
		return triUnknown, "set type " + s.Type + " is not part of the model"
	}
	kinds := strings.Split(dims, ",")
	if s.Family != p.Family && (contains(kinds, "ip") || contains(kinds, "net")) {
		return triFalse, "" // an address set of the other family never matches
	}
	if len(dirs) < len(kinds) {
		return triUnknown, fmt.Sprintf("set type %s needs %d directions", s.Type, len(kinds))
	}
	vals := make([]string, len(kinds))
	for i, k := range kinds {
		src := dirs[i] == "src"
		switch k {
		case "ip", "net":
			a := p.Dst
			if src {
				a = p.Src
			}
			if !a.IsValid() {
				return triUnknown, "the packet's address is unknown"
			}
			vals[i] = a.String()
		case "port":
			if !hasPorts(p.Proto) {
				return triFalse, ""
			}
			port := p.DstPort
			if src {
				port = p.SrcPort
			}
			vals[i] = p.Proto + ":" + strconv.Itoa(int(port))
		case "iface":
			name := p.Oif
			if src {
				name = p.Iif
			}
			if name == "" {
				return triUnknown, "the packet's interface is unknown"
			}
			vals[i] = name
		default:
			return triUnknown, "set type " + s.Type + " is not part of the model"
		}
	}
	// The most specific element decides (a "nomatch" one excludes).
	best, bestBits, found := false, -1, false
	for _, el := range s.Elements {
		el, _, _ = strings.Cut(el, " comment ")
		f := strings.Fields(el)
		if len(f) == 0 {
			continue
		}
		nomatch := contains(f[1:], "nomatch")
		parts := strings.Split(f[0], ",")
		if len(parts) != len(kinds) {
			return triUnknown, fmt.Sprintf("element %q does not fit set type %s", el, s.Type)
		}
		all, bits := true, 0
		for i, k := range kinds {
			part := parts[i]
			switch k {
			case "ip", "net":
				a, _ := netip.ParseAddr(vals[i])
				in, _, ok := addrIn(part, a)
				if !ok {
					return triUnknown, fmt.Sprintf("element %q is not an address", el)
				}
				if pf, ok := prefixOf(part); ok {
					bits += pf.Bits()
				}
				all = all && in
			case "port":
				// hash:*,port elements name the protocol (tcp when not
				// written); bitmap:port ones are ports of any protocol.
				proto, port, hasProto := strings.Cut(part, ":")
				if !hasProto {
					proto, port = "tcp", part
				}
				wantProto, wantPort, _ := strings.Cut(vals[i], ":")
				lo, hi, ok := portRange(port)
				if !ok {
					return triUnknown, fmt.Sprintf("element %q: port %s is not a number", el, port)
				}
				n, _ := strconv.Atoi(wantPort)
				all = all && (method == "bitmap" || protoNumber(proto) == protoNumber(wantProto)) && lo <= n && n <= hi
			case "iface":
				all = all && ifaceMatch(part, vals[i])
			}
		}
		if all && bits > bestBits {
			best, bestBits, found = !nomatch, bits, true
		}
	}
	return triOf(found && best), ""
}

// chainApplies: base chain b sees p at all (a netdev chain is bound to
// devices; a nat chain sees only a connection's first packet).
func (e *evaluator) chainApplies(b baseChain) (tri, string) {
	if b.c.Type == "nat" && e.p.State != "" && e.p.State != "new" {
		return triFalse, ""
	}
	if b.c.Hook != "ingress" && b.c.Hook != "egress" {
		return triTrue, ""
	}
	if b.c.Device == "" {
		// nft 1.0.6's JSON leaves the device out (its text has it).
		return triUnknown, fmt.Sprintf("%s chain %s is bound to a device nft's JSON listing does not name", b.t.ID(), b.c.Name)
	}
	name := e.p.Iif
	if b.c.Hook == "egress" {
		name = e.p.Oif
	}
	if name == "" {
		return triUnknown, fmt.Sprintf("%s chain %s is bound to device %s and the packet's interface is unknown", b.t.ID(), b.c.Name, b.c.Device)
	}
	for _, d := range strings.Split(b.c.Device, ",") {
		if strings.TrimSpace(d) == name {
			return triTrue, ""
		}
	}
	return triFalse, ""
}

// filledByRules: a rule of t adds to or updates set name (nft prints
// `add @name { ... }`, `update @name { ... }`): its elements depend on the
// packets seen so far.
func filledByRules(t *Table, name string) bool {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if strings.Contains(r.Text, "add @"+name+" ") || strings.Contains(r.Text, "update @"+name+" ") {
				return true
			}
		}
	}
	return false
}

// nftHeaderFields are the fields of nft's ip and ip6 header expressions.
var nftHeaderFields = map[string]bool{"saddr": true, "daddr": true, "protocol": true, "nexthdr": true, "dscp": true, "ecn": true,
	"ttl": true, "hoplimit": true, "length": true, "id": true, "frag-off": true, "version": true, "hdrlength": true,
	"checksum": true, "flowlabel": true}

// nftRuleFamily: the family an nft rule's header matches imply ("ip" for
// `ip protocol tcp`, "ip6" for `ip6 nexthdr tcp` or `icmpv6 type ...`),
// "" when none; quoted strings (comments, log prefixes) are skipped.
func nftRuleFamily(r *Rule) string {
	f := strings.Fields(stripQuoted(r.Text))
	for i, w := range f {
		switch {
		case (w == "ip" || w == "ip6") && i+1 < len(f) && nftHeaderFields[f[i+1]]:
			return w
		case w == "icmp" && i+1 < len(f) && f[i+1] == "type":
			return "ip"
		case w == "icmpv6" && i+1 < len(f) && f[i+1] == "type":
			return "ip6"
		}
	}
	return ""
}

func stripQuoted(s string) string {
	if !strings.Contains(s, `"`) {
		return s
	}
	var b strings.Builder
	in := false
	for _, c := range s {
		if c == '"' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// TCP flag bits as nft and iptables name them.
const (
	tcpFIN = 1 << iota
	tcpSYN
	tcpRST
	tcpPSH
	tcpACK
	tcpURG
	tcpECE
	tcpCWR
)

var tcpFlagBits = map[string]int{"fin": tcpFIN, "syn": tcpSYN, "rst": tcpRST, "psh": tcpPSH, "ack": tcpACK, "urg": tcpURG,
	"ecn": tcpECE, "ece": tcpECE, "cwr": tcpCWR, "all": 0x3f, "none": 0} // iptables' ALL: FIN..URG

// tcpFlags reads a flag list ("fin,syn", "FIN,SYN,RST,ACK", "ALL",
// "NONE", "0x0", "(fin|syn)").
func tcpFlags(s string) (int, bool) {
	s = strings.ToLower(strings.Trim(s, "()"))
	if n, err := strconv.ParseUint(s, 0, 8); err == nil {
		return int(n), true
	}
	bits := 0
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '|' }) {
		b, ok := tcpFlagBits[f]
		if !ok {
			return 0, false
		}
		bits |= b
	}
	return bits, true
}

// tcpFlagsTest reads a TCP flags match as the model's Match.Value holds
// it: nft "tcp flags syn / fin,syn,rst,ack" (masked equality), "tcp flags
// != syn / fin,syn" and "tcp flags & fin,syn != syn", "tcp flags == syn" (exactly), "tcp flags syn" (any of),
// "tcp flags ! fin,syn" (none of); iptables "tcp --tcp-flags MASK COMP"
// and "tcp --syn". The negation in Match.Negate is the caller's.
func tcpFlagsTest(v string) (func(flags int) bool, bool) {
	if v == "tcp --syn" {
		v = "tcp --tcp-flags FIN,SYN,RST,ACK SYN"
	}
	if rest, ok := strings.CutPrefix(v, "tcp --tcp-flags "); ok {
		f := strings.Fields(rest)
		if len(f) != 2 {
			return nil, false
		}
		mask, ok1 := tcpFlags(f[0])
		comp, ok2 := tcpFlags(f[1])
		return func(x int) bool { return x&mask == comp }, ok1 && ok2
	}
	rest := strings.TrimPrefix(v, "tcp flags ")
	f := strings.Fields(rest)
	switch {
	case len(f) == 3 && f[1] == "/":
		comp, ok1 := tcpFlags(f[0])
		mask, ok2 := tcpFlags(f[2])
		return func(x int) bool { return x&mask == comp }, ok1 && ok2
	case len(f) == 4 && f[0] == "!=" && f[2] == "/":
		comp, ok1 := tcpFlags(f[1])
		mask, ok2 := tcpFlags(f[3])
		return func(x int) bool { return x&mask != comp }, ok1 && ok2
	case len(f) == 4 && f[0] == "&" && (f[2] == "==" || f[2] == "!="):
		mask, ok1 := tcpFlags(f[1])
		comp, ok2 := tcpFlags(f[3])
		eq := f[2] == "=="
		return func(x int) bool { return (x&mask == comp) == eq }, ok1 && ok2
	case len(f) == 2 && (f[0] == "==" || f[0] == "!=" || f[0] == "!"):
		bits, ok := tcpFlags(f[1])
		switch f[0] {
		case "==":
			return func(x int) bool { return x == bits }, ok
		case "!=":
			return func(x int) bool { return x != bits }, ok
		}
		return func(x int) bool { return x&bits == 0 }, ok
	case len(f) == 1:
		bits, ok := tcpFlags(f[0])
		return func(x int) bool { return x&bits != 0 }, ok
	}
	return nil, false
}

// hasDNAT: a nat chain of p's family rewrites destinations (DNAT,
// REDIRECT, NETMAP).
func (e *evaluator) hasDNAT() bool {
	for _, t := range e.rs.Tables {
		if !tableSees(t, e.p.Family) {
			continue
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if r.Verdict.Kind == VerdictNat {
					switch strings.ToLower(r.Verdict.Target) {
					case "dnat", "redirect", "netmap":
						return true
					}
				}
			}
		}
	}
	return false
}
