package revert

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// preflight runs the preflight verb: check the change, validate it, and
// evaluate it in the sandbox against the request's paths. No lock, no tx
// folder, nothing live changes.
func (e *engine) preflight(ctx context.Context, req *Request, rep *Report) error {
	a := req.Preflight
	if a == nil {
		return &Error{Code: CodeBadRequest, Message: "preflight without its payload (preflight)"}
	}
	var det *Detect
	if err := e.phase(rep, "detect", func() (err error) { det, err = e.detectHost(ctx); return err }); err != nil {
		return err
	}
	rep.Detect = det
	return e.evaluateRules(ctx, det, &a.Change, a.Paths, rep)
}

// evaluateRules is the preflight of a ruleset nothing will load as such
// (the preflight verb; begin of exec --rules): the change's checks, then
// its validation and the preflight in one sandbox where the firewall can
// (rep.Preflight holds the verdicts). An invalid ruleset, a missing
// backend or a format that does not fit is the error.
func (e *engine) evaluateRules(ctx context.Context, det *Detect, ch *Change, paths []SSHPath, rep *Report) error {
	if err := ch.Check(); err != nil {
		return err
	}
	if ch.Kind != ChangeRuleset {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("preflight evaluates a ruleset change, not a %s one", ch.Kind)}
	}
	rc := ch.Ruleset
	if !backendOffers(det, rc.Format) {
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("no %s backend on this host (found: %s): install it or send another format", rc.Format, strings.Join(det.Backends, ", "))}
	}
	if pe := formatFits(rc.Format, rc.FormatExplicit, det); pe != nil {
		return pe
	}
	if pfw, ok := e.fw.(Preflighter); ok {
		// one sandbox: the candidate's load there is its trial load
		start := e.clock.Now()
		pf, err := pfw.ValidatePreflight(ctx, rc.Format, rc.Text, paths)
		took := e.clock.Now().Sub(start)
		if err != nil {
			rep.Phases = append(rep.Phases, Phase{Name: "validate", Took: took})
			return refusal(err, CodeInvalidRuleset, "")
		}
		rep.Phases = append(rep.Phases, Phase{Name: "validate", Took: took - time.Duration(pf.Took)}, Phase{Name: "preflight", Took: time.Duration(pf.Took)})
		rep.Preflight = pf
		return nil
	}
	if err := e.phase(rep, "validate", func() error { return e.fw.Validate(ctx, rc.Format, rc.Text) }); err != nil {
		return refusal(err, CodeInvalidRuleset, "")
	}
	return e.phase(rep, "preflight", func() error {
		pf, err := e.runPreflight(ctx, rc, paths)
		rep.Preflight = pf
		return err
	})
}

// runPreflight evaluates rc in the sandbox. A sandbox that cannot load
// the candidate (it validated, so the cause is the sandbox) makes every
// path undecided rather than refusing the change.
func (e *engine) runPreflight(ctx context.Context, rc *RulesetChange, paths []SSHPath) (*PreflightReport, error) {
	undecidedAll := func(why string) *PreflightReport {
		pf := &PreflightReport{Verdict: PreflightUndecided}
		for _, p := range paths {
			pf.Paths = append(pf.Paths, undecided(p, FlowEstablished, why), undecided(p, FlowNew, why))
		}
		if len(paths) == 0 {
			pf.Paths = append(pf.Paths, PathVerdict{Flow: FlowNew, Verdict: PreflightUndecided, Reason: why})
		}
		return pf
	}
	p, ok := e.fw.(Preflighter)
	if !ok {
		return undecidedAll("this helper's firewall cannot run the preflight sandbox"), nil
	}
	pf, err := p.Preflight(ctx, rc.Format, rc.Text, paths)
	if err != nil {
		return undecidedAll("the sandbox could not evaluate the ruleset: " + err.Error()), nil
	}
	return pf, nil
}

// lockoutError is begin's refusal of a change the preflight found certain
// to lock the operator out: every flow it drops, by what.
func lockoutError(host string, rc *RulesetChange, pf *PreflightReport) *Error {
	var why []string
	e := &Error{Code: CodePreflightLockout}
	for _, v := range pf.Paths {
		if v.Verdict != PreflightLockout {
			continue
		}
		why = append(why, v.String())
		if e.Line == 0 && v.Line > 0 {
			lines := strings.Split(rc.Text, "\n")
			if v.Line <= len(lines) {
				e.Line, e.Text = v.Line, strings.TrimSpace(lines[v.Line-1])
			}
		}
	}
	e.Message = fmt.Sprintf("the preflight found that this ruleset would lock you out of %s: %s; nothing was changed; fix the ruleset, or pass --force to apply it anyway (the revert timer and the kernel guard still protect the change)", host, strings.Join(why, "; "))
	return safeError(e)
}

// preflightBegin is begin's preflight (after the change's validation and
// guard plan, before the snapshot): of the ruleset a ruleset change swaps
// in, or of the one Preflight.Change names for a change that loads none
// itself (exec --rules: the ruleset its command is meant to leave,
// validated and preflighted in one sandbox). A certain lockout is refused
// unless forced (then logged); an undecided verdict proceeds. For a
// ruleset change the validation stays the firewall's own (its trial's
// listing is a memo that spares the guard plan and stage's verify a load,
// and a proven ruleset needs no trial at all); the preflight's sandbox
// adds one candidate load.
func (e *engine) preflightBegin(ctx context.Context, txID string, ch hostChange, det *Detect, a *BeginArgs, rep *Report) *Error {
	var rc *RulesetChange
	force := a.Change.ForceLockout
	switch c := ch.(type) {
	case *rulesetChange:
		rc, force = &c.RulesetChange, c.forceLockout
		_ = e.phase(rep, "preflight", func() (err error) {
			rep.Preflight, err = e.runPreflight(ctx, rc, preflightPaths(a))
			return err
		})
	default:
		if a.Preflight.Change.Ruleset == nil {
			return nil // nothing to evaluate: the guard and the fresh confirm protect it
		}
		rc = a.Preflight.Change.Ruleset
		if err := e.evaluateRules(ctx, det, &a.Preflight.Change, preflightPaths(a), rep); err != nil {
			return refusal(err, CodeInvalidRuleset, "the ruleset to preflight: ")
		}
	}
	pf := rep.Preflight
	if pf == nil || pf.Verdict != PreflightLockout {
		return nil
	}
	pe := lockoutError(e.env.Hostname, rc, pf)
	if !force {
		return pe
	}
	e.logf(txID, "warning", "forced past the preflight's lockout verdict: %s", pe.Message)
	return nil
}

// preflightPaths are the paths begin evaluates: those asked for, else the
// operator's.
func preflightPaths(a *BeginArgs) []SSHPath {
	if len(a.Preflight.Paths) > 0 {
		return a.Preflight.Paths
	}
	return PathsOf(a.Operator)
}
