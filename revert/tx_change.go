package revert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// hostChange is what a transaction does between its snapshot and its
// confirm, as the host engine drives it. The engine around it is the same
// for every kind: begin (lock, check, snapshot, arm), stage (the guard and
// the change), confirm (remove the guard, disarm, persist), extend, abort
// and the timer's revert, which restores the snapshot whatever the change
// was.
//
// Implementations keep no state between verbs beyond what keep writes into
// the transaction's folder: each verb is a new helper process.
type hostChange interface {
	// kind names the change in the record.
	kind() ChangeKind
	// check runs in begin, under the lock, before anything is written or
	// armed: a refusal here changes nothing. It returns where the kernel
	// guard goes (GuardPlan.Covered) and may time phases into rep.
	check(ctx context.Context, e *engine, a *BeginArgs, det *Detect, rep *Report) (*GuardPlan, error)
	// size is about how many bytes keep writes.
	size() int64
	// keep writes what stage and confirm need into the tx folder id.
	keep(e *engine, id string) error
	// stage makes the change live with the guard g merged in, atomically
	// as far as the change allows, and reports whether the result could
	// be verified (nil: nothing to verify). An error means the live state
	// may be partly changed: the engine restores the snapshot at once.
	stage(ctx context.Context, e *engine, r *txRecord, g *Guard, rep *Report) (verified *bool, err error)
	// persist writes the change where the host's boot reads it (confirm,
	// when the record asks for it) and returns the files written.
	persist(ctx context.Context, e *engine, r *txRecord) ([]string, error)
}

// newChange is the host side of a change sent with begin.
func newChange(c *Change) (hostChange, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	switch c.Kind {
	case ChangeRuleset:
		return &rulesetChange{RulesetChange: *c.Ruleset, force: c.Force, forceLockout: c.ForceLockout}, nil
	case ChangeGuarded:
		return guardedChange{force: c.Force}, nil
	case ChangeRestore:
		return &restoreChange{to: c.Restore.To}, nil
	case ChangeBlock:
		return &blockChange{BlockChange: *c.Block, force: c.Force}, nil
	}
	return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown change kind %q", c.Kind)}
}

// changeOf rebuilds the change of a recorded transaction from its folder.
func (e *engine) changeOf(r *txRecord) (hostChange, error) {
	switch r.Change {
	case ChangeGuarded:
		return guardedChange{}, nil
	case ChangeRestore:
		snap, err := e.st.loadSnapshotAs(r.ID, restoreFile)
		if err != nil {
			return nil, err
		}
		return &restoreChange{target: snap}, nil
	case ChangeBlock:
		var bc BlockChange
		b, err := os.ReadFile(e.st.path(r.ID, blockFile))
		if err == nil {
			err = json.Unmarshal(b, &bc)
		}
		if err != nil {
			return nil, fmt.Errorf("transaction %s: read its block change: %w", r.ID, err)
		}
		return &blockChange{BlockChange: bc}, nil
	case ChangeRuleset, "": // records written before there were kinds
		text, err := e.st.loadRuleset(r.ID)
		if err != nil {
			return nil, err
		}
		return &rulesetChange{RulesetChange: RulesetChange{Format: r.Format, Text: text, Persist: r.Persist}}, nil
	}
	return nil, fmt.Errorf("transaction %s has an unknown change kind %q", r.ID, r.Change)
}

// refusal maps a check failure to an *Error with code (when it is not one).
func refusal(err error, code, prefix string) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: code, Message: prefix + err.Error()}
}

// refuseUnguarded refuses a plan with chains the guard cannot cover,
// unless forced (then it logs them).
func (e *engine) refuseUnguarded(txID string, plan *GuardPlan, force bool, what string) error {
	if len(plan.Uncovered) == 0 {
		return nil
	}
	if !force {
		return &Error{Code: CodeUnguarded, Message: fmt.Sprintf(
			"the kernel guard cannot cover %s of %s, so if the revert timer died the host could stay locked out: %s; change the ruleset, or pass --force to rely on the revert timer alone for these",
			plural(len(plan.Uncovered), "base chain"), what, strings.Join(chainNames(plan.Uncovered, true), "; "))}
	}
	e.logf(txID, "warning", "forced: the guard does not cover %s", strings.Join(chainNames(plan.Uncovered, true), "; "))
	return nil
}

// rulesetChange swaps one family's whole ruleset (apply).
type rulesetChange struct {
	RulesetChange
	force        bool
	forceLockout bool
}

func (c *rulesetChange) kind() ChangeKind { return ChangeRuleset }
func (c *rulesetChange) size() int64      { return int64(len(c.Text)) }

