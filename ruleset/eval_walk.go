package ruleset

import (
	"fmt"
	"strings"
)

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
