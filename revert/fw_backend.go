package revert

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// backend is one packet-filter family as a host drives it: native nft
// tables (nftBackend), or one iptables family in one mode (iptBackend:
// iptables-nft, iptables-legacy, ip6tables-nft, ip6tables-legacy).
// hostFirewall picks the backend for a format once (hostFacts) and
// delegates every format-specific step to it; nothing outside the backend
// files branches on a format or a backend name.
//
// Methods read the live ruleset through the hostFirewall's tool runner;
// only load changes it. Not safe for concurrent use (the engine serialises
// calls under the host lock).
type backend interface {
	// name is the backend's name in Detect and Snapshot ("nft",
	// "iptables-nft", ...).
	name() string
	// format is the ruleset syntax the backend loads.
	format() Format
	// inUse reports whether the live tables of the backend hold anything.
	inUse(ctx context.Context) (bool, error)
	// snapshot reads the live ruleset as a snapshot part; keep=false leaves
	// the backend out of the snapshot (an unused, non-default variant).
	snapshot(ctx context.Context) (p Part, keep bool, err error)
	// build returns the load file for the operator's ruleset, with the
	// live foreign chains and guard (nil: none) merged in; an *Error when
	// the backend cannot express the guard.
	build(ctx context.Context, ruleset string, guard *Guard) (*loadFile, error)
	// restoreFile returns the load file that puts the snapshot part back.
	restoreFile(ctx context.Context, p Part) (*loadFile, error)
	// load feeds lf to the live host in one tool run (iptables: with
	// --noflush when lf.noflush); a failure is an *Error with code
	// (ErrPartialApply when iptables committed a block).
	load(ctx context.Context, lf *loadFile, code string) error
	// trialLoad loads lf in a private, empty network namespace.
	trialLoad(ctx context.Context, lf *loadFile) error
	// explain turns a failed load of lf into an *Error with code, adding
	// what the kernel said (klog) and, where it helps, the refused rule.
	explain(ctx context.Context, code string, lf *loadFile, err error, klog []string) *Error
	// liveNorm is the live ruleset, normalised (normNft, normIPTables).
	liveNorm(ctx context.Context) (string, error)
	// partNorm is a snapshot part normalised the same way.
	partNorm(p Part) (string, error)
	// applied trial-loads ruleset (onTop: on top of the live ruleset) and
	// returns, per table and normalised, what it leaves, the live tables,
	// and the order to print them in.
	applied(ctx context.Context, ruleset string, onTop bool) (got, live map[string]string, order []string, err error)
	// guardPlan classifies the base chains Apply(ruleset) leaves.
	guardPlan(ctx context.Context, ruleset string, op Operator) (*GuardPlan, error)
	// liveGuardPlan classifies the base chains of the live ruleset, for a
	// guard installed with InstallGuard.
	liveGuardPlan(ctx context.Context, op Operator) (*GuardPlan, error)
	// ownsChain reports whether the guard of chain c goes into this
	// backend's tables.
	ownsChain(c GuardChain) bool
	// guardFile returns one load file that removes the live guard of
	// removeTx ("" : none) and then installs install (nil: none) into the
	// chains of install.Chains that belong to this backend, changing
	// nothing else; nil when there is nothing to do; an *Error when the
	// backend cannot express the guard.
	guardFile(ctx context.Context, removeTx string, install *Guard) (*loadFile, error)
	// bootPath is where the host's boot-time loader reads the backend's
	// ruleset, relative to the root.
	bootPath() string
	// bootText is what Persist writes there, from the live ruleset, and
	// the file mode for a new file.
	bootText(ctx context.Context) (text string, mode os.FileMode, err error)
	// bootCoversAll: the boot file replaces every native table, so BootEqual
	// compares them all, not only those it declares.
	bootCoversAll() bool
	// listState lists the backend's live tables for ReadState (ok false:
	// it lists none).
	listState(ctx context.Context) (p StatePart, ok bool, err error)
	// candidateState trial-loads ruleset (built as Apply would) into a
	// scratch namespace and lists what the kernel holds then.
	candidateState(ctx context.Context, ruleset string) (StatePart, error)
	// zeroCounters resets the counters of the backend's tables (ok false:
	// it has none).
	zeroCounters(ctx context.Context) (ok bool, err error)
	// sandboxLoads are the loads that leave, in the preflight's empty
	// namespace, what Apply(ruleset) leaves of the backend's tables, the
	// candidate's (with its load file) last.
	sandboxLoads(ctx context.Context, ruleset string) ([]pfLoad, error)
	// liveLoad is the load that puts the backend's live tables into the
	// preflight's namespace (a backend the change leaves as it is).
	liveLoad(ctx context.Context) (pfLoad, error)
	// caveats are the matches of the backend's syntax that the preflight's
	// sandbox cannot reproduce.
	caveats() []caveat
}

