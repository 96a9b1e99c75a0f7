package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// Done ends a host whose block set changed in one element batch, with no
// transaction (no rule changed, nothing to confirm).
const Done Outcome = "done"

// PhaseBlock: the host adds or removes block set elements.
const PhaseBlock = "block"

// BlockSpec is what block or unblock does on every host.
type BlockSpec struct {
	Set    string
	CIDRs  []string // normalised (wire.NormalizeCIDR)
	TTL    time.Duration
	Remove bool // unblock
	// Force blocks even what the preflight refuses, and always inside a
	// guarded transaction (reverted unless a fresh connection gets in).
	Force bool
	// Check is the preflight: given the host's live state, where the
	// block set lives (wire.BlockModeNft or BlockModeIpset) and the SSH
	// paths that must stay open, it says which of them the block would
	// drop (nil: none). One function, so that another method (a kernel
	// sandbox) can replace it.
	Check func(host string, live []wire.StatePart, mode string, spec BlockSpec, paths []BlockPath) ([]BlockRefusal, error)
}

// BlockPath is one SSH path a block must leave open: a packet from Src to
// the host's Dst:DstPort.
type BlockPath struct {
	What    string `json:"what"` // "this connection", "the workstation (as jump host h01 sees it)"
	Src     string `json:"src"`
	SrcPort int    `json:"src_port,omitempty"`
	Dst     string `json:"dst"`
	DstPort int    `json:"dst_port"`
}

// BlockRefusal is one path the block would drop.
type BlockRefusal struct {
	Path BlockPath `json:"path"`
	CIDR string    `json:"cidr"` // the blocked range holding Path.Src ("" when the model could not say)
	Why  string    `json:"why"`  // the deciding rule, or what the model could not evaluate
}

func (r BlockRefusal) String() string {
	s := fmt.Sprintf("blocking %s would drop %s (%s to port %d)", r.CIDR, r.Path.Src, r.Path.What, r.Path.DstPort)
	if r.CIDR == "" {
		s = fmt.Sprintf("the block would drop %s (%s to port %d)", r.Path.Src, r.Path.What, r.Path.DstPort)
	}
	if r.Why != "" {
		s += ": " + r.Why
	}
	return s
}

// BlockResult is what block or unblock did on one host (Result.Block).
type BlockResult struct {
	Set  string `json:"set"`
	Mode string `json:"mode,omitempty"`
	// Guarded: the change ran as a guarded transaction (first creation
	// of the set or its rule, or --force); the Result's outcome is then
	// the transaction's.
	Guarded  bool           `json:"guarded,omitempty"`
	Created  bool           `json:"created,omitempty"`
	Added    []string       `json:"added,omitempty"`
	Removed  []string       `json:"removed,omitempty"`
	Absent   []string       `json:"absent,omitempty"`
	TTL      time.Duration  `json:"ttl_ns,omitempty"`
	Paths    []BlockPath    `json:"paths,omitempty"`
	Refusals []BlockRefusal `json:"refusals,omitempty"`
}

// blockTxChange is the guarded form of a block (wire.ChangeBlock).
type blockTxChange struct {
	spec  BlockSpec
	force bool
}

var _ Change = (*blockTxChange)(nil)

func (c *blockTxChange) Wire() wire.Change {
	return wire.Change{Kind: wire.ChangeBlock, Force: c.force,
		Block: &wire.BlockChange{Set: c.spec.Set, CIDRs: c.spec.CIDRs, TTL: wire.Duration(c.spec.TTL)}}
}
func (c *blockTxChange) Phase() string      { return PhaseBlock }
func (c *blockTxChange) FailedHint() string { return "the block set could not be created or filled; " }
func (c *blockTxChange) Make(context.Context, *Tx, remote.Runner) error {
	return nil // the host made it in stage
}

// firstHop is a connection that can say how its first jump host sees the
// workstation (remote.Client).
type firstHop interface {
	FirstHopSSHConnection(ctx context.Context) (string, bool, error)
}

