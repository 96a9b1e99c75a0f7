package trace

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/wire"
)

// TableFamily and TableName name the nft table that holds the tracing
// rules. lifeline's other names (the guard's sets and comments) start with
// lifeline_guard, so the two never collide. Its chains hook in before
// raw (-300), so every other table sees the packet already marked.
const (
	TableFamily = "inet"
	TableName   = "lifeline_trace"
	Priority    = -350
)

// nftMatch is the match as nft expressions (checked matches only).
func nftMatch(m wire.TraceMatch) string {
	var w []string
	if m.IIf != "" {
		w = append(w, `iifname "`+m.IIf+`"`)
	}
	if m.OIf != "" {
		w = append(w, `oifname "`+m.OIf+`"`)
	}
	fam := Family(m)
	if m.SAddr != "" {
		w = append(w, fam+" saddr "+m.SAddr)
	}
	if m.DAddr != "" {
		w = append(w, fam+" daddr "+m.DAddr)
	}
	switch {
	case m.DPortFrom != 0 || m.SPortFrom != 0:
		if m.DPortFrom != 0 {
			w = append(w, m.Proto+" dport "+ports(m.DPortFrom, m.DPortTo, "-"))
		}
		if m.SPortFrom != 0 {
			w = append(w, m.Proto+" sport "+ports(m.SPortFrom, m.SPortTo, "-"))
		}
	case m.Proto == "icmpv6":
		w = append(w, "meta l4proto ipv6-icmp")
	case m.Proto != "":
		w = append(w, "meta l4proto "+m.Proto)
	}
	return strings.Join(w, " ")
}

// chains are the hooks a match is traced at: prerouting sees every packet
// that arrives (iif known), output every packet this host sends (oif
// known).
func chains(m wire.TraceMatch) []string {
	switch {
	case m.IIf != "":
		return []string{"prerouting"}
	case m.OIf != "":
		return []string{"output"}
	}
	return []string{"prerouting", "output"}
}

// NftRules returns the tracing rules of the nft table, one per chain, as
// "CHAIN: RULE".
func NftRules(m wire.TraceMatch, op wire.Operator) []string {
	var out []string
	for _, c := range chains(m) {
		if x := opExclusion(c, op); x != "" {
			out = append(out, c+": "+x)
		}
		out = append(out, c+": "+nftMatch(m)+" meta nftrace set 1")
	}
	return out
}

// opExclusion is the rule that keeps the operator's own SSH connection
// (the one the trace streams over) out of the trace: without it, tracing
// port 22 would trace its own output, every event making packets that make
// more events.
func opExclusion(chain string, op wire.Operator) string {
	a, err := netip.ParseAddr(op.Addr)
	if err != nil || op.SSHPort < 1 || op.SSHPort > 65535 {
		return ""
	}
	fam := "ip"
	if a.Unmap().Is6() {
		fam = "ip6"
	}
	port := strconv.Itoa(op.SSHPort)
	if chain == "prerouting" {
		return fam + " saddr " + a.Unmap().String() + " tcp dport " + port + " return"
	}
	return fam + " daddr " + a.Unmap().String() + " tcp sport " + port + " return"
}

