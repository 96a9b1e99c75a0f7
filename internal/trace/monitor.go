package trace

import (
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/wire"
)

// Reader turns a monitor's output, line by line, into events. It keeps the
// last packet summary per trace id (the monitors print the packet before
// the rules it met) and drops the events of lifeline's own trace table.
// Not safe for concurrent use.
type Reader struct {
	// Xtables: the lines are xtables-monitor --trace's, else nft monitor
	// trace's.
	Xtables bool
	packets map[string]string
	order   []string
}

// maxPackets bounds the packet summaries a Reader keeps.
const maxPackets = 4096

// Line reads one line of output; ok is false for a line that is not a
// step of a packet worth reporting (a packet line, our own table, noise).
func (r *Reader) Line(line string) (ev wire.TraceEvent, ok bool) {
	if r.Xtables {
		ev, ok = parseXtables(line)
	} else {
		ev, ok = parseNft(line)
	}
	if !ok {
		return ev, false
	}
	if ev.Kind == "packet" {
		r.remember(ev.ID, ev.Packet)
		return ev, false
	}
	if ev.Table == TableName && (ev.Family == TableFamily || r.Xtables) {
		return ev, false
	}
	ev.Packet = r.packets[ev.ID]
	return ev, true
}

func (r *Reader) remember(id, pkt string) {
	if r.packets == nil {
		r.packets = map[string]string{}
	}
	if _, ok := r.packets[id]; !ok {
		r.order = append(r.order, id)
		if len(r.order) > maxPackets {
			delete(r.packets, r.order[0])
			r.order = r.order[1:]
		}
	}
	r.packets[id] = pkt
}

// parseNft reads one line of nft monitor trace (nft -a, so rules carry
// their handle):
//
//	trace id 8bf322ed inet filter input packet: iif "eth0" ... ip saddr 198.18.250.2 ...
//	trace id 8bf322ed inet filter input rule ip saddr 198.18.250.2 tcp dport 22 drop # handle 2 (verdict drop)
//	trace id 8bf322ed inet filter input policy drop
func parseNft(line string) (wire.TraceEvent, bool) {
	var ev wire.TraceEvent
	f := strings.Fields(line)
	if len(f) < 7 || f[0] != "trace" || f[1] != "id" {
		return ev, false
	}
	ev.ID, ev.Family, ev.Table, ev.Chain = f[2], f[3], f[4], f[5]
	// the rest after the chain, as printed
	rest := strings.TrimSpace(afterFields(line, 6))
	kind, arg, _ := strings.Cut(rest, " ")
	switch kind {
	case "packet:":
		ev.Kind, ev.Packet = "packet", nftPacket(strings.Fields(arg))
	case "rule":
		ev.Kind = "rule"
		text := strings.TrimSpace(arg)
		if i := strings.LastIndex(text, " (verdict "); i >= 0 && strings.HasSuffix(text, ")") {
			ev.Verdict = text[i+len(" (verdict ") : len(text)-1]
			text = text[:i]
		}
		if i := strings.LastIndex(text, " # handle "); i >= 0 {
			if h, err := strconv.Atoi(strings.TrimSpace(text[i+len(" # handle "):])); err == nil {
				ev.Handle = h
				text = text[:i]
			}
		}
		ev.Rule = strings.Join(strings.Fields(text), " ")
	case "policy":
		ev.Kind, ev.Verdict = "policy", strings.TrimSpace(arg)
	default: // return, unknown: keep what it said
		ev.Kind, ev.Verdict = kind, strings.TrimSpace(arg)
	}
	return ev, true
}

// afterFields returns s after its first n space-separated fields.
func afterFields(s string, n int) string {
	s = strings.TrimLeft(s, " \t")
	for i := 0; i < n; i++ {
		j := strings.IndexAny(s, " \t")
		if j < 0 {
			return ""
		}
		s = strings.TrimLeft(s[j:], " \t")
	}
	return s
}

