package revert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// iptBackend drives one iptables family in one mode with its -save and
// -restore tools: iptables-nft, iptables-legacy, ip6tables-nft or
// ip6tables-legacy.
type iptBackend struct {
	f    *hostFirewall
	tool string // iptables-nft
	fmt  Format
	v6   bool
}

func (b *iptBackend) name() string    { return b.tool }
func (b *iptBackend) format() Format  { return b.fmt }
func (b *iptBackend) save() string    { return b.tool + "-save" }
func (b *iptBackend) restore() string { return b.tool + "-restore" }

// certainlyEmpty reports, without running a tool, that the backend has no
// table at all in this network namespace, so that its save prints
// nothing: for legacy, the kernel's list of its tables
// (/proc/net/ip_tables_names, ip6_tables_names) exists and is empty; for
// nft, netlink lists no table of the family with an iptables table name.
// False whenever it cannot tell (tools run elsewhere, a read fails): the
// save runs then, as it always did. Every read-only save on a host with one
// backend in use is two or three processes fewer per helper run (#12).
func (b *iptBackend) certainlyEmpty() bool {
	if !b.f.local || b.f.opts.Tools[b.save()] != "" {
		return false
	}
	if strings.HasSuffix(b.tool, "-legacy") {
		// thread-self: this thread's namespace, whatever another thread of
		// the helper unshared for a trial load
		name := "/proc/thread-self/net/ip_tables_names"
		if b.v6 {
			name = "/proc/thread-self/net/ip6_tables_names"
		}
		data, err := os.ReadFile(name)
		return err == nil && len(strings.TrimSpace(string(data))) == 0
	}
	tables, _, err := b.f.nftInventory()
	if err != nil {
		return false
	}
	fam := "ip"
	if b.v6 {
		fam = "ip6"
	}
	for _, t := range tables {
		if t.family == fam && xtablesNames[t.name] {
			return false
		}
	}
	return true
}

// family is the GuardChain family of the backend's chains.
func (b *iptBackend) family() string { return string(b.fmt) }

func (b *iptBackend) inUse(ctx context.Context) (bool, error) {
	ts, err := b.saveTables(ctx)
	return iptInUse(ts), err
}

// iptInUse reports whether tables hold anything: a rule, a user chain or a
// policy other than ACCEPT.
func iptInUse(ts []*iptTable) bool {
	for _, t := range ts {
		if len(t.rules) > 0 {
			return true
		}
		for _, c := range t.chains {
			if c.policy != "ACCEPT" {
				return true
			}
		}
	}
	return false
}

func (b *iptBackend) saveText(ctx context.Context) (string, error) {
	if b.certainlyEmpty() {
		return "", nil // what the save prints with no table: no process for it
	}
	out, err := b.f.run(ctx, nil, b.save())
	if err != nil {
		return "", fmt.Errorf("save %s: %w", b.tool, err)
	}
	return out, nil
}

