package revert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// nftBackend drives the native nft tables with the nft tool.
type nftBackend struct{ f *hostFirewall }

func (b *nftBackend) name() string   { return "nft" }
func (b *nftBackend) format() Format { return FormatNft }

func (b *nftBackend) inUse(ctx context.Context) (bool, error) {
	native, _, err := b.f.nftTables(ctx)
	return len(native) > 0, err
}

// nftReadOnly reports whether an nft run only lists (see readOnly).
func nftReadOnly(name string, args []string) bool {
	return name == "nft" && len(args) > 0 && args[0] == "list"
}

var xtablesNames = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

// nftTables lists live tables: native non-foreign ones (lifeline's to
// snapshot and replace) and the others (iptables-nft's and foreign ones,
// never touched by nft).
func (f *hostFirewall) nftTables(ctx context.Context) (native, other []nftTableID, err error) {
	native, other, _, err = f.nftTableKinds()
	return native, other, err
}

// nftTableKinds is nftTables, with the tables of other that iptables-nft,
// arptables-nft or ebtables-nft manage (xt).
func (f *hostFirewall) nftTableKinds() (native, other, xt []nftTableID, err error) {
	all, chains, err := f.nftInventory()
	if err != nil {
		return nil, nil, nil, err
	}
	for _, t := range all {
		isXT := xtablesManaged(t, chains)
		if t.family == "arp" && t.name == "filter" || t.family == "bridge" && (t.name == "filter" || t.name == "nat" || t.name == "broute") {
			isXT = true // arptables-nft / ebtables-nft
		}
		foreign := f.isForeign(t.name)
		for _, c := range chains {
			if c.table == t && f.isForeign(c.name) {
				foreign = true
			}
		}
		if isXT {
			xt = append(xt, t)
		}
		if isXT || foreign {
			other = append(other, t)
		} else {
			native = append(native, t)
		}
	}
	return native, other, xt, nil
}

// listNative lists the live native nft tables (see nftTables) as blocks.
func (b *nftBackend) listNative(ctx context.Context) ([]nftBlock, error) {
	native, _, err := b.f.nftTables(ctx)
	if err != nil {
		return nil, fmt.Errorf("read live nft tables: %w", err)
	}
	var blocks []nftBlock
	for _, t := range native {
		out, err := b.f.run(ctx, nil, "nft", "list", "table", t.family, t.name)
		if err != nil {
			return nil, fmt.Errorf("list nft table %s: %w", t, err)
		}
		blocks = append(blocks, splitNftTables(out)...)
	}
	return blocks, nil
}

func (b *nftBackend) snapshot(ctx context.Context) (Part, bool, error) {
	blocks, err := b.listNative(ctx)
	if err != nil {
		return Part{}, false, err
	}
	var s strings.Builder
	for _, blk := range blocks {
		s.WriteString(blk.text)
	}
	return Part{Backend: b.name(), Format: FormatNft, Text: s.String()}, true, nil
}

func (b *nftBackend) build(ctx context.Context, ruleset string, guard *Guard) (*loadFile, error) {
	native, _, err := b.f.nftTables(ctx)
	if err != nil {
		return nil, err
	}
	return buildNft(ruleset, native, guard, b.f.opts.Log), nil
}

// restoreFile: one file that deletes every live native, non-foreign table
// and every table of the snapshot (idiom: works whether it exists) and
// recreates the snapshot's non-foreign tables.
func (b *nftBackend) restoreFile(ctx context.Context, p Part) (*loadFile, error) {
	native, _, err := b.f.nftTables(ctx)
	if err != nil {
		return nil, err
	}
	lf := &loadFile{}
	ids := slices.Clone(native)
	var keep []nftBlock
	for _, blk := range splitNftTables(p.Text) {
		if b.f.isForeign(blk.id.name) {
			b.f.opts.Log("snapshot table %s is foreign, leaving the live one", blk.id)
			continue
		}
		keep = append(keep, blk)
		if !slices.Contains(ids, blk.id) {
			ids = append(ids, blk.id)
		}
	}
	for _, id := range ids {
		for _, l := range nftIdiom(id) {
			lf.add(l, 0)
		}
	}
	n := 0
	for _, blk := range keep {
		for _, l := range splitLines(blk.text) {
			n++
			lf.add(l, n)
		}
	}
	return lf, nil
}

