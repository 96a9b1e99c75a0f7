package ruleset

import (
	"fmt"
	"strconv"
	"strings"
)

// iptInterpret reads the Matches, Comment and Verdict of a tokenized
// rule. An option's values are the words after it up to the next option;
// "!" negates the option (or value) it precedes.
func iptInterpret(r *Rule, toks []iptToken, chains map[string]*Chain) error {
	module := ""
	for i := 0; i < len(toks); {
		neg := false
		if !toks[i].quoted && toks[i].s == "!" {
			neg = true
			i++
			if i == len(toks) {
				return fmt.Errorf("\"!\" at the end of the rule")
			}
		}
		opt := toks[i]
		if opt.quoted || !strings.HasPrefix(opt.s, "-") || opt.s == "-" {
			return fmt.Errorf("expected an option, found %q", opt.s)
		}
		i++
		var vals []string
		for i < len(toks) {
			t := toks[i]
			if !t.quoted && t.s == "!" {
				if i+1 < len(toks) && !isOption(toks[i+1]) {
					neg = true
					i++
					continue
				}
				break
			}
			if isOption(t) {
				break
			}
			vals = append(vals, t.s)
			i++
		}
		val := strings.Join(vals, " ")
		switch opt.s {
		case "-m", "--match":
			module = val
			continue
		case "-j", "--jump", "-g", "--goto":
			if len(vals) != 1 {
				return fmt.Errorf("%s needs one target", opt.s)
			}
			if opt.s == "-g" || opt.s == "--goto" {
				r.Verdict = Verdict{Kind: VerdictGoto, Target: val}
			} else {
				kind, target := iptTargetVerdict(val, chains)
				r.Verdict = Verdict{Kind: kind, Target: target}
			}
			// The target's own options follow; they are not matches.
			i = len(toks)
			continue
		}
		if len(vals) == 0 && !flagOption[opt.s] {
			return fmt.Errorf("option %s needs a value", opt.s)
		}
		m := Match{Negate: neg}
		switch opt.s {
		case "-s", "--source":
			m.Field, m.Value = "saddr", hostAddr(val)
		case "-d", "--destination":
			m.Field, m.Value = "daddr", hostAddr(val)
		case "-i", "--in-interface":
			m.Field, m.Value = "iif", val
		case "-o", "--out-interface":
			m.Field, m.Value = "oif", val
		case "-p", "--protocol":
			m.Field, m.Value = "l4proto", strings.ToLower(val)
		case "--dport", "--destination-port", "--sport", "--source-port":
			m.Field, m.Value = "sport", portValue(val)
			if opt.s == "--dport" || opt.s == "--destination-port" {
				m.Field = "dport"
			}
		case "--dports", "--destination-ports", "--sports", "--source-ports", "--ports":
			m.Field, m.Value = "sport", portValue(val)
			if opt.s == "--dports" || opt.s == "--destination-ports" {
				m.Field = "dport"
			} else if opt.s == "--ports" {
				m.Field = "other"
				m.Value = module + " " + opt.s + " " + val
			}
		case "--ctstate", "--state":
			m.Field, m.Value = "ct state", sortedList(strings.ToLower(val))
		case "--match-set":
			m.Field, m.Value = "set", val
		case "--limit":
			m.Field, m.Value = "limit", iptLimit(val)
		case "--limit-burst":
			if n := len(r.Matches); n > 0 && r.Matches[n-1].Field == "limit" && val != "5" {
				r.Matches[n-1].Value += " burst " + val + " packets"
			}
			continue
		case "--comment":
			if r.Comment != "" {
				r.Comment += " "
			}
			r.Comment += val
			continue
		case "--mark":
			if module == "mark" {
				m.Field, m.Value = "mark", markValue(val)
			} else {
				m.Field, m.Value = "other", module+" "+opt.s+" "+val
			}
		case "--icmp-type", "--icmpv6-type":
			m.Field, m.Value = "icmp type", icmpName(val)
		default:
			m.Field = "other"
			m.Value = strings.TrimSpace(module + " " + opt.s + " " + val)
			if neg {
				m.Value = strings.TrimSpace(module + " ! " + opt.s + " " + val)
			}
		}
		r.Matches = append(r.Matches, m)
	}
	return nil
}