var (
	_ backend = (*nftBackend)(nil)
	_ backend = (*iptBackend)(nil)
)

// hostFacts are the facts about a host's firewall tools that lifeline
// detects once per hostFirewall (a hostFirewall serves one helper run,
// under the host lock): which backends are installed, which are in use,
// the iptables default mode per family and, from them, the backend for
// each format.
type hostFacts struct {
	all      []backend          // installed (iptables: -save and -restore), in Detect order
	names    []string           // Detect's backends: those of all whose main tool is there too
	active   []string           // Detect's active: those of names in use
	byFormat map[Format]backend // the backend each format loads with
}

// facts detects the host facts on the first call and returns them cached.
func (f *hostFirewall) facts(ctx context.Context) (*hostFacts, error) {
	f.factsMu.Lock()
	defer f.factsMu.Unlock()
	if f.hf != nil {
		return f.hf, nil
	}
	hf := &hostFacts{byFormat: map[Format]backend{}}
	if f.has("nft") {
		b := &nftBackend{f: f}
		hf.all = append(hf.all, b)
		hf.names = append(hf.names, b.name())
		hf.byFormat[FormatNft] = b
		used, err := b.inUse(ctx)
		if err != nil {
			return nil, err
		}
		if used {
			hf.active = append(hf.active, b.name())
		}
	}
	for _, fam := range []struct {
		format Format
		base   string
	}{{FormatIPTables, "iptables"}, {FormatIP6Tables, "ip6tables"}} {
		var avail, used []*iptBackend
		for _, mode := range []string{"nft", "legacy"} {
			b := &iptBackend{f: f, tool: fam.base + "-" + mode, fmt: fam.format, v6: fam.format == FormatIP6Tables}
			if !f.has(b.save()) || !f.has(b.restore()) {
				continue
			}
			listed := f.has(b.tool)
			avail = append(avail, b)
			hf.all = append(hf.all, b)
			if listed {
				hf.names = append(hf.names, b.name())
			}
			u, err := b.inUse(ctx)
			if err != nil {
				return nil, err
			}
			if u {
				used = append(used, b)
				if listed {
					hf.active = append(hf.active, b.name())
				}
			}
		}
		if b := f.pickIPT(ctx, fam.format, fam.base, avail, used); b != nil {
			hf.byFormat[fam.format] = b
		}
	}
	f.hf = hf
	return hf, nil
}

// installed returns the backends whose tools the host has, in Detect's
// order, without reading their tables (see facts).
func (f *hostFirewall) installed() []backend {
	var all []backend
	if f.has("nft") {
		all = append(all, &nftBackend{f: f})
	}
	for _, fam := range []struct {
		format Format
		base   string
	}{{FormatIPTables, "iptables"}, {FormatIP6Tables, "ip6tables"}} {
		for _, mode := range []string{"nft", "legacy"} {
			b := &iptBackend{f: f, tool: fam.base + "-" + mode, fmt: fam.format, v6: fam.format == FormatIP6Tables}
			if f.has(b.save()) && f.has(b.restore()) {
				all = append(all, b)
			}
		}
	}
	return all
}

// pickIPT picks the backend the host uses for an iptables family: the one
// in use; when both or none are, the mode of the default binary (base).
func (f *hostFirewall) pickIPT(ctx context.Context, format Format, base string, avail, used []*iptBackend) *iptBackend {
	if len(avail) == 0 {
		return nil
	}
	if len(used) == 1 {
		return used[0]
	}
	mode := f.defaultMode(ctx, base)
	if len(used) > 1 {
		f.opts.Log("both %s backends hold rules, using the default %s one", format, mode)
	}
	for _, b := range avail {
		if strings.HasSuffix(b.tool, "-"+mode) {
			return b
		}
	}
	return avail[0]
}