// NftScript is the nft -f script that (re)creates the trace table: one
// transaction, whether the table exists or not.
func NftScript(m wire.TraceMatch, op wire.Operator) string {
	id := TableFamily + " " + TableName
	var b strings.Builder
	b.WriteString("table " + id + "\ndelete table " + id + "\ntable " + id + " {\n")
	for _, c := range chains(m) {
		b.WriteString("\tchain " + c + " {\n\t\ttype filter hook " + c + " priority " + strconv.Itoa(Priority) + "; policy accept;\n")
		if x := opExclusion(c, op); x != "" {
			b.WriteString("\t\t" + x + "\n")
		}
		b.WriteString("\t\t" + nftMatch(m) + " meta nftrace set 1\n\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// IPTablesRule is one TRACE rule of the iptables-nft fallback: the tool,
// then its arguments to insert it (Insert) and to delete it (Delete).
type IPTablesRule struct {
	Tool   string // iptables-nft or ip6tables-nft
	Insert []string
	Delete []string
}

// IPTables returns the TRACE rules of a checked match for hosts without
// the nft tool: in the raw table's PREROUTING and OUTPUT, per family the
// match covers.
func IPTables(m wire.TraceMatch) []IPTablesRule {
	fam := Family(m)
	var out []IPTablesRule
	for _, f := range []struct{ fam, tool string }{{"ip", "iptables-nft"}, {"ip6", "ip6tables-nft"}} {
		if fam != "" && fam != f.fam {
			continue
		}
		for _, c := range chains(m) {
			chain := strings.ToUpper(c)
			args := iptMatch(m)
			out = append(out, IPTablesRule{
				Tool:   f.tool,
				Insert: append([]string{"-w", "10", "-t", "raw", "-I", chain, "1"}, append(args, "-j", "TRACE")...),
				Delete: append([]string{"-w", "10", "-t", "raw", "-D", chain}, append(args, "-j", "TRACE")...),
			})
		}
	}
	return out
}

func iptMatch(m wire.TraceMatch) []string {
	var a []string
	if m.IIf != "" {
		a = append(a, "-i", m.IIf)
	}
	if m.OIf != "" {
		a = append(a, "-o", m.OIf)
	}
	if m.SAddr != "" {
		a = append(a, "-s", m.SAddr)
	}
	if m.DAddr != "" {
		a = append(a, "-d", m.DAddr)
	}
	switch m.Proto {
	case "":
	case "icmpv6":
		a = append(a, "-p", "ipv6-icmp")
	case "icmp":
		a = append(a, "-p", "icmp")
	default:
		a = append(a, "-p", m.Proto)
		if m.DPortFrom != 0 || m.SPortFrom != 0 {
			a = append(a, "-m", m.Proto)
		}
		if m.DPortFrom != 0 {
			a = append(a, "--dport", ports(m.DPortFrom, m.DPortTo, ":"))
		}
		if m.SPortFrom != 0 {
			a = append(a, "--sport", ports(m.SPortFrom, m.SPortTo, ":"))
		}
	}
	return a
}

// CoversOperator reports whether a match may mark the operator's own SSH
// packets (to op's sshd port from op's address, or back). The iptables
// fallback has no way to exclude them without changing how the host's own
// raw rules see those packets, so it refuses such a match. It errs on the
// side of yes: an address it cannot rule out may be the host's.
func CoversOperator(m wire.TraceMatch, op wire.Operator) bool {
	a, err := netip.ParseAddr(op.Addr)
	if err != nil {
		return true
	}
	a = a.Unmap()
	if m.Proto != "" && m.Proto != "tcp" {
		return false
	}
	// the client's side of the connection uses an ephemeral port, never
	// below 1024 (Linux: ip_local_port_range); the host's address is
	// unknown here, so any address may be it
	in := contains(m.SAddr, a) && inRange(m.DPortFrom, m.DPortTo, op.SSHPort) && ephemeral(m.SPortFrom, m.SPortTo) && m.OIf == ""
	out := contains(m.DAddr, a) && inRange(m.SPortFrom, m.SPortTo, op.SSHPort) && ephemeral(m.DPortFrom, m.DPortTo) && m.IIf == ""
	return in || out
}

func contains(pfx string, a netip.Addr) bool {
	if pfx == "" {
		return true
	}
	if p, err := netip.ParsePrefix(pfx); err == nil {
		return p.Contains(a)
	}
	b, err := netip.ParseAddr(pfx)
	return err != nil || b == a
}

// ephemeral reports whether a port constraint may match a client's
// ephemeral port.
func ephemeral(from, to int) bool { return from == 0 || to >= 1024 }

func inRange(from, to, port int) bool {
	return from == 0 || from <= port && port <= to
}
