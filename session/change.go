package session

import (
	"context"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// Change is what a guarded transaction does to a host. The engine (Tx) is
// the same for every kind: begin sends Wire, which the host checks before it
// arms anything; Change has the host stage it (the kernel guard, plus the
// host's part: a ruleset swap), then calls Make for the workstation's part
// (a command typed by the operator, an interactive session); Confirm proves
// access over a fresh connection.
type Change interface {
	// Wire is the change as begin sends it.
	Wire() wire.Change
	// Phase names the stage step in progress and timings ("apply").
	Phase() string
	// FailedHint starts the hint when the host's stage failed and it
	// restored the snapshot ("the ruleset failed to load; ").
	FailedHint() string
	// Make runs after the host staged the change, with the guard in
	// place, on the first connection (privileged). An error reverts the
	// transaction. A ruleset swap has nothing to do here.
	Make(ctx context.Context, tx *Tx, r remote.Runner) error
}

// Protection is what a change protects beyond the firewall: files the host
// snapshots at begin and restores on every revert (content, mode, owner;
// removed when they did not exist), then commands it runs after them.
type Protection struct {
	Protect  []string // absolute paths on the host
	OnRevert []string // sh -c commands, as root, in order
}

func (p Protection) wire(c wire.Change) wire.Change {
	c.Protect, c.OnRevert = p.Protect, p.OnRevert
	return c
}

// RulesetChange swaps a host's whole ruleset of one family (apply).
type RulesetChange struct {
	wire.RulesetChange
	Force bool
}

var _ Change = (*RulesetChange)(nil)

func (c *RulesetChange) Wire() wire.Change {
	rc := c.RulesetChange
	return wire.Change{Kind: wire.ChangeRuleset, Ruleset: &rc, Force: c.Force, ForceLockout: c.Force}
}
func (c *RulesetChange) Phase() string      { return PhaseApply }
func (c *RulesetChange) FailedHint() string { return "the ruleset failed to load; " }
func (c *RulesetChange) Make(context.Context, *Tx, remote.Runner) error {
	return nil // the host swapped it in stage
}

// rulesetChange is the change apply makes on target t.
func (s *Session) rulesetChange(t Target) *RulesetChange {
	return &RulesetChange{RulesetChange: wire.RulesetChange{
		Format: t.Format, Text: t.Ruleset, Persist: s.opts.Persist,
		FormatExplicit: t.FormatExplicit, MaxSize: s.opts.MaxRulesetSize,
	}, Force: s.opts.Force}
}

// GuardedChange changes nothing by itself: the host installs the kernel
// guard on its live ruleset at stage, and Do (the operator's commands, run
// on the first connection) makes the change while it is guarded. If Do
// fails, or the fresh confirm cannot get in afterwards, the host restores
// its snapshot.
type GuardedChange struct {
	// Do makes the change over r, privileged; nil does nothing.
	Do    func(ctx context.Context, r remote.Runner) error
	Force bool
	Protection
}

var _ Change = (*GuardedChange)(nil)

func (c *GuardedChange) Wire() wire.Change {
	return c.wire(wire.Change{Kind: wire.ChangeGuarded, Force: c.Force})
}
func (c *GuardedChange) Phase() string      { return PhaseStage }
func (c *GuardedChange) FailedHint() string { return "the kernel guard could not be installed; " }
func (c *GuardedChange) Make(ctx context.Context, tx *Tx, r remote.Runner) error {
	if c.Do == nil {
		return nil
	}
	return tx.phase(PhaseChange, func() error { return c.Do(ctx, r) })
}
