package ruleset

import (
	"fmt"
	"strings"
)

// walk outcomes: how a chain ends for the packets a predicate looks for.
const (
	walkThrough = iota // fell off the end (or returned): the policy decides
	walkFound          // a rule the predicate wants accepts them
	walkCaught         // an unconditional drop or reject catches everything first
	walkOpen           // an unconditional accept lets everything through first
)

// walk follows a chain's rules in order, into the regular chains they jump
// to (depth-bounded), until want accepts, or an unconditional verdict ends
// the chain for every packet. compatible says whether a conditional jump's
// own matches let the wanted packets in.
func walk(t *Table, c *Chain, want func(*Rule) bool, compatible func(*Rule) bool, depth int) (int, *Rule) {
	for _, r := range c.Rules {
		if want(r) {
			return walkFound, r
		}
		uncond := Unconditional(r)
		switch r.Verdict.Kind {
		case VerdictAccept:
			if uncond {
				return walkOpen, r
			}
		case VerdictDrop, VerdictReject:
			if uncond {
				return walkCaught, r
			}
		case VerdictReturn:
			if uncond {
				return walkThrough, nil
			}
		case VerdictJump, VerdictGoto:
			sub := t.Chain(r.Verdict.Target)
			if sub == nil || depth > 8 {
				continue
			}
			res, by := walk(t, sub, want, compatible, depth+1)
			switch {
			case uncond && res != walkThrough:
				return res, by
			case res == walkFound && compatible(r):
				return walkFound, by
			}
		}
	}
	return walkThrough, nil
}

// restrictive: the chain drops whatever it does not accept (a drop policy,
// or an unconditional drop reached).
func restrictive(t *Table, c *Chain) bool {
	res, _ := walk(t, c, func(*Rule) bool { return false }, func(*Rule) bool { return false }, 0)
	return res == walkCaught || res == walkThrough && c.Policy == "drop"
}

func ruleMatch(r *Rule, field string) (Match, bool) {
	for _, m := range r.Matches {
		if m.Field == field {
			return m, true
		}
	}
	return Match{}, false
}