func (b *nftBackend) loadCmd() []string { return []string{b.f.tool("nft"), "-f", "-"} }

func (b *nftBackend) load(ctx context.Context, lf *loadFile, code string) error {
	cmd := b.loadCmd()
	if _, err := b.f.run(ctx, []byte(lf.String()), cmd[0], cmd[1:]...); err != nil {
		return fmt.Errorf("load %s: %w", FormatNft, nftLoadError(code, lf, err))
	}
	return nil
}

func (b *nftBackend) trialLoad(ctx context.Context, lf *loadFile) error {
	_, err := b.f.scratch(ctx, []byte(lf.String()), b.loadCmd(), nil)
	return err
}

func (b *nftBackend) explain(ctx context.Context, code string, lf *loadFile, err error, klog []string) *Error {
	e := nftLoadError(code, lf, err)
	if len(klog) > 0 {
		e.Message = quoteSafe(e.Message+"; kernel: "+klog[len(klog)-1], 4*maxQuoted)
	}
	return e
}

var nftErrRE = regexp.MustCompile(`(?m)^[^\n:]*:(\d+):\d+(?:-\d+)?: (Error: .*)$`)

// nftLoadError is loadError for nft -f.
func nftLoadError(code string, lf *loadFile, err error) *Error {
	var te *ToolError
	if !errors.As(err, &te) {
		return safeError(&Error{Code: code, Message: err.Error()})
	}
	stderr := strings.TrimSpace(te.Stderr)
	e := &Error{Code: code, Message: firstLine(stderr)}
	line := 0
	if m := nftErrRE.FindStringSubmatch(stderr); m != nil {
		line, _ = strconv.Atoi(m[1])
		e.Message = m[2]
	}
	return pointAt(e, lf, line)
}

func (b *nftBackend) liveNorm(ctx context.Context) (string, error) {
	blocks, err := b.listNative(ctx)
	if err != nil {
		return "", err
	}
	return normNft(blocks), nil
}

func (b *nftBackend) partNorm(p Part) (string, error) {
	var keep []nftBlock
	for _, blk := range splitNftTables(p.Text) {
		if !b.f.isForeign(blk.id.name) {
			keep = append(keep, blk)
		}
	}
	return normNft(keep), nil
}