// defaultMode returns "nft" or "legacy" from `iptables --version` (base:
// iptables or ip6tables).
func (f *hostFirewall) defaultMode(ctx context.Context, base string) string {
	if !f.has(base) {
		return ""
	}
	if f.local && f.opts.Tools[base] == "" {
		// Debian's alternatives: iptables -> xtables-nft-multi or
		// xtables-legacy-multi; the name says the mode without a process
		if p, err := f.opts.LookPath(base); err == nil {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				switch filepath.Base(real) {
				case "xtables-nft-multi", base + "-nft":
					return "nft"
				case "xtables-legacy-multi", base + "-legacy":
					return "legacy"
				}
			}
		}
	}
	out, err := f.run(ctx, nil, base, "--version")
	if err != nil {
		return ""
	}
	switch {
	case strings.Contains(out, "(nf_tables)"):
		return "nft"
	case strings.Contains(out, "(legacy)"):
		return "legacy"
	}
	return "legacy" // iptables before 1.8 had no mode and was legacy
}

// backendFor returns the backend that loads format: CodeBackend when the
// host has none, CodeInvalidRuleset for an unknown format.
func (f *hostFirewall) backendFor(ctx context.Context, format Format) (backend, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	if b, ok := hf.byFormat[format]; ok {
		return b, nil
	}
	switch format {
	case FormatNft:
		return nil, &Error{Code: CodeBackend, Message: "nft is not installed: install nftables or send an iptables ruleset"}
	case FormatIPTables, FormatIP6Tables:
		return nil, &Error{Code: CodeBackend, Message: fmt.Sprintf("no %s backend on this host: install iptables", format)}
	}
	return nil, &Error{Code: CodeInvalidRuleset, Message: fmt.Sprintf("unknown format %q: use nft, iptables or ip6tables", format)}
}

// backendNamed returns the installed backend of a snapshot part.
func (f *hostFirewall) backendNamed(ctx context.Context, p Part) (backend, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range hf.all {
		if b.name() == p.Backend && b.format() == p.Format {
			return b, nil
		}
	}
	return nil, &Error{Code: CodeBackend, Message: fmt.Sprintf("backend %s of the snapshot is missing: install %s", p.Backend, installHint(p.Format))}
}

func installHint(format Format) string {
	if format == FormatNft {
		return "nftables"
	}
	return "iptables"
}

// guardBackends are the backends the kernel guard can live in: every
// installed one.
func (f *hostFirewall) guardBackends(ctx context.Context) ([]backend, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	return hf.all, nil
}

// planBackends are the backends LiveGuardPlan asks: the one of each format.
func (f *hostFirewall) planBackends(ctx context.Context) ([]backend, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	var out []backend
	for _, format := range []Format{FormatNft, FormatIPTables, FormatIP6Tables} {
		if b, ok := hf.byFormat[format]; ok {
			out = append(out, b)
		}
	}
	return out, nil
}

// backendOffers reports whether det offers a backend for format.
func backendOffers(det *Detect, f Format) bool {
	for _, b := range det.Backends {
		switch {
		case f == FormatNft && b == "nft",
			f == FormatIPTables && strings.HasPrefix(b, "iptables-"),
			f == FormatIP6Tables && strings.HasPrefix(b, "ip6tables-"):
			return true
		}
	}
	return false
}

// formatFits refuses a ruleset whose format is not the one of the host's
// active backend, unless the operator chose the format explicitly: an nft
// ruleset on a host whose rules are iptables' (legacy or iptables-nft), or
// an iptables ruleset on a host whose rules are native nft tables, would
// load as a second firewall layer next to the one in use, and every packet
// would have to pass both. A host with no rules at all accepts any format.
func formatFits(format Format, explicit bool, det *Detect) *Error {
	if explicit || det == nil {
		return nil
	}
	var nftActive bool
	var ipt []string
	for _, a := range det.Active {
		if a == "nft" {
			nftActive = true
		} else {
			ipt = append(ipt, a)
		}
	}
	switch {
	case format == FormatNft && !nftActive && len(ipt) > 0:
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("the host's active firewall is %s, but the ruleset is in nft format: it would load as a second layer beside the active rules; send an iptables-save ruleset, or pass --format nft to load it anyway", strings.Join(ipt, ", "))}
	case format != FormatNft && nftActive && len(ipt) == 0:
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("the host's active firewall is nft (native tables), but the ruleset is in %s format: it would load as a second layer beside the active rules; send an nft ruleset, or pass --format %s to load it anyway", format, format)}
	}
	return nil
}

// loadError turns a failed load of lf into an *Error with code, pointing at
// the operator's line when the tool names one.
func loadError(code string, format Format, lf *loadFile, err error) *Error {
	if format == FormatNft {
		return nftLoadError(code, lf, err)
	}
	return iptLoadError(code, lf, err)
}

// hostFactsCache is embedded in hostFirewall: the facts, once detected.
type hostFactsCache struct {
	factsMu sync.Mutex
	hf      *hostFacts
}