// sshCompatible: r's matches do not exclude a NEW TCP connection to one of
// ports (an empty result: they exclude it).
func sshCompatible(r *Rule, ports []int) bool {
	if m, ok := ruleMatch(r, "l4proto"); ok && (m.Negate || !subset([]string{"tcp"}, items(m.Value))) {
		return false
	}
	if m, ok := ruleMatch(r, "ct state"); ok && (m.Negate || !subset([]string{"new"}, items(m.Value))) {
		return false
	}
	if m, ok := ruleMatch(r, "iif"); ok && !m.Negate && m.Value == "lo" {
		return false
	}
	if m, ok := ruleMatch(r, "dport"); ok {
		hit := false
		for _, p := range ports {
			if portIn(m.Value, p) != m.Negate {
				hit = true
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// sshAccept: an accept that names SSH explicitly: a TCP port match with
// one of sshd's ports, or all of TCP. An accept by source address alone is
// not one (see docs/ruleset.md).
func sshAccept(ports []int) func(*Rule) bool {
	return func(r *Rule) bool {
		if r.Verdict.Kind != VerdictAccept || !sshCompatible(r, ports) {
			return false
		}
		_, dport := ruleMatch(r, "dport")
		l4, proto := ruleMatch(r, "l4proto")
		return dport || proto && !l4.Negate && len(items(l4.Value)) == 1
	}
}

// establishedAccept: an accept of every established packet (a ct state
// match, nothing narrowing it to a port or an address).
func establishedAccept(r *Rule) bool {
	m, ok := ruleMatch(r, "ct state")
	return ok && len(r.Matches) == 1 && !m.Negate && r.Verdict.Kind == VerdictAccept && subset([]string{"established"}, items(m.Value))
}

func (a *AuditReport) inputFindings(r *Ruleset, f Facts) {
	ports := make([]string, len(f.SSHPorts))
	for i, p := range f.SSHPorts {
		ports[i] = fmt.Sprint(p)
	}
	v4Restrictive, v6Filtered := false, false
	for _, v6 := range []bool{false, true} {
		ts, cs := filterChains(r, "input", v6)
		for i, c := range cs {
			t := ts[i]
			if v6 && (restrictive(t, c) || hasDrop(c)) {
				v6Filtered = true
			}
			if !restrictive(t, c) {
				continue
			}
			if !v6 {
				v4Restrictive = true
			}
			if t.Family == "inet" && v6 {
				continue // reported once, for IPv4
			}
			if res, _ := walk(t, c, sshAccept(f.SSHPorts), func(j *Rule) bool { return sshCompatible(j, f.SSHPorts) }, 0); res != walkFound && res != walkOpen {
				a.add(Finding{Code: FindSSHNotAccepted, Severity: "error", Table: t.ID(), Chain: c.Name,
					Why: fmt.Sprintf("this input chain drops what it does not accept, and no rule accepts SSH (tcp port %s) by port before that: new SSH logins live on other rules (a source address, a set) and die with them", strings.Join(ports, ",")),
					Fix: fmt.Sprintf("accept tcp dport %s (ct state new) explicitly, early in the chain", strings.Join(ports, ","))})
			}
			if res, _ := walk(t, c, establishedAccept, func(*Rule) bool { return true }, 0); res != walkFound && res != walkOpen {
				a.add(Finding{Code: FindNoEstablished, Severity: "warning", Table: t.ID(), Chain: c.Name,
					Why: "no ct state established,related accept comes before the drop: replies to the host's own connections (DNS, package updates, NTP) are dropped, and every packet of every flow is matched against every rule",
					Fix: "put `ct state established,related accept` (iptables: -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT) first"})
			}
		}
	}
	if v4Restrictive && f.IPv6 && !v6Filtered {
		a.add(Finding{Code: FindIPv6Open, Severity: "error",
			Why: "IPv4 input is locked down but IPv6 input is wide open, and the host has a global IPv6 address: every service is reachable over IPv6",
			Fix: "filter IPv6 too: an inet table in nft, or the same rules in ip6tables (with ICMPv6 neighbour discovery accepted)"})
	}
}

// hasDrop: the chain drops or rejects something.
func hasDrop(c *Chain) bool {
	if c.Policy == "drop" {
		return true
	}
	for _, r := range c.Rules {
		if r.Verdict.Kind == VerdictDrop || r.Verdict.Kind == VerdictReject {
			return true
		}
	}
	return false
}

func (a *AuditReport) dockerFinding(r *Ruleset) {
	var ports []string
	for _, t := range r.Tables {
		if t.Name != "nat" && t.Owner != OwnerDocker {
			continue
		}
		for _, c := range t.Chains {
			if c.Owner != OwnerDocker || !strings.HasPrefix(c.Name, "DOCKER") {
				continue
			}
			for _, rl := range c.Rules {
				if rl.Verdict.Kind == VerdictNat && (rl.Verdict.Target == "DNAT" || rl.Verdict.Target == "dnat") {
					if m, ok := ruleMatch(rl, "dport"); ok {
						ports = append(ports, m.Value)
					} else {
						ports = append(ports, "?")
					}
				}
			}
		}
	}
	if len(ports) == 0 {
		return
	}
	ts, cs := filterChains(r, "input", false)
	for i, c := range cs {
		if restrictive(ts[i], c) {
			a.add(Finding{Code: FindDockerBypass, Severity: "warning", Table: ts[i].ID(), Chain: c.Name,
				Why: fmt.Sprintf("Docker publishes ports %s with DNAT: their packets are forwarded to the containers and never cross INPUT, so this chain's drops do not protect them", strings.Join(ports, ", ")),
				Fix: "filter published ports in the DOCKER-USER chain (iptables -I DOCKER-USER ...), or publish them on 127.0.0.1 only"})
			return
		}
	}
}

func (a *AuditReport) forwardFindings(r *Ruleset, f Facts) {
	for _, fam := range []struct {
		v6   bool
		on   bool
		name string
	}{{false, f.IPv4Forward, "IPv4"}, {true, f.IPv6Forward, "IPv6"}} {
		if !fam.on {
			continue
		}
		_, cs := filterChains(r, "forward", fam.v6)
		open := true
		for _, c := range cs {
			if hasDrop(c) {
				open = false
			}
		}
		if open {
			a.add(Finding{Code: FindForwardOpen, Severity: "warning",
				Why: fam.name + " forwarding is on and nothing filters forwarded packets (no forward chain, or only ACCEPT policies without drops): the host routes anything for anyone who can reach it",
				Fix: "set the forward chain's policy to drop and accept only what the host must route (ct state established,related, the interfaces it serves), or turn forwarding off"})
		}
	}
}