func (c *rulesetChange) check(ctx context.Context, e *engine, a *BeginArgs, det *Detect, rep *Report) (*GuardPlan, error) {
	if !backendOffers(det, c.Format) {
		return nil, &Error{Code: CodeBackend, Message: fmt.Sprintf("no %s backend on this host (found: %s): install it or send another format", c.Format, strings.Join(det.Backends, ", "))}
	}
	if pe := formatFits(c.Format, c.FormatExplicit, det); pe != nil {
		return nil, pe
	}
	loadStart := time.Now()
	if err := e.phase(rep, "validate", func() error { return e.fw.Validate(ctx, c.Format, c.Text) }); err != nil {
		return nil, refusal(err, CodeInvalidRuleset, "")
	}
	// The deadline counts from the arm: stage loads the ruleset (about as
	// long as the trial load took), then the workstation needs a fresh
	// connection and the confirm. A ruleset whose load eats a third of the
	// timeout would revert a good change while holding the lock.
	took := time.Since(loadStart)
	if tt, ok := e.fw.(interface{ TrialTook() time.Duration }); ok {
		took = max(took, tt.TrialTook()) // a memo answered: the time the trial took then
	}
	if 3*took > time.Duration(a.ConfirmTimeout) {
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf(
			"the trial load of this ruleset took %s, too long for the %s confirm timeout (apply loads it again, then the fresh connection and the confirm must fit): raise --confirm-timeout to at least %s; nothing was changed",
			took.Round(time.Millisecond), time.Duration(a.ConfirmTimeout), (4 * took).Round(time.Second))}
	}
	var plan *GuardPlan
	if err := e.phase(rep, "guard-plan", func() (err error) {
		plan, err = e.fw.GuardPlan(ctx, c.Format, c.Text, a.Operator)
		return err
	}); err != nil {
		return nil, refusal(err, CodeInvalidRuleset, "plan the kernel guard: ")
	}
	return plan, nil
}

func (c *rulesetChange) keep(e *engine, id string) error {
	return writeFileAtomic(e.st.path(id, rulesetFile), []byte(c.Text), 0o600)
}

func (c *rulesetChange) stage(ctx context.Context, e *engine, r *txRecord, g *Guard, rep *Report) (*bool, error) {
	if err := e.phase(rep, "apply", func() error { return e.fw.Apply(ctx, c.Format, c.Text, g) }); err != nil {
		return nil, fmt.Errorf("apply %s ruleset: %w", c.Format, err)
	}
	var verified *bool
	_ = e.phase(rep, "verify", func() error {
		ok, diff, err := e.fw.Contains(ctx, c.Format, c.Text)
		if err != nil {
			e.logf(r.ID, "warning", "verify apply: %v", err)
			return nil
		}
		verified = &ok
		if !ok {
			e.logf(r.ID, "warning", "live ruleset does not hold the applied one:\n%s", diff)
		}
		return nil
	})
	return verified, nil
}

func (c *rulesetChange) persist(ctx context.Context, e *engine, r *txRecord) ([]string, error) {
	return e.fw.Persist(ctx, c.Format, c.Text)
}

// guardedChange changes nothing by itself: stage installs the kernel guard
// on the live ruleset, and the operator's own commands (lifeline exec,
// lifeline shell) make the change while the transaction is staged. Its
// revert restores the snapshot like any other.
type guardedChange struct{ force bool }

func (guardedChange) kind() ChangeKind                { return ChangeGuarded }
func (guardedChange) size() int64                     { return 0 }
func (guardedChange) keep(e *engine, id string) error { return nil }

func (c guardedChange) check(ctx context.Context, e *engine, a *BeginArgs, det *Detect, rep *Report) (*GuardPlan, error) {
	var plan *GuardPlan
	if err := e.phase(rep, "guard-plan", func() (err error) {
		plan, err = e.fw.LiveGuardPlan(ctx, a.Operator)
		return err
	}); err != nil {
		return nil, refusal(err, CodeInternal, "plan the kernel guard: ")
	}
	return plan, nil
}

func (guardedChange) stage(ctx context.Context, e *engine, r *txRecord, g *Guard, rep *Report) (*bool, error) {
	if len(g.Chains) == 0 {
		return nil, nil
	}
	if err := e.phase(rep, "guard", func() error { return e.fw.InstallGuard(ctx, g) }); err != nil {
		return nil, fmt.Errorf("install the kernel guard: %w", err)
	}
	return nil, nil
}

func (guardedChange) persist(ctx context.Context, e *engine, r *txRecord) ([]string, error) {
	// the operator's commands wrote their own files; the firewall as it is
	// after them is what persists
	return nil, nil
}
