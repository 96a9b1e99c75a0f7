package session

import (
	"context"
	"strings"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// Preflight asks t's helper whether ch (a ruleset change) would lock the
// operator out, over one connection of its own: the probe (how the host
// sees this connection: the path to evaluate), the helper (uploaded when
// missing), the preflight verb. It takes no lock, arms nothing and
// changes nothing on the host. The error is a connection, upload or
// helper failure, or the helper's refusal (an invalid ruleset, a missing
// backend) as a *wire.Error.
func (s *Session) Preflight(ctx context.Context, t Target, ch Change) (*wire.PreflightReport, error) {
	h := s.NewTx(t, nil)
	c, err := h.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := h.probe(ctx, c); err != nil {
		return nil, err
	}
	req := &wire.Request{Version: wire.ProtocolVersion, Origin: s.opts.Origin,
		Preflight: &wire.PreflightArgs{Change: ch.Wire(), Paths: h.paths()}}
	rep, err := h.call(ctx, h.priv(c), wire.VerbPreflight, req)
	if err == nil {
		err = reportErr(rep)
	}
	if err != nil {
		return nil, err
	}
	if rep.Preflight == nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Message: "the helper's preflight report is empty"}
	}
	return rep.Preflight, nil
}

// paths are the SSH paths of this connection as the host saw it (probe):
// "direct", or "via jump NAME" when the target is reached through a jump
// host, whose address is then the source the host sees.
func (h *Tx) paths() []wire.SSHPath {
	if h.op.Addr == "" || h.op.HostAddr == "" {
		return nil
	}
	return []wire.SSHPath{{Name: h.pathName(), Src: h.op.Addr, SrcPort: h.op.SrcPort, Dst: h.op.HostAddr, Port: h.op.SSHPort}}
}

func (h *Tx) pathName() string {
	jump := h.t.SSH.Jump
	if jump == "" {
		if r, ok := h.s.dialer.(interface {
			Resolve(remote.Target) (*remote.HostConfig, error)
		}); ok {
			if hc, err := r.Resolve(h.t.SSH); err == nil && len(hc.ProxyJump) > 0 {
				jump = strings.Join(hc.ProxyJump, ",")
			}
		}
	}
	if jump == "" || jump == "none" {
		return "direct"
	}
	hops := strings.Split(jump, ",")
	return "via jump " + strings.TrimSpace(hops[len(hops)-1])
}
