package revert

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/wire"
)

// Block sets (lifeline block/unblock): where they live and how they change.
//
// nft hosts: table inet lifeline { set NAME { type ipv4_addr; flags
// interval,timeout; } set NAME6 { ... ipv6_addr ... } chain input { type
// filter hook input priority filter - 10; policy accept; ip saddr @NAME
// drop; ip6 saddr @NAME6 drop } }.
//
// iptables hosts (an iptables backend holds the rules): ipsets
// lifeline-NAME (hash:net family inet timeout 0) and lifeline-NAME-v6
// (inet6), matched by `-A LIFELINE-BLOCK -m set --match-set SET src -j
// DROP` in the filter table, jumped to from the top of INPUT.
//
// The table and the chain are carried over by apply and by every restore
// (isForeign), so the elements survive both: adding and removing elements
// changes no rule and needs no transaction. Only the first creation (and a
// forced block) runs as a guarded transaction (blockChange), whose revert
// removes what it added (undoBlock).

type (
	BlockChange = wire.BlockChange
	BlockArgs   = wire.BlockArgs
	BlockReport = wire.BlockReport
)

const (
	blockTable   = ruleset.BlockTable
	blockChain   = ruleset.BlockChain
	blockComment = ruleset.BlockCommentPrefix
	blockUndo    = "block-undo.json"
)

// blockHost is what one host holds of one block set.
type blockHost struct {
	mode string
	// pieces live
	table, set4, set6, rule4, rule6 bool // nft
	chain4, chain6, jump4, jump6    bool // iptables (rule4/rule6: the match-set rules)
	ipset4, ipset6                  bool
	have6                           bool // ipset mode: an ip6tables backend to hold the v6 rule
	// elements present, normalised (wire.NormalizeCIDR)
	elems map[string]bool
}

func (h *blockHost) ready() bool {
	if h.mode == wire.BlockModeNft {
		return h.table && h.set4 && h.set6 && h.rule4 && h.rule6
	}
	ok := h.ipset4 && h.chain4 && h.jump4 && h.rule4
	if h.have6 {
		ok = ok && h.ipset6 && h.chain6 && h.jump6 && h.rule6
	}
	return ok
}

// blocker is the part of the host firewall that drives block sets; the
// test fakes do not have it (block then answers CodeBackend).
type blocker interface {
	blockRead(ctx context.Context, name string) (*blockHost, error)
	blockEnsure(ctx context.Context, h *blockHost, name string) error
	blockBatch(ctx context.Context, h *blockHost, name string, cidrs []string, ttl time.Duration, remove bool) error
	blockDrop(ctx context.Context, was *blockHost, name string) error
}

var _ blocker = (*hostFirewall)(nil)

func (e *engine) blocker() (blocker, error) {
	b, ok := e.fw.(blocker)
	if !ok {
		return nil, &Error{Code: CodeBackend, Message: "this helper's firewall cannot hold block sets"}
	}
	return b, nil
}

// block: add or remove elements, no transaction (VerbBlock).
func (e *engine) block(ctx context.Context, req *Request, rep *Report) error {
	a := req.Block
	if a == nil {
		return &Error{Code: CodeBadRequest, Message: "block without its payload (block)"}
	}
	if err := a.Check(); err != nil {
		return err
	}
	bl, err := e.blocker()
	if err != nil {
		return err
	}
	var h *blockHost
	if err := e.phase(rep, "read", func() (err error) { h, err = bl.blockRead(ctx, a.Set); return err }); err != nil {
		return err
	}
	br := &BlockReport{Mode: h.mode, Ready: h.ready()}
	rep.Block = br
	if a.Probe || !br.Ready && !a.Remove {
		return nil // the workstation creates it in a guarded transaction
	}
	for _, c := range a.CIDRs {
		switch {
		case a.Remove && h.elems[c]:
			br.Removed = append(br.Removed, c)
		case a.Remove:
			br.Absent = append(br.Absent, c)
		default:
			br.Added = append(br.Added, c)
		}
	}
	return e.phase(rep, "batch", func() error {
		return bl.blockBatch(ctx, h, a.Set, a.CIDRs, time.Duration(a.TTL), a.Remove)
	})
}

// blockChange is a guarded block (ChangeBlock): create what is missing,
// add the elements; its revert removes them (undoBlock).
type blockChange struct {
	BlockChange
	force bool
}

// blockUndoRecord is what stage saw before it changed anything.
type blockUndoRecord struct {
	Set     string       `json:"set"`
	Was     blockWas     `json:"was"`
	Added   []string     `json:"added"` // elements not present before
	Created bool         `json:"created"`
	At      time.Time    `json:"at"`
	Report  *BlockReport `json:"report,omitempty"`
}

// blockWas is blockHost in JSON.
type blockWas struct {
	Mode                                         string `json:"mode"`
	Table, Set4, Set6, Rule4, Rule6              bool
	Chain4, Chain6, Jump4, Jump6, Ipset4, Ipset6 bool
	Have6                                        bool
}

func wasOf(h *blockHost) blockWas {
	return blockWas{Mode: h.mode, Table: h.table, Set4: h.set4, Set6: h.set6, Rule4: h.rule4, Rule6: h.rule6,
		Chain4: h.chain4, Chain6: h.chain6, Jump4: h.jump4, Jump6: h.jump6, Ipset4: h.ipset4, Ipset6: h.ipset6, Have6: h.have6}
}

func (w blockWas) host() *blockHost {
	return &blockHost{mode: w.Mode, table: w.Table, set4: w.Set4, set6: w.Set6, rule4: w.Rule4, rule6: w.Rule6,
		chain4: w.Chain4, chain6: w.Chain6, jump4: w.Jump4, jump6: w.Jump6, ipset4: w.Ipset4, ipset6: w.Ipset6, have6: w.Have6}
}