// flagOption: options that take no value.
var flagOption = map[string]bool{"--syn": true, "--rcheck": true, "--update": true, "--set": true, "--remove": true,
	"--rttl": true, "--strict": true, "--physdev-is-in": true, "--physdev-is-out": true, "--physdev-is-bridged": true,
	"--nodst": true, "--return-nomatch": true, "--fragres": true, "--fragfirst": true, "--fragmore": true, "--fraglast": true,
	"--ipv4": true, "--ipv6": true, "-4": true, "-6": true, "-f": true, "--fragment": true, "--reap": true,
	"--limit-iface-in": true, "--limit-iface-out": true, "--soft": true, "--invert": true, "--ecn-tcp-cwr": true,
	"--ecn-tcp-ece": true, "--log-uid": true, "--log-tcp-options": true, "--log-ip-options": true, "--log-tcp-sequence": true}

func isOption(t iptToken) bool {
	if t.quoted || len(t.s) < 2 || t.s[0] != '-' {
		return false
	}
	// a negative number is a value
	return !(t.s[1] >= '0' && t.s[1] <= '9')
}

// hostAddr drops the /32 (/128) iptables-save adds to a host address, so
// that it reads as nft writes it.
func hostAddr(s string) string {
	if strings.HasSuffix(s, "/32") && !strings.Contains(s, ":") && !strings.Contains(s, ",") {
		return s[:len(s)-3]
	}
	if strings.HasSuffix(s, "/128") && strings.Contains(s, ":") && !strings.Contains(s, ",") {
		return s[:len(s)-4]
	}
	return s
}

// portValue: "a:b" ranges as "a-b", lists as "{a,b}".
func portValue(s string) string {
	s = strings.ReplaceAll(s, ":", "-")
	if strings.Contains(s, ",") {
		return "{" + s + "}"
	}
	return s
}

// iptLimit writes "5/min" as nft does: "5/minute".
func iptLimit(s string) string {
	n, unit, ok := strings.Cut(s, "/")
	if !ok {
		return s
	}
	switch unit {
	case "s", "sec", "second":
		unit = "second"
	case "m", "min", "minute":
		unit = "minute"
	case "h", "hour":
		unit = "hour"
	case "d", "day":
		unit = "day"
	}
	return n + "/" + unit
}

func markValue(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return s
	}
	return fmt.Sprintf("0x%08x", n)
}

var icmpNames = map[string]string{"0": "echo-reply", "3": "destination-unreachable", "5": "redirect", "8": "echo-request",
	"11": "time-exceeded", "12": "parameter-problem", "13": "timestamp-request", "14": "timestamp-reply"}

func icmpName(s string) string {
	if n, ok := icmpNames[s]; ok {
		return n
	}
	return s
}

// iptTargetVerdict maps an iptables target to a verdict; chains are the
// table's declared chains (nil: any non-standard target is "other").
func iptTargetVerdict(target string, chains map[string]*Chain) (kind, name string) {
	switch target {
	case "ACCEPT":
		return VerdictAccept, ""
	case "DROP":
		return VerdictDrop, ""
	case "REJECT":
		return VerdictReject, ""
	case "RETURN":
		return VerdictReturn, ""
	case "QUEUE", "NFQUEUE":
		return VerdictQueue, target
	case "LOG", "NFLOG", "ULOG":
		return VerdictLog, target
	case "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP":
		return VerdictNat, target
	}
	if chains[target] != nil {
		return VerdictJump, target
	}
	return VerdictOther, target
}
