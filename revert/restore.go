package revert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Recovery: every confirm keeps the firewall as it was confirmed
// (confirmed.json, in the tx folder). recover's restore change puts such a
// state back, guarded like any other change: begin snapshots the broken
// state and arms, stage restores the confirmed one and guards it, and only
// a fresh connection keeps it.

const (
	confirmedFile = "confirmed.json" // the firewall as the tx was confirmed
	restoreFile   = "restore.json"   // a restore tx: the state it puts back
)

// keepConfirmed records the live firewall of a just confirmed tx, for a
// later recover (best effort: logged when it fails).
func (e *engine) keepConfirmed(ctx context.Context, rep *Report, r *txRecord) {
	_ = e.phase(rep, "keep-confirmed", func() error {
		snap, err := e.fw.Snapshot(ctx)
		if err == nil {
			err = e.st.saveSnapshotAs(r.ID, confirmedFile, snap)
		}
		if err != nil {
			e.logf(r.ID, "warning", "keep the confirmed state for recover: %v", err)
		}
		return nil
	})
}

// findConfirmed is the confirmed state of tx to, or of the newest confirmed
// tx that kept one (RestoreLastGood).
func (e *engine) findConfirmed(to string) (string, *Snapshot, error) {
	if to != RestoreLastGood {
		r, err := e.loadTx(to)
		if err != nil {
			return "", nil, err
		}
		if r.State != StateConfirmed {
			return "", nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("transaction %s ended %s, not confirmed: name a confirmed one, or last-good", to, r.State)}
		}
		snap, err := e.st.loadSnapshotAs(to, confirmedFile)
		if err != nil {
			return "", nil, &Error{Code: CodeSnapshot, Message: fmt.Sprintf("transaction %s kept no confirmed state (%v)", to, err)}
		}
		return to, snap, nil
	}
	ents, err := os.ReadDir(e.st.txRoot())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", nil, err
	}
	var best *txRecord
	for _, ent := range ents {
		r, err := e.st.load(ent.Name())
		if err != nil || r.State != StateConfirmed {
			continue
		}
		if _, err := os.Stat(e.st.path(r.ID, confirmedFile)); err != nil {
			continue
		}
		if best == nil || r.Created.After(best.Created) {
			best = r
		}
	}
	if best == nil {
		return "", nil, &Error{Code: CodeSnapshot, Message: "no confirmed transaction on this host kept its state: nothing to recover to (a host lifeline never confirmed a change on has no last-good)"}
	}
	snap, err := e.st.loadSnapshotAs(best.ID, confirmedFile)
	return best.ID, snap, err
}

// restoreChange puts a confirmed state back (recover).
type restoreChange struct {
	to     string    // begin: what to restore (a tx id or last-good)
	from   string    // the tx whose confirmed state it is
	target *Snapshot // that state
}

func (c *restoreChange) kind() ChangeKind { return ChangeRestore }
func (c *restoreChange) size() int64      { return snapshotSize(c.target) }

func (c *restoreChange) check(ctx context.Context, e *engine, a *BeginArgs, det *Detect, rep *Report) (*GuardPlan, error) {
	var err error
	if c.from, c.target, err = e.findConfirmed(c.to); err != nil {
		return nil, err
	}
	if err := e.phase(rep, "validate", func() error { return e.fw.ValidateSnapshot(ctx, c.target) }); err != nil {
		return nil, &Error{Code: CodeSnapshot, Message: fmt.Sprintf("the confirmed state of %s would not load: %v", c.from, err)}
	}
	// where the guard goes is planned on the restored ruleset, in stage
	return &GuardPlan{}, nil
}

func (c *restoreChange) keep(e *engine, id string) error {
	return e.st.saveSnapshotAs(id, restoreFile, c.target)
}

func (c *restoreChange) stage(ctx context.Context, e *engine, r *txRecord, g *Guard, rep *Report) (*bool, error) {
	if err := e.phase(rep, "restore", func() error { return e.fw.Restore(ctx, c.target) }); err != nil {
		return nil, fmt.Errorf("restore the confirmed state: %w", err)
	}
	// verified before the guard goes in (the guard is no part of the state)
	var verified *bool
	if ok, diff, err := e.fw.Equal(ctx, c.target); err == nil {
		verified = &ok
		if !ok {
			e.logf(r.ID, "warning", "the restored ruleset differs from the confirmed state:\n%s", diff)
		}
	}
	// then the guard, on the restored base chains
	plan, err := e.fw.LiveGuardPlan(ctx, r.Operator)
	if err != nil {
		return nil, fmt.Errorf("plan the kernel guard on the restored ruleset: %w", err)
	}
	g.Chains, r.GuardChains, r.Unguarded = plan.Covered, plan.Covered, plan.Uncovered
	r.Guard = describeGuard(g)
	if len(g.Chains) > 0 {
		if err := e.phase(rep, "guard", func() error { return e.fw.InstallGuard(ctx, g) }); err != nil {
			return nil, fmt.Errorf("install the kernel guard: %w", err)
		}
	}
	e.logf(r.ID, "info", "restored the state confirmed by %s (taken %s)", c.from, c.target.Taken.UTC().Format(time.RFC3339))
	return verified, nil
}

func (c *restoreChange) persist(context.Context, *engine, *txRecord) ([]string, error) {
	return nil, nil
}