func (b *nftBackend) applied(ctx context.Context, ruleset string, onTop bool) (got, live map[string]string, order []string, err error) {
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	got, live = map[string]string{}, map[string]string{}
	blocks, err := b.listNative(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var pre strings.Builder
	replaced := nftReplaced(ruleset)
	for _, blk := range blocks {
		live[blk.id.String()] = normNft([]nftBlock{blk})
		order = append(order, blk.id.String())
		// a live table the ruleset deletes first (it declares it, or
		// flushes its family) leaves nothing of itself: loading it into
		// the trial too would change nothing but the cost, and keep the
		// trial from being the validation's (its listing memo)
		if onTop && !replaced(blk.id) {
			pre.WriteString(blk.text)
		}
	}
	out, err := b.f.scratch(ctx, []byte(pre.String()+lf.String()), b.loadCmd(), []string{b.f.tool("nft"), "list", "ruleset"})
	if err != nil {
		return nil, nil, nil, nftLoadError(CodeInvalidRuleset, lf, err)
	}
	for _, blk := range splitNftTables(out) {
		if !b.f.isForeign(blk.id.name) {
			got[blk.id.String()] = normNft([]nftBlock{blk})
			if !slices.Contains(order, blk.id.String()) {
				order = append(order, blk.id.String())
			}
		}
	}
	return got, live, order, nil
}

func (b *nftBackend) guardPlan(ctx context.Context, ruleset string, op Operator) (*GuardPlan, error) {
	got, live, order, err := b.applied(ctx, ruleset, true)
	if err != nil {
		return nil, err
	}
	_, other, err := b.f.nftTables(ctx)
	if err != nil {
		return nil, err
	}
	return planNft(got, live, order, nftDeclaredTables(ruleset), other, strings.Contains(op.Addr, ":")), nil
}

// liveGuardPlan: every crossed base chain of a native table is covered
// (the guard is inserted into the live chain and removed by handle); the
// base chains of iptables-nft's tables are the iptables backend's to guard;
// those of arptables/ebtables' and foreign tables are uncovered.
func (b *nftBackend) liveGuardPlan(ctx context.Context, op Operator) (*GuardPlan, error) {
	v6 := strings.Contains(op.Addr, ":")
	blocks, err := b.listNative(ctx)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	var order []string
	var ids []nftTableID
	for _, blk := range blocks {
		got[blk.id.String()] = normNft([]nftBlock{blk})
		order = append(order, blk.id.String())
		ids = append(ids, blk.id)
	}
	p := planNft(got, got, order, ids, nil, v6)
	_, other, xt, err := b.f.nftTableKinds()
	if err != nil {
		return nil, err
	}
	_, chains, err := b.f.nftInventory()
	if err != nil {
		return nil, err
	}
	for _, lc := range chains {
		if lc.hook == "" || !slices.Contains(other, lc.table) {
			continue
		}
		c := GuardChain{Family: lc.table.family, Table: lc.table.name, Chain: lc.name, Hook: lc.hook}
		crossed, known, why := nftHookCrossed(c.Family, c.Hook, v6)
		switch {
		case known && !crossed:
			c.Reason = why
			p.Skipped = append(p.Skipped, c)
		case lc.table == nftTableID{"inet", blockTable}:
			// lifeline's block table: never replaced, so the guard goes
			// in and comes out by handle like in a native table
			p.Covered = append(p.Covered, c)
		case slices.Contains(xt, lc.table) && (c.Family == "ip" || c.Family == "ip6"):
			c.Reason = "iptables-nft's table: the iptables guard covers it"
			p.Skipped = append(p.Skipped, c)
		default:
			c.Reason = "the table belongs to iptables-nft, arptables/ebtables or another owner: lifeline does not put its guard there"
			p.Uncovered = append(p.Uncovered, c)
		}
	}
	return p, nil
}

// ownsChain: the chains of the nft families.
func (b *nftBackend) ownsChain(c GuardChain) bool { return nftFamilies[c.Family] }

// nftGuardRuleRE finds a guard rule (and its handle) in `nft -a list` output.
var nftGuardRuleRE = regexp.MustCompile(`comment "` + guardPrefix + ` ([^"]*)".*# handle (\d+)\s*$`)

// guardFile: delete the guard rules of removeTx by handle and the guard
// sets of the tables they were in, then declare the guard sets and insert
// the rules of install, all in one nft -f transaction. Tables that
// iptables-nft, arptables-nft or ebtables-nft manage are never touched.
func (b *nftBackend) guardFile(ctx context.Context, removeTx string, install *Guard) (*loadFile, error) {
	lf := &loadFile{}
	if removeTx != "" {
		native, other, xt, err := b.f.nftTableKinds()
		if err != nil {
			return nil, err
		}
		want := guardComment(&Guard{TxID: removeTx})
		for _, t := range slices.Concat(native, other) {
			if slices.Contains(xt, t) {
				continue
			}
			out, err := b.f.run(ctx, nil, "nft", "-a", "list", "table", t.family, t.name)
			if err != nil {
				return nil, fmt.Errorf("list nft table %s: %w", t, err)
			}
			var sets []string
			found := false
			chain := ""
			for _, line := range splitLines(out) {
				tr := strings.TrimSpace(line)
				if name, ok := strings.CutPrefix(tr, "chain "); ok {
					chain = strings.Trim(strings.Fields(name)[0], `"`)
					continue
				}
				if name, ok := strings.CutPrefix(tr, "set "); ok {
					name = strings.Fields(name)[0]
					if name == guardSet || name == guardSetARP || name == guardSetND {
						sets = append(sets, name)
					}
					continue
				}
				m := nftGuardRuleRE.FindStringSubmatch(tr)
				if m == nil || guardPrefix+" "+m[1] != want || chain == "" {
					continue
				}
				found = true
				lf.add(fmt.Sprintf("delete rule %s %s handle %s", t, nftQuoteName(chain), m[2]), 0)
			}
			if found {
				for _, s := range sets {
					lf.add(fmt.Sprintf("delete set %s %s", t, s), 0)
				}
			}
		}
	}
	if install != nil {
		g := *install
		g.Chains = nil
		for _, c := range install.Chains {
			if b.ownsChain(c) {
				g.Chains = append(g.Chains, c)
			}
		}
		addNftGuard(lf, &g)
	}
	if len(lf.lines) == 0 {
		return nil, nil
	}
	return lf, nil
}

func (b *nftBackend) bootPath() string { return "/etc/nftables.conf" }

// bootText: the live native, non-foreign tables (nft list table), each
// after the `table F N` + `delete table F N` idiom (0755, #!/usr/sbin/nft
// -f): loading it at boot or by hand replaces those tables and leaves
// iptables-nft's and foreign ones (Docker's, kube-proxy's) alone, which
// `flush ruleset` would not.
func (b *nftBackend) bootText(ctx context.Context) (string, os.FileMode, error) {
	blocks, err := b.listNative(ctx)
	if err != nil {
		return "", 0, err
	}
	var s strings.Builder
	s.WriteString("#!/usr/sbin/nft -f\n# written by lifeline after a confirm: the live native nft tables\n")
	for _, blk := range blocks {
		s.WriteString("\n")
		for _, l := range nftIdiom(blk.id) {
			s.WriteString(l + "\n")
		}
		s.WriteString(blk.text)
		if !strings.HasSuffix(blk.text, "\n") {
			s.WriteString("\n")
		}
	}
	return s.String(), 0o755, nil
}

func (b *nftBackend) bootCoversAll() bool { return true }

// sandboxLoads: the live native tables, then the candidate on top (its
// declared tables replace theirs), as Apply leaves them.
func (b *nftBackend) sandboxLoads(ctx context.Context, ruleset string) ([]pfLoad, error) {
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return nil, err
	}
	live, err := b.liveLoad(ctx)
	if err != nil {
		return nil, err
	}
	var loads []pfLoad
	if live.text != "" {
		live.what = "live nft"
		loads = append(loads, live)
	}
	return append(loads, pfLoad{what: "candidate", cmd: b.loadCmd(), text: lf.String(), src: ruleset, lf: lf}), nil
}