// Block adds spec's CIDRs to (or, Remove, deletes them from) the block set
// on t. Adding checks first (spec.Check) that no SSH path of the operator
// would be dropped: a refused host changes nothing, unless spec.Force.
// Where the set and its drop rule are live, the change is one element
// batch (outcome Done, no rule changes); where they are missing, or
// forced, it is a guarded transaction that creates them (outcome of the
// transaction: confirmed, or reverted when no fresh connection got in).
func (s *Session) Block(ctx context.Context, t Target, spec BlockSpec) *Result {
	ch := &blockTxChange{spec: spec, force: spec.Force}
	h := s.NewTx(t, ch)
	br := &BlockResult{Set: spec.Set, TTL: spec.TTL}
	h.res.Block = br
	defer func() {
		s.settleKept(h)
		h.res.Took = s.opts.Now().Sub(h.start)
		s.save(h.res)
	}()
	if h.Connect(ctx) != nil {
		return h.res
	}
	defer h.Close()
	var probe *wire.Report
	if err := h.phase(PhaseBlock, func() (err error) {
		probe, err = h.blockCall(ctx, wire.BlockArgs{Set: spec.Set, CIDRs: spec.CIDRs, TTL: wire.Duration(spec.TTL), Remove: spec.Remove, Probe: true})
		return err
	}); err != nil {
		h.end(Refused, err, "")
		return h.res
	}
	br.Mode = probe.Block.Mode
	if spec.Remove {
		return h.blockBatch(ctx, spec, br)
	}
	if spec.Check != nil {
		var refusals []BlockRefusal
		err := h.phase(PhaseCheck, func() error {
			paths, err := h.blockPaths(ctx)
			if err != nil {
				return err
			}
			br.Paths = paths
			rep, err := h.call(ctx, h.p1, wire.VerbState, &wire.Request{Version: wire.ProtocolVersion, Origin: h.s.opts.Origin, Read: &wire.StateArgs{}})
			if err == nil {
				err = reportErr(rep)
			}
			if err == nil && rep.Live == nil {
				err = &wire.Error{Code: wire.CodeInternal, Message: "the helper's state report is empty"}
			}
			if err != nil {
				return fmt.Errorf("read the state for the preflight: %w", err)
			}
			refusals, err = spec.Check(t.Name, rep.Live.Parts, br.Mode, spec, paths)
			return err
		})
		if err != nil {
			h.end(Refused, err, "")
			return h.res
		}
		br.Refusals = refusals
		if len(refusals) > 0 && !spec.Force {
			msgs := make([]string, len(refusals))
			for i, r := range refusals {
				msgs[i] = r.String()
			}
			h.end(Refused, fmt.Errorf("%s: refused, nothing changed: %s", t.Name, strings.Join(msgs, "; ")),
				"block a narrower range that leaves these addresses out, or pass --force to block inside a guarded transaction that reverts unless a fresh connection still gets in")
			return h.res
		}
	}
	if probe.Block.Ready && !spec.Force {
		return h.blockBatch(ctx, spec, br)
	}
	// first creation, or forced: a guarded transaction
	br.Guarded = true
	h.transact(ctx)
	if h.res.Outcome == Confirmed {
		br.Added = spec.CIDRs
		br.Created = !probe.Block.Ready
	}
	return h.res
}

// blockBatch adds or removes the elements in one batch (VerbBlock).
func (h *Tx) blockBatch(ctx context.Context, spec BlockSpec, br *BlockResult) *Result {
	var rep *wire.Report
	if err := h.phase(PhaseBlock, func() (err error) {
		rep, err = h.blockCall(ctx, wire.BlockArgs{Set: spec.Set, CIDRs: spec.CIDRs, TTL: wire.Duration(spec.TTL), Remove: spec.Remove})
		return err
	}); err != nil {
		h.end(Refused, err, "")
		return h.res
	}
	if !rep.Block.Ready && !spec.Remove {
		// the set went away between the probe and the batch
		h.end(Refused, fmt.Errorf("%s: the block set %s is gone: nothing changed", h.t.Name, spec.Set), "run the block again")
		return h.res
	}
	br.Added, br.Removed, br.Absent = rep.Block.Added, rep.Block.Removed, rep.Block.Absent
	h.end(Done, nil, "")
	return h.res
}

func (h *Tx) blockCall(ctx context.Context, a wire.BlockArgs) (*wire.Report, error) {
	rep, err := h.call(ctx, h.p1, wire.VerbBlock, &wire.Request{Version: wire.ProtocolVersion, Origin: h.s.opts.Origin, Block: &a})
	if err == nil {
		err = reportErr(rep)
	}
	if err == nil && rep.Block == nil {
		err = &wire.Error{Code: wire.CodeInternal, Message: "the helper's block report is empty"}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: block: %w", h.t.Name, err)
	}
	return rep, nil
}

// blockPaths are the SSH paths a block must leave open: this connection
// as the host sees it (for a jumped host: from the last jump host), and
// the workstation's own address as the first jump host sees it.
func (h *Tx) blockPaths(ctx context.Context) ([]BlockPath, error) {
	out, err := remote.Output(ctx, h.c1, `printf '%s\n' "$SSH_CONNECTION"`, nil)
	h.res.RoundTrips++
	if err != nil {
		return nil, fmt.Errorf("read SSH_CONNECTION: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		return nil, fmt.Errorf("SSH_CONNECTION not set by the host's sshd (got %q)", strings.TrimSpace(string(out)))
	}
	sport, _ := strconv.Atoi(f[1])
	port, _ := strconv.Atoi(f[3])
	paths := []BlockPath{{What: "this connection", Src: f[0], SrcPort: sport, Dst: f[2], DstPort: port}}
	if fh, ok := h.c1.(firstHop); ok {
		conn, jumped, err := fh.FirstHopSSHConnection(ctx)
		switch {
		case err != nil:
			return nil, err
		case jumped:
			jf := strings.Fields(conn)
			if len(jf) != 4 {
				return nil, fmt.Errorf("SSH_CONNECTION not set on the first jump host (got %q)", conn)
			}
			paths[0].What = "this connection, from the jump host"
			if jf[0] != f[0] {
				jport, _ := strconv.Atoi(jf[1])
				paths = append(paths, BlockPath{What: "the workstation, as the first jump host sees it", Src: jf[0], SrcPort: jport, Dst: f[2], DstPort: port})
			}
		}
	}
	return paths, nil
}
