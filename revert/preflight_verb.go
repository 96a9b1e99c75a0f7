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
	if err := a.Change.Check(); err != nil {
		return err
	}
	if a.Change.Kind != ChangeRuleset {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("preflight evaluates a ruleset change, not a %s one", a.Change.Kind)}
	}
	rc := a.Change.Ruleset
	var det *Detect
	if err := e.phase(rep, "detect", func() (err error) { det, err = e.detectHost(ctx); return err }); err != nil {
		return err
	}
	rep.Detect = det
	if !backendOffers(det, rc.Format) {
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("no %s backend on this host (found: %s): install it or send another format", rc.Format, strings.Join(det.Backends, ", "))}
	}
	if pe := formatFits(rc.Format, rc.FormatExplicit, det); pe != nil {
		return pe
	}
	if pfw, ok := e.fw.(Preflighter); ok {
		// one sandbox: the candidate's load there is its trial load
		start := e.clock.Now()
		pf, err := pfw.ValidatePreflight(ctx, rc.Format, rc.Text, a.Paths)
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
		pf, err := e.runPreflight(ctx, rc, a.Paths)
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

// preflightBegin is begin's preflight of a ruleset change (after its
// validation and guard plan, before the snapshot): a certain lockout is
// refused unless forced (then logged); an undecided verdict proceeds. The
// validation stays the firewall's own (its trial's listing is a memo that
// spares the guard plan and stage's verify a load, and a proven ruleset
// needs no trial at all); the preflight's sandbox adds one candidate load.
func (e *engine) preflightBegin(ctx context.Context, txID string, c *rulesetChange, a *BeginArgs, rep *Report) *Error {
	var pf *PreflightReport
	_ = e.phase(rep, "preflight", func() (err error) {
		pf, err = e.runPreflight(ctx, &c.RulesetChange, preflightPaths(a))
		return err
	})
	rep.Preflight = pf
	if pf.Verdict != PreflightLockout {
		return nil
	}
	pe := lockoutError(e.env.Hostname, &c.RulesetChange, pf)
	if !c.forceLockout {
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