// liveLoad: the live native tables as nft lists them.
func (b *nftBackend) liveLoad(ctx context.Context) (pfLoad, error) {
	p, _, err := b.snapshot(ctx)
	if err != nil {
		return pfLoad{}, err
	}
	return pfLoad{what: "live " + b.name(), cmd: b.loadCmd(), text: p.Text}, nil
}

// caveats: the nft matches a sandbox cannot reproduce.
func (b *nftBackend) caveats() []caveat {
	return []caveat{
		{`\bmeta\s+(skuid|skgid)\b|\b(skuid|skgid)\b`, "the socket's user or group (skuid/skgid)"},
		{`\bcgroup\b|\bsocket\s+cgroupv2\b`, "a cgroup"},
		{`\b(meta|ct)\s+mark\b|\bmark\s+set\b`, "a packet or connection mark set elsewhere"},
		{`\b(add|update)\s+@\w+`, "a set filled at runtime by the packet path"},
		{`\bnumgen\s+random\b`, "a random number"},
		{`\bosf\b|\bipsec\b`, "the operating system fingerprint or IPsec state"},
	}
}

// nftReplaced reports which live tables the load file of ruleset deletes
// before it declares anything (buildNft): every table the ruleset declares
// as a block, and every table of a family it flushes (`flush ruleset`,
// `flush ruleset FAMILY`).
func nftReplaced(ruleset string) func(nftTableID) bool {
	declared := nftDeclaredTables(ruleset)
	all, fams := false, map[string]bool{}
	for _, line := range strings.Split(ruleset, "\n") {
		if m := flushRulesetRE.FindStringSubmatch(line); m != nil {
			if m[1] == "" {
				all = true
			}
			fams[m[1]] = true
		}
	}
	return func(t nftTableID) bool { return all || fams[t.family] || slices.Contains(declared, t) }
}
