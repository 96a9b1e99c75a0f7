package ruleset

import (
	"sort"
	"strings"
)

// Counter is one rule's (or one base chain policy's) packet and byte
// counts, with what they counted since an earlier reading (CounterDelta).
type Counter struct {
	Table string `json:"table"` // Table.ID
	Chain string `json:"chain"`
	// Index is the rule's 0-based place in its chain; -1 for the policy.
	Index   int    `json:"index"`
	Text    string `json:"text"`
	Comment string `json:"comment,omitempty"`
	Policy  bool   `json:"policy,omitempty"`
	// Verdict: the rule's (Verdict.Kind) or the policy's (accept, drop).
	Verdict    string `json:"verdict,omitempty"`
	HasCounter bool   `json:"has_counter"`
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
	// DeltaPackets and DeltaBytes: counted in the interval (CounterDelta).
	DeltaPackets uint64 `json:"delta_packets,omitempty"`
	DeltaBytes   uint64 `json:"delta_bytes,omitempty"`
	// Reset: the counter went down since the earlier reading (zeroed or
	// the rule replaced): the delta is its whole count now.
	Reset bool `json:"reset,omitempty"`
}

// Counters lists every counting rule and every base chain's policy counter
// (iptables counts policy packets; nft does not), in ruleset order. Rules
// of lifeline's own guard are left out.
func Counters(r *Ruleset) []Counter {
	var out []Counter
	for _, t := range r.Tables {
		id := t.ID()
		for _, c := range t.Chains {
			for i, rl := range c.Rules {
				if !rl.Counter || strings.HasPrefix(rl.Comment, GuardCommentPrefix) {
					continue
				}
				out = append(out, Counter{Table: id, Chain: c.Name, Index: i, Text: rl.Text, Comment: rl.Comment, Verdict: rl.Verdict.Kind, HasCounter: true, Packets: rl.Packets, Bytes: rl.Bytes})
			}
			if c.Base() && t.Source != SourceNft {
				out = append(out, Counter{Table: id, Chain: c.Name, Index: -1, Text: "policy " + c.Policy, Policy: true, Verdict: c.Policy, HasCounter: true, Packets: c.PolicyPackets, Bytes: c.PolicyBytes})
			}
		}
	}
	return out
}

// Uncounted is how many nft rules have no counter statement (their packets
// are not counted anywhere).
func Uncounted(r *Ruleset) int {
	n := 0
	for _, t := range r.Tables {
		if t.Source != SourceNft {
			continue
		}
		for _, c := range t.Chains {
			for _, rl := range c.Rules {
				if !rl.Counter && !strings.HasPrefix(rl.Comment, GuardCommentPrefix) {
					n++
				}
			}
		}
	}
	return n
}

// counterKey identifies a counter across readings: by table, chain, text
// and which of the equal texts of that chain it is — not by position, as
// rules may be inserted between two readings.
type counterKey struct {
	table, chain, text string
	nth                int
	policy             bool
}

func keysOf(cs []Counter) []counterKey {
	seen := map[counterKey]int{}
	keys := make([]counterKey, len(cs))
	for i, c := range cs {
		k := counterKey{table: c.Table, chain: c.Chain, text: c.Text, policy: c.Policy}
		k.nth = seen[k]
		seen[k]++
		keys[i] = k
	}
	return keys
}

// CounterDelta returns cur with DeltaPackets and DeltaBytes set to what
// each counter counted since prev. A counter absent from prev (a new rule)
// counted all it has; one that went down was reset (Reset) and counted
// all it has since.
func CounterDelta(prev, cur []Counter) []Counter {
	before := map[counterKey]Counter{}
	for i, k := range keysOf(prev) {
		before[k] = prev[i]
	}
	out := make([]Counter, len(cur))
	for i, k := range keysOf(cur) {
		c := cur[i]
		p, ok := before[k]
		switch {
		case !ok:
			c.DeltaPackets, c.DeltaBytes = c.Packets, c.Bytes
		case c.Packets < p.Packets || c.Bytes < p.Bytes:
			c.DeltaPackets, c.DeltaBytes, c.Reset = c.Packets, c.Bytes, true
		default:
			c.DeltaPackets, c.DeltaBytes = c.Packets-p.Packets, c.Bytes-p.Bytes
		}
		out[i] = c
	}
	return out
}

// Top returns the n busiest counters (n <= 0: all) by packets, or by
// DeltaPackets when byDelta, ties by table, chain and index; with
// byDelta, counters that counted nothing are left out.
func Top(cs []Counter, n int, byDelta bool) []Counter {
	var keep []Counter
	for _, c := range cs {
		if !byDelta || c.DeltaPackets > 0 || c.DeltaBytes > 0 {
			keep = append(keep, c)
		}
	}
	val := func(c Counter) uint64 {
		if byDelta {
			return c.DeltaPackets
		}
		return c.Packets
	}
	sort.SliceStable(keep, func(i, j int) bool {
		a, b := keep[i], keep[j]
		if val(a) != val(b) {
			return val(a) > val(b)
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.Chain != b.Chain {
			return a.Chain < b.Chain
		}
		return a.Index < b.Index
	})
	if n > 0 && len(keep) > n {
		keep = keep[:n]
	}
	return keep
}

// Drops reports whether the counter counts packets dropped or rejected.
func (c Counter) Drops() bool { return c.Verdict == VerdictDrop || c.Verdict == VerdictReject }
