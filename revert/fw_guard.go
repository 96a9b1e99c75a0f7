package revert

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// The kernel guard as its own step: installed into, moved in and removed
// from the live ruleset without replacing anything else.

// GuardPlan trial-loads ruleset on top of the live tables in a scratch
// namespace and says which base chains of the result the guard covers.
func (f *hostFirewall) GuardPlan(ctx context.Context, format Format, ruleset string, op Operator) (*GuardPlan, error) {
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return nil, err
	}
	return b.guardPlan(ctx, ruleset, op)
}

// LiveGuardPlan merges the live plans of the backend of every format.
func (f *hostFirewall) LiveGuardPlan(ctx context.Context, op Operator) (*GuardPlan, error) {
	bs, err := f.planBackends(ctx)
	if err != nil {
		return nil, err
	}
	p := &GuardPlan{}
	for _, b := range bs {
		bp, err := b.liveGuardPlan(ctx, op)
		if err != nil {
			return nil, fmt.Errorf("plan the guard for live %s: %w", b.name(), err)
		}
		p.Covered = append(p.Covered, bp.Covered...)
		p.Skipped = append(p.Skipped, bp.Skipped...)
		p.Uncovered = append(p.Uncovered, bp.Uncovered...)
	}
	return p, nil
}

func (f *hostFirewall) InstallGuard(ctx context.Context, g *Guard) error {
	if err := checkGuardArg(g); err != nil {
		return err
	}
	if err := f.guardOp(ctx, "", g); err != nil {
		if rerr := f.guardOp(ctx, g.TxID, nil); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the guard installed in part: %w", rerr))
		}
		return fmt.Errorf("install guard %s: %w", g.TxID, err)
	}
	return nil
}

func (f *hostFirewall) RemoveGuard(ctx context.Context, txID string) error {
	if txID == "" {
		return &Error{Code: CodeInternal, Message: "remove guard: no transaction id"}
	}
	if err := f.guardOp(ctx, txID, nil); err != nil {
		return fmt.Errorf("remove guard %s: %w", txID, err)
	}
	return nil
}

func (f *hostFirewall) RefreshGuard(ctx context.Context, g *Guard) error {
	if err := checkGuardArg(g); err != nil {
		return err
	}
	if err := f.guardOp(ctx, g.TxID, g); err != nil {
		return fmt.Errorf("refresh guard %s: %w", g.TxID, err)
	}
	return nil
}

func checkGuardArg(g *Guard) error {
	if g == nil || g.TxID == "" {
		return &Error{Code: CodeInternal, Message: "guard without a transaction id"}
	}
	return nil
}

// guardOp removes the guard of removeTx ("": none) from every installed
// backend and installs install (nil: none) into the backend of each
// format, one load per backend that has something to do.
func (f *hostFirewall) guardOp(ctx context.Context, removeTx string, install *Guard) error {
	all, err := f.guardBackends(ctx)
	if err != nil {
		return err
	}
	chosen, err := f.planBackends(ctx)
	if err != nil {
		return err
	}
	if install != nil {
		for _, c := range install.Chains {
			if !slices.ContainsFunc(chosen, func(b backend) bool { return b.ownsChain(c) }) {
				return &Error{Code: CodeBackend, Message: fmt.Sprintf("no firewall backend on this host can guard %s", c)}
			}
		}
	}
	type step struct {
		b  backend
		lf *loadFile
	}
	var steps []step
	for _, b := range all {
		var ins *Guard
		if install != nil && slices.Contains(chosen, b) {
			ins = install
		}
		lf, err := b.guardFile(ctx, removeTx, ins)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name(), err)
		}
		if lf != nil {
			steps = append(steps, step{b, lf})
		}
	}
	for _, s := range steps {
		if err := s.b.load(ctx, s.lf, CodeApplyFailed); err != nil {
			return fmt.Errorf("%s: %w", s.b.name(), err)
		}
	}
	return nil
}
