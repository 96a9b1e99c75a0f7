package trace

import (
	"sort"

	"github.com/lifeline-dev/lifeline/wire"
)

// Summary is what one host's trace saw: per packet (trace id) its
// decisive step, and the count of packets per decisive verdict.
type Summary struct {
	Packets  int               `json:"packets"`            // distinct trace ids seen
	Events   int               `json:"events"`             // steps seen
	Verdicts map[string]int    `json:"verdicts"`           // decisive verdict -> packets
	Decisive []wire.TraceEvent `json:"decisive,omitempty"` // one per packet, in the order first seen (at most MaxDecisive)
	// Untracked counts the steps of packets past the first 100000, which
	// are in neither Packets nor Verdicts.
	Untracked int `json:"untracked,omitempty"`
}

// MaxDecisive bounds the packets a Summary lists (it still counts them all).
const MaxDecisive = 1000

// maxTracked bounds the packets a Summarizer follows; steps of packets
// beyond it are counted in Summary.Untracked.
const maxTracked = 100000

// Summarizer builds a Summary from events as they arrive. The decisive
// step of a packet is its last final verdict (accept, drop, reject, queue,
// a policy, ...): an accept in one chain is followed by the next chain at
// the same or a later hook, so the last one seen is the one that decided;
// continue, jump, goto and return never decide. A packet that showed only
// those keeps its last step. Not safe for concurrent use.
type Summarizer struct {
	events int
	extra  int // packets seen after maxTracked: counted, not kept
	order  []string
	last   map[string]wire.TraceEvent
}

// Add takes one event.
func (s *Summarizer) Add(ev wire.TraceEvent) {
	if s.last == nil {
		s.last = map[string]wire.TraceEvent{}
	}
	s.events++
	prev, seen := s.last[ev.ID]
	if !seen && len(s.order) >= maxTracked {
		s.extra++ // a new id or a later step of one dropped: counted once per step, bounded memory
		return
	}
	if !seen {
		s.order = append(s.order, ev.ID)
	}
	if !seen || Final(ev.Verdict) || !Final(prev.Verdict) {
		s.last[ev.ID] = ev
	}
}

// Final reports whether a verdict ends a packet's walk through a chain
// for good (not continue, jump, goto or return).
func Final(verdict string) bool {
	switch firstWord(verdict) {
	case "", "continue", "jump", "goto", "return":
		return false
	}
	return true
}

func firstWord(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i]
		}
	}
	return s
}

// Summary returns what was added so far.
func (s *Summarizer) Summary() Summary {
	sum := Summary{Packets: len(s.order), Events: s.events, Verdicts: map[string]int{}, Untracked: s.extra}
	for _, id := range s.order {
		ev := s.last[id]
		v := ev.Verdict
		if !Final(v) {
			v = "undecided"
		}
		sum.Verdicts[v]++
		if len(sum.Decisive) < MaxDecisive {
			sum.Decisive = append(sum.Decisive, ev)
		}
	}
	return sum
}

// VerdictNames returns a summary's verdicts sorted by name.
func (s Summary) VerdictNames() []string {
	names := make([]string, 0, len(s.Verdicts))
	for v := range s.Verdicts {
		names = append(names, v)
	}
	sort.Strings(names)
	return names
}