func (b *iptBackend) saveTables(ctx context.Context) ([]*iptTable, error) {
	out, err := b.saveText(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := parseIPTables(out)
	if err != nil {
		return nil, fmt.Errorf("parse %s output: %w", b.save(), err)
	}
	return ts, nil
}

// snapshot keeps the family's default backend and any other in use.
func (b *iptBackend) snapshot(ctx context.Context) (Part, bool, error) {
	out, err := b.saveText(ctx)
	if err != nil {
		return Part{}, false, err
	}
	ts, err := parseIPTables(out)
	if err != nil {
		return Part{}, false, fmt.Errorf("parse %s output: %w", b.save(), err)
	}
	def, err := b.f.backendFor(ctx, b.fmt)
	if err != nil {
		return Part{}, false, err
	}
	return Part{Backend: b.tool, Format: b.fmt, Text: out}, def == backend(b) || iptInUse(ts), nil
}

func (b *iptBackend) build(ctx context.Context, ruleset string, guard *Guard) (*loadFile, error) {
	if err := b.checkGuard(guard); err != nil {
		return nil, err
	}
	user, err := parseIPTables(ruleset)
	if err != nil {
		return nil, safeError(&Error{Code: CodeInvalidRuleset, Message: err.Error()})
	}
	live, err := b.saveTables(ctx)
	if err != nil {
		return nil, err
	}
	if guard != nil && strings.Contains(guard.Addr, ":") != b.v6 {
		b.f.opts.Log("%s ruleset: operator address %s is of the other family, no guard needed", b.fmt, guard.Addr)
		guard = nil
	}
	return buildIPTables(user, live, b.f.isForeign, guard, b.v6, b.f.opts.Log), nil
}

// restoreFile: every table of the snapshot, plus empty blocks (ACCEPT, no
// rules) for tables live now but absent from it, with the live foreign
// chains carried over.
func (b *iptBackend) restoreFile(ctx context.Context, p Part) (*loadFile, error) {
	want, err := parseIPTables(p.Text)
	if err != nil {
		return nil, &Error{Code: CodeSnapshot, Message: fmt.Sprintf("parse %s snapshot: %v", p.Backend, err)}
	}
	live, err := b.saveTables(ctx)
	if err != nil {
		return nil, err
	}
	all := append(want, emptyTables(want, live)...)
	return buildIPTables(all, live, b.f.isForeign, nil, b.v6, b.f.opts.Log), nil
}

// iptTimeLimit is the last moment iptables -m time can express.
var iptTimeLimit = time.Date(2038, 1, 19, 3, 14, 7, 0, time.UTC)

// checkGuard refuses a guard whose deadline -m time cannot express.
func (b *iptBackend) checkGuard(g *Guard) error {
	if g != nil && g.Deadline.After(iptTimeLimit) {
		return &Error{Code: CodeInternal, Message: "guard deadline is past 2038-01-19, the limit of iptables -m time"}
	}
	return nil
}

func (b *iptBackend) loadCmd(noflush bool) []string {
	cmd := []string{b.f.tool(b.restore()), "-w", "10"}
	if noflush {
		cmd = append(cmd, "--noflush")
	}
	return cmd
}

func (b *iptBackend) load(ctx context.Context, lf *loadFile, code string) error {
	cmd := b.loadCmd(lf.noflush)
	_, err := b.f.run(ctx, []byte(lf.String()), cmd[0], cmd[1:]...)
	if err == nil {
		return nil
	}
	e := iptLoadError(code, lf, err)
	if len(lf.commits) > 1 {
		var te *ToolError
		line := 0
		if errors.As(err, &te) {
			if m := iptLineRE.FindStringSubmatch(te.Stderr); m != nil {
				line, _ = strconv.Atoi(m[1])
			}
		}
		if line == 0 || line > lf.commits[0] {
			return fmt.Errorf("load %s: %w: %w", b.tool, ErrPartialApply, e)
		}
	}
	return fmt.Errorf("load %s: %w", b.fmt, e)
}

func (b *iptBackend) trialLoad(ctx context.Context, lf *loadFile) error {
	_, err := b.f.scratch(ctx, []byte(lf.String()), b.loadCmd(false), nil)
	return err
}

var (
	iptLineRE       = regexp.MustCompile(`(?:Error occurred at line: |line )(\d+)`)
	iptNoChainRE    = regexp.MustCompile(`Chain '([^']+)' does not exist`)
	iptLinePrefixRE = regexp.MustCompile(`^line \d+: `)
	iptBannerRE     = regexp.MustCompile(`^\S+ v[0-9.]+ \([^)]*\):\s*$`)
)

// iptLoadError is loadError for iptables-restore.
func iptLoadError(code string, lf *loadFile, err error) *Error {
	var te *ToolError
	if !errors.As(err, &te) {
		return safeError(&Error{Code: code, Message: err.Error()})
	}
	stderr := strings.TrimSpace(te.Stderr)
	e := &Error{Code: code, Message: firstLine(stderr)}
	line := 0
	for _, l := range strings.Split(stderr, "\n") {
		// iptables-nft prints a bare banner line before a kernel-side error
		if !strings.Contains(l, "Try `") && !strings.HasPrefix(l, "Error occurred") && !iptBannerRE.MatchString(l) {
			// its "line N: " counts lines of the load file, not the operator's
			e.Message = iptLinePrefixRE.ReplaceAllString(strings.TrimSpace(l), "")
			break
		}
	}
	if m := iptLineRE.FindStringSubmatch(stderr); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	// iptables-nft names the COMMIT line for a jump to a missing chain:
	// point at the jump instead.
	if m := iptNoChainRE.FindStringSubmatch(stderr); m != nil && line > 0 && line <= len(lf.lines) && strings.TrimSpace(lf.lines[line-1].text) == "COMMIT" {
		for i := line - 2; i >= 0 && !strings.HasPrefix(lf.lines[i].text, "*"); i-- {
			if ruleTarget(lf.lines[i].text) == m[1] {
				line = i + 1
				break
			}
		}
	}
	return pointAt(e, lf, line)
}

// explain is iptLoadError plus what the kernel said. A rule the kernel
// refuses (REJECT --reject-with tcp-reset without -p tcp, DNAT in the
// filter table, ...) passes every userspace check: iptables-legacy-restore
// then names only the table's COMMIT (a line lifeline writes), and
// iptables-nft-restore names the rule with nothing but an errno. For a
// COMMIT, explain finds the first rule of that table that the kernel
// refuses (refusedRule) and adds the kernel's own reason from its log when
// it logged one during a failing load.
func (b *iptBackend) explain(ctx context.Context, code string, lf *loadFile, err error, klog []string) *Error {
	e := iptLoadError(code, lf, err)
	var te *ToolError
	if errors.As(err, &te) {
		line := 0
		if m := iptLineRE.FindStringSubmatch(te.Stderr); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		if line > 0 && line <= len(lf.lines) && strings.TrimSpace(lf.lines[line-1].text) == "COMMIT" && (e.Line == 0 || e.Text == "COMMIT") {
			trial := func(in string) error { _, err := b.f.scratch(ctx, []byte(in), b.loadCmd(false), nil); return err }
			if i, more, ok := refusedRule(lf, line-1, trial); ok {
				l := lf.lines[i]
				e.Line, e.Text = l.origin, quoteSafe(l.text, maxQuoted)
				e.Message = "the kernel refused this rule when its table was committed"
				if l.origin == 0 {
					e.Message += " (in a line lifeline added: foreign chains or guard)"
				}
				if len(more) > 0 {
					klog = more
				}
			}
		}
	}
	if len(klog) > 0 {
		e.Message = quoteSafe(e.Message+"; kernel: "+klog[len(klog)-1], 4*maxQuoted)
	} else if e.Line > 0 {
		e.Message = quoteSafe(e.Message+" (the kernel gave no reason here; dmesg may have one)", 4*maxQuoted)
	}
	return e
}

func (b *iptBackend) liveNorm(ctx context.Context) (string, error) {
	ts, err := b.saveTables(ctx)
	if err != nil {
		return "", err
	}
	return normIPTables(ts, b.f.isForeign), nil
}

func (b *iptBackend) partNorm(p Part) (string, error) {
	ts, err := parseIPTables(p.Text)
	if err != nil {
		return "", err
	}
	return normIPTables(ts, b.f.isForeign), nil
}

func (b *iptBackend) applied(ctx context.Context, ruleset string, onTop bool) (got, live map[string]string, order []string, err error) {
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	got, live = map[string]string{}, map[string]string{}
	lts, err := b.saveTables(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, t := range lts {
		live[t.name] = normIPTables([]*iptTable{t}, b.f.isForeign)
		order = append(order, t.name)
		if onTop {
			got[t.name] = live[t.name]
		}
	}
	out, err := b.f.scratch(ctx, []byte(lf.String()), b.loadCmd(false), []string{b.f.tool(b.save())})
	if err != nil {
		return nil, nil, nil, b.explain(ctx, CodeInvalidRuleset, lf, err, nil)
	}
	user, _ := parseIPTables(ruleset)
	sts, err := parseIPTables(out)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse trial %s: %w", b.save(), err)
	}
	for _, t := range sts {
		if findTable(user, t.name) == nil {
			continue // created by the save in the scratch namespace, not by the ruleset
		}
		got[t.name] = normIPTables([]*iptTable{t}, b.f.isForeign)
		if !slices.Contains(order, t.name) {
			order = append(order, t.name)
		}
	}
	return got, live, order, nil
}

// crossed reports whether the operator's SSH traffic uses this family.
func (b *iptBackend) crossed(op Operator) bool { return strings.Contains(op.Addr, ":") == b.v6 }

func (b *iptBackend) guardPlan(ctx context.Context, ruleset string, op Operator) (*GuardPlan, error) {
	user, err := parseIPTables(ruleset)
	if err != nil {
		return nil, safeError(&Error{Code: CodeInvalidRuleset, Message: err.Error()})
	}
	return planIPTables(user, b.family(), b.crossed(op)), nil
}

// liveGuardPlan covers the built-in chains of every live table.
func (b *iptBackend) liveGuardPlan(ctx context.Context, op Operator) (*GuardPlan, error) {
	live, err := b.saveTables(ctx)
	if err != nil {
		return nil, err
	}
	return planIPTables(live, b.family(), b.crossed(op)), nil
}

// ownsChain: the chains of the backend's family (iptables, ip6tables).
func (b *iptBackend) ownsChain(c GuardChain) bool { return c.Family == b.family() }

// guardFile: per table, -D of every live guard rule of removeTx (as
// iptables-save prints it), then the guard rules of install for the
// table's chains in install.Chains, for iptables-restore --noflush (only
// the named rules change).
func (b *iptBackend) guardFile(ctx context.Context, removeTx string, install *Guard) (*loadFile, error) {
	del := map[string][]string{}
	var tables []string
	if removeTx != "" {
		live, err := b.saveTables(ctx)
		if err != nil {
			return nil, err
		}
		want := `--comment "` + guardComment(&Guard{TxID: removeTx}) + `"`
		for _, t := range live {
			for _, r := range t.rules {
				if rest, ok := strings.CutPrefix(r.text, "-A "); ok && strings.Contains(r.text, want) {
					if del[t.name] == nil {
						tables = append(tables, t.name)
					}
					del[t.name] = append(del[t.name], "-D "+rest)
				}
			}
		}
	}
	ins := map[string][]string{}
	if err := b.checkGuard(install); err != nil {
		return nil, err
	}
	if install != nil && strings.Contains(install.Addr, ":") == b.v6 {
		for _, c := range install.Chains {
			if !b.ownsChain(c) {
				continue
			}
			gc, ok := iptGuardChains[c.Table]
			if !ok {
				continue
			}
			input := slices.Contains(gc.in, c.Chain)
			if !input && !slices.Contains(gc.out, c.Chain) {
				continue
			}
			if ins[c.Table] == nil && del[c.Table] == nil {
				tables = append(tables, c.Table)
			}
			ins[c.Table] = append(ins[c.Table], iptGuardLines(c.Chain, input, install, b.v6)...)
		}
	}
	if len(tables) == 0 {
		return nil, nil
	}
	lf := &loadFile{noflush: true}
	for _, t := range tables {
		lf.add("*"+t, 0)
		for _, l := range slices.Concat(del[t], ins[t]) {
			lf.add(l, 0)
		}
		lf.add("COMMIT", 0)
	}
	return lf, nil
}

// bootPath: /etc/sysconfig/iptables (ip6tables) when /etc/sysconfig exists,
// else /etc/iptables/rules.v4 (rules.v6).
func (b *iptBackend) bootPath() string {
	if st, err := os.Stat(filepath.Join(b.f.root(), "etc/sysconfig")); err == nil && st.IsDir() {
		return "/etc/sysconfig/" + b.family()
	}
	if b.v6 {
		return "/etc/iptables/rules.v6"
	}
	return "/etc/iptables/rules.v4"
}

// bootText: the save output without foreign chains (their owners recreate
// them at boot; an old copy must not come back).
func (b *iptBackend) bootText(ctx context.Context) (string, os.FileMode, error) {
	out, err := b.saveText(ctx)
	if err != nil {
		return "", 0, err
	}
	mode := os.FileMode(0o644)
	if strings.HasPrefix(b.bootPath(), "/etc/sysconfig/") {
		mode = 0o600
	}
	return withoutForeign(out, b.f.isForeign), mode, nil
}

func (b *iptBackend) bootCoversAll() bool { return false }

// sandboxLoads: the candidate built as Apply builds it; its rules'
// counters name what drops a probe (lines: their operator's lines).
func (b *iptBackend) sandboxLoads(ctx context.Context, ruleset string) ([]pfLoad, error) {
	lf, err := b.build(ctx, ruleset, nil)
	if err != nil {
		return nil, err
	}
	return []pfLoad{{what: "candidate", cmd: b.loadCmd(false), text: lf.String(), ipt: b, lines: iptRuleLines(lf), lf: lf}}, nil
}

// liveLoad: the live tables as the backend's save prints them.
func (b *iptBackend) liveLoad(ctx context.Context) (pfLoad, error) {
	out, err := b.saveText(ctx)
	if err != nil {
		return pfLoad{}, err
	}
	return pfLoad{what: "live " + b.name(), cmd: b.loadCmd(false), text: out, ipt: b}, nil
}

// caveats: the iptables matches a sandbox cannot reproduce.
func (b *iptBackend) caveats() []caveat {
	return []caveat{
		{`-m owner\b`, "the socket's owner (-m owner)"},
		{`-m cgroup\b`, "a cgroup (-m cgroup)"},
		{`-m (mark|connmark)\b|--set-x?mark\b`, "a packet or connection mark set elsewhere"},
		{`-m recent\b`, "a list filled at runtime (-m recent)"},
		{`-m set\b`, "an ipset (its members are filled at runtime)"},
		{`-m statistic\b`, "a random or nth match (-m statistic)"},
		{`-m policy\b`, "IPsec policy (-m policy)"},
	}
}
