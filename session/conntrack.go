package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

// ConntrackOptions say what to ask a host's conntrack verb and when its
// table counts as near full.
type ConntrackOptions struct {
	// Warn is the use (Count/Max, 0 < Warn <= 1) at or above which the
	// table is near full.
	Warn float64
	// Top is how many source addresses to report (0: the helper's default).
	Top int
	// Since: table-full kernel messages younger than this count
	// (0: the whole kernel log).
	Since time.Duration
}

// HostConntrack is one host's connection tracking table as its helper
// reports it, judged against ConntrackOptions.Warn.
type HostConntrack struct {
	Host      string                `json:"host"`
	Conntrack *wire.ConntrackReport `json:"conntrack,omitempty"`
	// Use is Count/Max (0 when the limit is unknown or conntrack is not
	// loaded).
	Use float64 `json:"use"`
	// NearFull: Use is at or above the warning threshold.
	NearFull bool `json:"near_full"`
	// Dropping: the kernel logged table-full messages within Since.
	Dropping bool   `json:"dropping"`
	Error    string `json:"error,omitempty"`
	Err      error  `json:"-"`
}

// Alarm reports whether the host's table needs the operator: near full,
// or the kernel dropped packets for want of an entry.
func (h *HostConntrack) Alarm() bool { return h.Err == nil && (h.NearFull || h.Dropping) }

// Conntrack asks a host's helper for its connection tracking table over one
// connection of its own. It changes nothing on the host and takes no lock.
func (s *Session) Conntrack(ctx context.Context, t Target, o ConntrackOptions) *HostConntrack {
	return s.NewTx(t, nil).conntrack(ctx, o)
}

func (h *Tx) conntrack(ctx context.Context, o ConntrackOptions) *HostConntrack {
	out := &HostConntrack{Host: h.t.Name}
	fail := func(err error) *HostConntrack { out.Err, out.Error = err, err.Error(); return out }
	c, err := h.dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if err := h.probe(ctx, c); err != nil {
		return fail(err)
	}
	req := &wire.Request{Version: wire.ProtocolVersion, Conntrack: &wire.ConntrackArgs{Top: o.Top, Since: wire.Duration(o.Since)}}
	rep, err := h.call(ctx, h.priv(c), wire.VerbConntrack, req)
	if err != nil {
		return fail(err)
	}
	if rep.Error != nil {
		return fail(rep.Error)
	}
	if rep.Conntrack == nil {
		return fail(fmt.Errorf("helper conntrack: the report has no conntrack part"))
	}
	out.Conntrack = rep.Conntrack
	out.Use = rep.Conntrack.Use()
	out.NearFull = rep.Conntrack.NearFull(o.Warn)
	out.Dropping = rep.Conntrack.Dropping()
	return out
}

// ParseUse reads a use threshold: a percentage ("80%", "92.5%") or a
// fraction ("0.8"), above 0 and at most 100% (1).
func ParseUse(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, "%")), 64)
	if err != nil || v != v { // NaN
		return 0, fmt.Errorf("%q is not a use: give a percentage (80%%) or a fraction (0.8)", s)
	}
	if pct {
		v /= 100
	} else if v > 1 {
		return 0, fmt.Errorf("%q: a fraction is at most 1; for a percentage add %% (%s%%)", s, t)
	}
	if v <= 0 || v > 1 {
		return 0, fmt.Errorf("%q: give a use above 0 and at most 100%%", s)
	}
	return v, nil
}