// nftPacket sums up nft's packet description:
// "tcp 198.18.250.2:59560 > 198.18.250.1:22 iif trva".
func nftPacket(f []string) string {
	var src, dst, sport, dport, proto, iif, oif, icmp string
	for i := 0; i+1 < len(f); i++ {
		k, v := f[i], f[i+1]
		switch k {
		case "iif", "oif":
			if k == "iif" {
				iif = strings.Trim(v, `"`)
			} else {
				oif = strings.Trim(v, `"`)
			}
			i++
		case "ip", "ip6":
			if i+2 < len(f) {
				switch v {
				case "saddr":
					src = f[i+2]
				case "daddr":
					dst = f[i+2]
				case "protocol", "nexthdr":
					if proto == "" {
						proto = f[i+2]
					}
				}
				i += 2
			}
		case "tcp", "udp", "sctp", "udplite", "dccp":
			if i+2 < len(f) && (v == "sport" || v == "dport") {
				proto = k
				if v == "sport" {
					sport = f[i+2]
				} else {
					dport = f[i+2]
				}
				i += 2
			}
		case "icmp", "icmpv6":
			if i+2 < len(f) && v == "type" {
				proto, icmp = k, f[i+2]
				i += 2
			}
		}
	}
	return packetSummary(proto, src, sport, dst, dport, icmp, iif, oif)
}

func packetSummary(proto, src, sport, dst, dport, icmp, iif, oif string) string {
	hostport := func(a, p string) string {
		if a == "" {
			a = "?"
		}
		if p == "" {
			return a
		}
		if strings.Contains(a, ":") {
			return "[" + a + "]:" + p
		}
		return a + ":" + p
	}
	var w []string
	if proto != "" {
		w = append(w, proto)
	}
	if src != "" || dst != "" {
		w = append(w, hostport(src, sport), ">", hostport(dst, dport))
	}
	if icmp != "" {
		w = append(w, icmp)
	}
	if iif != "" {
		w = append(w, "iif "+iif)
	}
	if oif != "" {
		w = append(w, "oif "+oif)
	}
	return strings.Join(w, " ")
}

// xtFamilies are the NFPROTO numbers xtables-monitor prints.
var xtFamilies = map[string]string{"1": "inet", "2": "ip", "3": "arp", "5": "netdev", "7": "bridge", "10": "ip6"}

// parseXtables reads one line of xtables-monitor --trace:
//
//	PACKET: 2 f1f41f6c IN=eth0 MACSRC=... SRC=198.18.250.2 DST=198.18.250.1 LEN=60 ... SPORT=59572 DPORT=22 SYN
//	 TRACE: 2 f1f41f6c filter:INPUT:rule:0x2:DROP  -4 -t filter -A INPUT -s 198.18.250.2/32 ... -j DROP
//	 TRACE: 2 f1f41f6c raw:PREROUTING:policy:ACCEPT
func parseXtables(line string) (wire.TraceEvent, bool) {
	var ev wire.TraceEvent
	f := strings.Fields(line)
	if len(f) < 4 || (f[0] != "PACKET:" && f[0] != "TRACE:") {
		return ev, false
	}
	ev.ID = f[2]
	ev.Family = xtFamilies[f[1]]
	if ev.Family == "" {
		ev.Family = "nfproto-" + f[1]
	}
	if f[0] == "PACKET:" {
		ev.Kind = "packet"
		kv := map[string]string{}
		proto := ""
		for _, w := range f[3:] {
			if k, v, ok := strings.Cut(w, "="); ok {
				kv[k] = v
			}
		}
		if kv["SPORT"] != "" || kv["DPORT"] != "" {
			proto = strings.ToLower(kv["PROTO"])
		}
		ev.Packet = packetSummary(proto, kv["SRC"], kv["SPORT"], kv["DST"], kv["DPORT"], "", kv["IN"], kv["OUT"])
		return ev, true
	}
	parts := strings.Split(f[3], ":")
	if len(parts) < 3 {
		return ev, false
	}
	ev.Table, ev.Chain, ev.Kind = parts[0], parts[1], parts[2]
	switch {
	case ev.Kind == "rule" && len(parts) >= 5:
		if h, err := strconv.ParseInt(strings.TrimPrefix(parts[3], "0x"), 16, 64); err == nil {
			ev.Handle = int(h)
		}
		ev.Verdict = strings.ToLower(strings.Join(parts[4:], ":"))
	case len(parts) >= 4:
		ev.Verdict = strings.ToLower(strings.Join(parts[3:], ":"))
	}
	ev.Rule = strings.Join(strings.Fields(afterFields(line, 4)), " ")
	return ev, true
}