const blockFile = "block.json"

func (c *blockChange) kind() ChangeKind { return ChangeBlock }
func (c *blockChange) size() int64      { return int64(64 * (len(c.CIDRs) + 1)) }

func (c *blockChange) check(ctx context.Context, e *engine, a *BeginArgs, det *Detect, rep *Report) (*GuardPlan, error) {
	bl, err := e.blocker()
	if err != nil {
		return nil, err
	}
	var h *blockHost
	if err := e.phase(rep, "read", func() (err error) { h, err = bl.blockRead(ctx, c.Set); return err }); err != nil {
		return nil, refusal(err, CodeInternal, "read the block set: ")
	}
	var plan *GuardPlan
	if err := e.phase(rep, "guard-plan", func() (err error) {
		plan, err = e.fw.LiveGuardPlan(ctx, a.Operator)
		return err
	}); err != nil {
		return nil, refusal(err, CodeInternal, "plan the kernel guard: ")
	}
	// the block's own drop rule: the guard goes there too (stage creates
	// the chain before it installs the guard)
	var own GuardChain
	if h.mode == wire.BlockModeNft {
		own = GuardChain{Family: "inet", Table: blockTable, Chain: "input", Hook: "input", Type: "filter"}
	} else {
		fam := "iptables"
		if strings.Contains(a.Operator.Addr, ":") {
			fam = "ip6tables"
		}
		own = GuardChain{Family: fam, Table: "filter", Chain: "INPUT", Hook: "input"}
	}
	if !slices.ContainsFunc(plan.Covered, func(g GuardChain) bool {
		return g.Family == own.Family && g.Table == own.Table && g.Chain == own.Chain
	}) {
		plan.Covered = append(plan.Covered, own)
	}
	return plan, nil
}

func (c *blockChange) keep(e *engine, id string) error {
	b, err := json.Marshal(c.BlockChange)
	if err != nil {
		return err
	}
	return writeFileAtomic(e.st.path(id, blockFile), b, 0o600)
}

func (c *blockChange) stage(ctx context.Context, e *engine, r *txRecord, g *Guard, rep *Report) (*bool, error) {
	bl, err := e.blocker()
	if err != nil {
		return nil, err
	}
	h, err := bl.blockRead(ctx, c.Set)
	if err != nil {
		return nil, fmt.Errorf("read the block set %s: %w", c.Set, err)
	}
	u := &blockUndoRecord{Set: c.Set, Was: wasOf(h), Created: !h.ready(), At: time.Now().UTC()}
	for _, cidr := range c.CIDRs {
		if !h.elems[cidr] {
			u.Added = append(u.Added, cidr)
		}
	}
	// what to undo is on disk before anything changes
	if err := writeJSONFile(e.st.path(r.ID, blockUndo), u); err != nil {
		return nil, fmt.Errorf("record the block's undo: %w", err)
	}
	if u.Created {
		if err := e.phase(rep, "create", func() error { return bl.blockEnsure(ctx, h, c.Set) }); err != nil {
			return nil, fmt.Errorf("create the block set %s: %w", c.Set, err)
		}
	}
	if err := e.phase(rep, "batch", func() error {
		return bl.blockBatch(ctx, h, c.Set, c.CIDRs, time.Duration(c.TTL), false)
	}); err != nil {
		return nil, fmt.Errorf("add to the block set %s: %w", c.Set, err)
	}
	if len(g.Chains) > 0 {
		if err := e.phase(rep, "guard", func() error { return e.fw.InstallGuard(ctx, g) }); err != nil {
			return nil, fmt.Errorf("install the kernel guard: %w", err)
		}
	}
	after, err := bl.blockRead(ctx, c.Set)
	var verified *bool
	if err == nil {
		ok := after.ready()
		for _, cidr := range c.CIDRs {
			ok = ok && after.elems[cidr]
		}
		verified = &ok
	}
	rep.Block = &BlockReport{Mode: h.mode, Ready: true, Added: c.CIDRs, Created: u.Created}
	e.logf(r.ID, "info", "blocked %s in %s (%s)", strings.Join(c.CIDRs, ", "), c.Set, h.mode)
	return verified, nil
}

func (c *blockChange) persist(context.Context, *engine, *txRecord) ([]string, error) {
	return nil, nil // block sets live in the kernel only
}

// undoBlock removes, after the snapshot is restored, what the block
// transaction r added: its elements not present before, and the table,
// set or rule it created. The elements others added meanwhile (another
// block, fail2ban) stay, unless the set itself was created by r.
func (e *engine) undoBlock(ctx context.Context, r *txRecord) error {
	var u blockUndoRecord
	b, err := os.ReadFile(e.st.path(r.ID, blockUndo))
	if os.IsNotExist(err) {
		return nil // stage never got that far
	}
	if err == nil {
		err = json.Unmarshal(b, &u)
	}
	if err != nil {
		return fmt.Errorf("read the block's undo: %w", err)
	}
	bl, err := e.blocker()
	if err != nil {
		return err
	}
	now, err := bl.blockRead(ctx, u.Set)
	if err != nil {
		return err
	}
	if len(u.Added) > 0 {
		if err := bl.blockBatch(ctx, now, u.Set, u.Added, 0, true); err != nil {
			return fmt.Errorf("remove the blocked elements: %w", err)
		}
	}
	if u.Created {
		if err := bl.blockDrop(ctx, u.Was.host(), u.Set); err != nil {
			return err
		}
	}
	e.logf(r.ID, "info", "undid the block: removed %s from %s", strings.Join(u.Added, ", "), u.Set)
	return nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}
