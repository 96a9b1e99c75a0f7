package revert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadState lists every table of every installed backend with counters
// (nft: its JSON; iptables: -save -c, for each backend that lists a table;
// ipset: save) and, when candidate is set, that ruleset as a private
// network namespace's kernel lists it after a load. Changes nothing live.
func (f *hostFirewall) ReadState(ctx context.Context, candidate *RulesetChange, zero bool) (*StateReport, error) {
	// the installed backends only: which of them hold rules (facts) would
	// read and parse every table once more, and the listings say it anyway
	all := f.installed()
	if len(all) == 0 {
		return nil, &Error{Code: CodeBackend, Message: "no firewall tool on this host: install nftables or iptables"}
	}
	rep := &StateReport{}
	for _, b := range all {
		p, ok, err := b.listState(ctx)
		if err != nil {
			return nil, fmt.Errorf("read state: %s: %w", b.name(), err)
		}
		if ok {
			rep.Parts = append(rep.Parts, p)
		}
	}
	if f.has("ipset") && !f.noIpsets() {
		out, err := f.run(ctx, nil, "ipset", "save")
		if err != nil {
			rep.Facts.Notes = append(rep.Facts.Notes, "ipset save failed: "+firstLine(err.Error()))
		} else if strings.TrimSpace(out) != "" {
			rep.Parts = append(rep.Parts, StatePart{Source: "ipset", Format: StateIpsetSave, Text: out})
		}
	}
	if zero {
		for _, b := range all {
			ok, err := b.zeroCounters(ctx)
			switch {
			case err != nil:
				rep.Facts.Notes = append(rep.Facts.Notes, b.name()+": counters not reset: "+firstLine(err.Error()))
			case ok:
				rep.Zeroed = append(rep.Zeroed, b.name())
			}
		}
	}
	if candidate != nil {
		if err := CheckRuleset(candidate.Format, candidate.Text, candidate.MaxSize); err != nil {
			return nil, err
		}
		b, err := f.backendFor(ctx, candidate.Format)
		if err != nil {
			return nil, err
		}
		if hf, err := f.facts(ctx); err == nil {
			rep.Facts.Active = hf.active
		}
		p, err := b.candidateState(ctx, candidate.Text)
		if err != nil {
			return nil, err
		}
		rep.Candidate = []StatePart{p}
	}
	return rep, nil
}

// listState is the nft backend's part of ReadState: every table nft
// lists, iptables-nft's and foreign ones included (the workstation's model
// tells them apart).
func (b *nftBackend) listState(ctx context.Context) (StatePart, bool, error) {
	out, err := b.f.run(ctx, nil, "nft", "-j", "list", "ruleset")
	if err != nil {
		return StatePart{}, false, err
	}
	return StatePart{Source: b.name(), Format: StateNftJSON, Text: out}, true, nil
}

// candidateState loads ruleset alone into a scratch namespace and lists it.
func (b *nftBackend) candidateState(ctx context.Context, ruleset string) (StatePart, error) {
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return StatePart{}, err
	}
	out, err := b.f.scratch(ctx, []byte(lf.String()), b.loadCmd(), []string{b.f.tool("nft"), "-j", "list", "ruleset"})
	if err != nil {
		return StatePart{}, b.explain(ctx, CodeInvalidRuleset, lf, err, nil)
	}
	return StatePart{Source: b.name(), Format: StateNftJSON, Text: out}, nil
}

// listState is an iptables backend's part of ReadState: its tables with
// counters, when it lists any.
func (b *iptBackend) listState(ctx context.Context) (StatePart, bool, error) {
	if b.certainlyEmpty() {
		return StatePart{}, false, nil
	}
	out, err := b.f.run(ctx, nil, b.save(), "-c")
	if err != nil {
		return StatePart{}, false, fmt.Errorf("save %s: %w", b.tool, err)
	}
	return StatePart{Source: b.name(), Format: StateIptablesSave, Text: out}, strings.Contains(out, "\n*") || strings.HasPrefix(out, "*"), nil
}

func (b *iptBackend) candidateState(ctx context.Context, ruleset string) (StatePart, error) {
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return StatePart{}, err
	}
	out, err := b.f.scratch(ctx, []byte(lf.String()), b.loadCmd(false), []string{b.f.tool(b.save())})
	if err != nil {
		return StatePart{}, b.explain(ctx, CodeInvalidRuleset, lf, err, nil)
	}
	return StatePart{Source: b.name(), Format: StateIptablesSave, Text: out}, nil
}

// zeroCounters resets the counters of every rule of the native nft tables
// (`nft reset rules`, nftables 1.0.8 and newer; older ones cannot without
// reloading the ruleset, which lifeline will not do for counters).
func (b *nftBackend) zeroCounters(ctx context.Context) (bool, error) {
	native, _, err := b.f.nftTables(ctx)
	if err != nil || len(native) == 0 {
		return false, err
	}
	var errs []string
	for _, t := range native {
		if _, err := b.f.run(ctx, nil, "nft", "reset", "rules", "table", t.family, t.name); err != nil {
			if strings.Contains(err.Error(), "syntax error") {
				return false, fmt.Errorf("this nft cannot reset rule counters (nft reset rules needs nftables 1.0.8 or newer); use counters --watch, which shows the change over an interval")
			}
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return false, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return true, nil
}

// zeroCounters resets the counters of every table the backend lists
// (iptables -t TABLE -Z: rules and chain policies).
func (b *iptBackend) zeroCounters(ctx context.Context) (bool, error) {
	ts, err := b.saveTables(ctx)
	if err != nil || len(ts) == 0 {
		return false, err
	}
	for _, t := range ts {
		if _, err := b.f.run(ctx, nil, b.tool, "-t", t.name, "-Z"); err != nil {
			return false, err
		}
	}
	return true, nil
}

// noIpsets reports, without running ipset, that the kernel has no ipset
// subsystem loaded (no /sys/module/ip_set, which a built-in ip_set has too,
// for its parameters), so that no set exists and ipset save prints nothing.
func (f *hostFirewall) noIpsets() bool {
	if !f.local {
		return false
	}
	_, err := os.Stat("/sys/module/ip_set")
	return errors.Is(err, os.ErrNotExist)
}
