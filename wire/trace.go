package wire

// VerbTrace streams packet traces while a guarded transaction is applied
// (lifeline trace). Unlike the other verbs it does not answer with one
// Report: it reads one Request (with Trace) as a JSON line on stdin, then
// writes one TraceLine per line on stdout as things happen, the last one
// carrying the Report. It stops when TraceArgs.Duration has passed, when
// its stdin closes (the workstation went away or stopped it), or when the
// transaction's deadline comes near; it removes its trace rules before
// writing the Report. The workstation then aborts the transaction, which
// restores the snapshot taken before anything was traced.
const VerbTrace = "trace"

// TraceArgs is the trace verb's payload.
type TraceArgs struct {
	Match    TraceMatch `json:"match"`
	Duration Duration   `json:"duration"` // how long to trace; positive, at most MaxTraceDuration
}

// MaxTraceDuration bounds a trace: a forgotten one keeps the host's
// transaction (and its lock) for at most this long.
const MaxTraceDuration = Duration(60 * 60 * 1e9)

// TraceMatch is which packets a trace marks, parsed on the workstation
// from the match mini-language (internal/trace.Parse) and checked again on
// the host (internal/trace.Check). A zero field matches anything.
type TraceMatch struct {
	Proto     string `json:"proto,omitempty"` // tcp, udp, icmp, icmpv6
	DPortFrom int    `json:"dport_from,omitempty"`
	DPortTo   int    `json:"dport_to,omitempty"` // = DPortFrom for one port
	SPortFrom int    `json:"sport_from,omitempty"`
	SPortTo   int    `json:"sport_to,omitempty"`
	SAddr     string `json:"saddr,omitempty"` // an address or a CIDR prefix, canonical
	DAddr     string `json:"daddr,omitempty"`
	IIf       string `json:"iif,omitempty"` // interface names
	OIf       string `json:"oif,omitempty"`
}

// TraceLine is one line the trace verb writes: exactly one field is set.
type TraceLine struct {
	Start  *TraceStart `json:"start,omitempty"`
	Event  *TraceEvent `json:"event,omitempty"`
	Report *Report     `json:"report,omitempty"`
}

// TraceStart says what the host installed to trace and what it reads the
// traces with.
type TraceStart struct {
	Tracer  string   `json:"tracer"`  // "nft table inet lifeline_trace" or "iptables-nft -t raw TRACE"
	Monitor string   `json:"monitor"` // "nft monitor trace" or "xtables-monitor --trace"
	Rules   []string `json:"rules"`   // the tracing rules as installed
	Until   Duration `json:"until"`   // how long the host traces from now
}

// TraceEvent is one step of one traced packet through the ruleset: a rule
// that matched (with its verdict), a chain's policy, or the packet seen
// entering a chain (Kind "packet", with Packet set).
type TraceEvent struct {
	Host    string `json:"host,omitempty"` // filled in by the workstation
	ID      string `json:"trace_id"`       // the kernel's trace id: one per packet
	Family  string `json:"family"`         // inet, ip, ip6, bridge, ...
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Kind    string `json:"kind"`              // packet, rule, policy, return
	Rule    string `json:"rule,omitempty"`    // the rule's text as the monitor printed it
	Handle  int    `json:"handle,omitempty"`  // the rule's handle (nft) or position (xtables)
	Verdict string `json:"verdict,omitempty"` // accept, drop, continue, jump X, return, ...
	Packet  string `json:"packet,omitempty"`  // summary: proto src:port > dst:port, iif/oif
}
