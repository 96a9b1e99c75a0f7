package session

import (
	"context"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

// HostState is one host's whole firewall state as its helper listed it,
// read over one connection of its own; the read changes nothing on the
// host and takes no lock.
type HostState struct {
	Host string `json:"host"`
	// Parts are the tools' listings (wire.StatePart); Candidate the
	// listing of StateArgs.Candidate after a scratch load.
	Parts     []wire.StatePart `json:"parts,omitempty"`
	Candidate []wire.StatePart `json:"candidate,omitempty"`
	Facts     wire.HostFacts   `json:"facts"`
	// Zeroed: the backends whose counters the read reset (StateArgs.Zero).
	Zeroed []string `json:"zeroed,omitempty"`
	// Operator is how the host saw this connection: the workstation's
	// address and the port sshd took it on.
	Operator wire.Operator `json:"operator"`
	Now      time.Time     `json:"now,omitzero"` // host clock
	Took     time.Duration `json:"took_ns"`
	Error    string        `json:"error,omitempty"`
	Err      error         `json:"-"`
}

// ReadState reads t's state (args may carry a candidate ruleset to list
// as the host's kernel would hold it).
func (s *Session) ReadState(ctx context.Context, t Target, args *wire.StateArgs) *HostState {
	return s.NewTx(t, nil).readState(ctx, args)
}

func (h *Tx) readState(ctx context.Context, args *wire.StateArgs) *HostState {
	start := time.Now()
	st := &HostState{Host: h.t.Name}
	fail := func(err error) *HostState {
		st.Err, st.Error, st.Took = err, err.Error(), time.Since(start)
		return st
	}
	c, err := h.dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if err := h.probe(ctx, c); err != nil {
		return fail(err)
	}
	if args == nil {
		args = &wire.StateArgs{}
	}
	rep, err := h.call(ctx, h.priv(c), wire.VerbState, &wire.Request{Version: wire.ProtocolVersion, Origin: h.s.opts.Origin, Read: args})
	if err == nil {
		err = reportErr(rep)
	}
	if err != nil {
		return fail(err)
	}
	if rep.Live == nil {
		return fail(&wire.Error{Code: wire.CodeInternal, Message: "the helper's state report is empty"})
	}
	st.Parts, st.Candidate, st.Facts, st.Zeroed, st.Operator, st.Now = rep.Live.Parts, rep.Live.Candidate, rep.Live.Facts, rep.Live.Zeroed, h.op, rep.Now
	st.Took = time.Since(start)
	return st
}
