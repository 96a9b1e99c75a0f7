package revert

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/wire"
)

// The host firewall's side of lifeline's block sets (see block.go): read,
// create, change and remove them, per backend.

// blockMode picks where the host keeps its block sets: ipsets when an
// iptables backend holds the rules, else nft when installed.
func (f *hostFirewall) blockMode(ctx context.Context) (string, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return "", err
	}
	ipt := false
	for _, a := range hf.active {
		if strings.HasPrefix(a, "iptables-") || strings.HasPrefix(a, "ip6tables-") {
			ipt = true
		}
	}
	_, hasIPT := hf.byFormat[FormatIPTables]
	switch {
	case ipt || !f.has("nft") && hasIPT:
		if !f.has("ipset") {
			return "", &Error{Code: CodeBackend, Message: "the host's firewall is iptables, and blocking there needs the ipset tool: install ipset"}
		}
		if !hasIPT {
			return "", &Error{Code: CodeBackend, Message: "no iptables backend for the block rule: install iptables"}
		}
		return wire.BlockModeIpset, nil
	case f.has("nft"):
		return wire.BlockModeNft, nil
	}
	return "", &Error{Code: CodeBackend, Message: "no firewall tool on this host: install nftables (or iptables and ipset)"}
}

// blockRead reads what the host holds of block set name.
func (f *hostFirewall) blockRead(ctx context.Context, name string) (*blockHost, error) {
	mode, err := f.blockMode(ctx)
	if err != nil {
		return nil, err
	}
	h := &blockHost{mode: mode, elems: map[string]bool{}}
	n4, n6, i4, i6 := ruleset.BlockSetNames(name)
	addElems := func(s *ruleset.Set) {
		for _, e := range s.Elements {
			if _, n, err := wire.NormalizeCIDR(e); err == nil {
				h.elems[n] = true
			} else {
				h.elems[e] = true
			}
		}
	}
	if mode == wire.BlockModeNft {
		native, other, err := f.nftTables(ctx)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(slices.Concat(native, other), nftTableID{"inet", blockTable}) {
			return h, nil
		}
		out, err := f.run(ctx, nil, "nft", "-j", "list", "table", "inet", blockTable)
		if err != nil {
			return nil, fmt.Errorf("list nft table inet %s: %w", blockTable, err)
		}
		rs, err := ruleset.ParseNftJSON([]byte(out))
		if err != nil {
			return nil, fmt.Errorf("parse nft table inet %s: %w", blockTable, err)
		}
		t := rs.Table("nft inet " + blockTable)
		if t == nil {
			return h, nil
		}
		h.table = true
		for _, s := range t.Sets {
			switch s.Name {
			case n4:
				h.set4 = true
				addElems(s)
			case n6:
				h.set6 = true
				addElems(s)
			}
		}
		if c := t.Chain("input"); c != nil {
			for _, r := range c.Rules {
				if r.Comment != blockComment+" "+name {
					continue
				}
				switch {
				case strings.Contains(r.Text, "@"+n4+" ") && strings.HasPrefix(r.Text, "ip saddr"):
					h.rule4 = true
				case strings.Contains(r.Text, "@"+n6+" ") && strings.HasPrefix(r.Text, "ip6 saddr"):
					h.rule6 = true
				}
			}
		}
		return h, nil
	}
	out, err := f.run(ctx, nil, "ipset", "save")
	if err != nil {
		return nil, fmt.Errorf("ipset save: %w", err)
	}
	sets, err := ruleset.ParseIpsetSave([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("parse ipset save: %w", err)
	}
	for _, s := range sets {
		switch s.Name {
		case i4:
			h.ipset4 = true
			addElems(s)
		case i6:
			h.ipset6 = true
			addElems(s)
		}
	}
	bs, err := f.blockIPT(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		fam := b.fmt
		v6 := fam == FormatIP6Tables
		if v6 {
			h.have6 = true
		}
		ts, err := b.saveTables(ctx)
		if err != nil {
			return nil, err
		}
		t := findTable(ts, "filter")
		if t == nil {
			continue
		}
		set := i4
		if v6 {
			set = i6
		}
		chain := t.chain(blockChain) != nil
		var jump, rule bool
		for _, r := range t.rules {
			switch {
			case r.chain == "INPUT" && ruleTarget(r.text) == blockChain:
				jump = true
			case r.chain == blockChain && strings.Contains(r.text, "--match-set "+set+" src"):
				rule = true
			}
		}
		if v6 {
			h.chain6, h.jump6, h.rule6 = chain, jump, rule
		} else {
			h.chain4, h.jump4, h.rule4 = chain, jump, rule
		}
	}
	return h, nil
}

// blockEnsure creates the pieces of block set name that h lacks, each
// backend in one load.
func (f *hostFirewall) blockEnsure(ctx context.Context, h *blockHost, name string) error {
	n4, n6, i4, i6 := ruleset.BlockSetNames(name)
	if h.mode == wire.BlockModeNft {
		lf := &loadFile{}
		lf.add("add table inet "+blockTable, 0)
		lf.add(fmt.Sprintf("add set inet %s %s { type ipv4_addr; flags interval,timeout; }", blockTable, n4), 0)
		lf.add(fmt.Sprintf("add set inet %s %s { type ipv6_addr; flags interval,timeout; }", blockTable, n6), 0)
		lf.add(fmt.Sprintf("add chain inet %s input { type filter hook input priority filter - 10; policy accept; }", blockTable), 0)
		if !h.rule4 {
			lf.add(fmt.Sprintf(`add rule inet %s input ip saddr @%s drop comment "%s %s"`, blockTable, n4, blockComment, name), 0)
		}
		if !h.rule6 {
			lf.add(fmt.Sprintf(`add rule inet %s input ip6 saddr @%s drop comment "%s %s"`, blockTable, n6, blockComment, name), 0)
		}
		b := &nftBackend{f: f}
		return b.load(ctx, lf, CodeApplyFailed)
	}
	var sets strings.Builder
	if !h.ipset4 {
		fmt.Fprintf(&sets, "create %s hash:net family inet timeout 0\n", i4)
	}
	if h.have6 && !h.ipset6 {
		fmt.Fprintf(&sets, "create %s hash:net family inet6 timeout 0\n", i6)
	}
	if sets.Len() > 0 {
		if _, err := f.run(ctx, []byte(sets.String()), "ipset", "restore", "-exist"); err != nil {
			return fmt.Errorf("create ipsets %s: %w", i4, err)
		}
	}
	bs, err := f.blockIPT(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		fam := b.fmt
		chain, jump, rule, set := h.chain4, h.jump4, h.rule4, i4
		if fam == FormatIP6Tables {
			chain, jump, rule, set = h.chain6, h.jump6, h.rule6, i6
		}
		if chain && jump && rule {
			continue
		}
		lf := &loadFile{noflush: true}
		lf.add("*filter", 0)
		if !chain {
			lf.add(":"+blockChain+" - [0:0]", 0)
		}
		if !rule {
			lf.add(fmt.Sprintf(`-A %s -m set --match-set %s src -m comment --comment "%s %s" -j DROP`, blockChain, set, blockComment, name), 0)
		}
		if !jump {
			lf.add(fmt.Sprintf(`-I INPUT 1 -m comment --comment %s -j %s`, blockComment, blockChain), 0)
		}
		lf.add("COMMIT", 0)
		if err := b.load(ctx, lf, CodeApplyFailed); err != nil {
			return err
		}
	}
	return nil
}

// blockBatch adds (or, remove, deletes) cidrs in block set name in one
// atomic batch: one nft -f transaction, or one ipset restore. Elements
// already there are refreshed to ttl (nft: deleted and added again in the
// same transaction); on remove, the absent ones are skipped.
func (f *hostFirewall) blockBatch(ctx context.Context, h *blockHost, name string, cidrs []string, ttl time.Duration, remove bool) error {
	n4, n6, i4, i6 := ruleset.BlockSetNames(name)
	var nftLines, ipsetLines []string
	for _, c := range cidrs {
		p, _, err := wire.NormalizeCIDR(c)
		if err != nil {
			return &Error{Code: CodeBadRequest, Message: err.Error()}
		}
		ns, is := n4, i4
		if p.Addr().Is6() {
			ns, is = n6, i6
			if h.mode == wire.BlockModeIpset && !h.have6 && !remove {
				return &Error{Code: CodeBackend, Message: fmt.Sprintf("cannot block the IPv6 range %s: the host has no ip6tables to hold the rule; install ip6tables or block IPv4 only", c)}
			}
		}
		present := h.elems[c]
		switch {
		case remove && !present:
			continue
		case remove:
			nftLines = append(nftLines, fmt.Sprintf("delete element inet %s %s { %s }", blockTable, ns, c))
			ipsetLines = append(ipsetLines, fmt.Sprintf("del %s %s", is, c))
			continue
		}
		el := c
		tmo := " timeout 0"
		if ttl > 0 {
			el += fmt.Sprintf(" timeout %ds", int64(ttl/time.Second))
			tmo = fmt.Sprintf(" timeout %d", int64(ttl/time.Second))
		}
		if present {
			nftLines = append(nftLines, fmt.Sprintf("delete element inet %s %s { %s }", blockTable, ns, c))
		}
		nftLines = append(nftLines, fmt.Sprintf("add element inet %s %s { %s }", blockTable, ns, el))
		ipsetLines = append(ipsetLines, fmt.Sprintf("add %s %s%s", is, c, tmo))
	}
	if h.mode == wire.BlockModeNft {
		if len(nftLines) == 0 {
			return nil
		}
		lf := &loadFile{}
		for _, l := range nftLines {
			lf.add(l, 0)
		}
		return (&nftBackend{f: f}).load(ctx, lf, CodeApplyFailed)
	}
	if len(ipsetLines) == 0 {
		return nil
	}
	if _, err := f.run(ctx, []byte(strings.Join(ipsetLines, "\n")+"\n"), "ipset", "restore", "-exist"); err != nil {
		// ipset restore applies line by line: take out again what this
		// batch added before the failing line, so that a failed batch
		// leaves the set as it was (an unblock's removals stay removed)
		if !remove {
			var undo []string
			for _, c := range cidrs {
				if !h.elems[c] {
					is := i4
					if strings.Contains(c, ":") {
						is = i6
					}
					undo = append(undo, fmt.Sprintf("del %s %s", is, c))
				}
			}
			if len(undo) > 0 {
				if _, uerr := f.run(ctx, []byte(strings.Join(undo, "\n")+"\n"), "ipset", "restore", "-exist"); uerr != nil {
					return fmt.Errorf("ipset restore: %w; and taking the batch's elements out again failed: %v", err, uerr)
				}
			}
		}
		what := "the set is as it was"
		if remove {
			what = "the elements before the failing one are removed"
		}
		return &Error{Code: CodeApplyFailed, Message: fmt.Sprintf("ipset restore: %v; %s", err, what)}
	}
	return nil
}

var blockHandleRE = regexp.MustCompile(`# handle (\d+)\s*$`)

// blockDrop removes the pieces of block set name that were not live
// before (was), for the revert of the transaction that created them.
func (f *hostFirewall) blockDrop(ctx context.Context, was *blockHost, name string) error {
	n4, n6, i4, i6 := ruleset.BlockSetNames(name)
	if was.mode == wire.BlockModeNft {
		lf := &loadFile{}
		if !was.table {
			lf.add("delete table inet "+blockTable, 0)
		} else {
			out, err := f.run(ctx, nil, "nft", "-a", "list", "chain", "inet", blockTable, "input")
			if err == nil {
				for _, l := range splitLines(out) {
					if m := blockHandleRE.FindStringSubmatch(l); m != nil && strings.Contains(l, `comment "`+blockComment+" "+name+`"`) &&
						(!was.rule4 && strings.Contains(l, "@"+n4+" ") || !was.rule6 && strings.Contains(l, "@"+n6+" ")) {
						lf.add(fmt.Sprintf("delete rule inet %s input handle %s", blockTable, m[1]), 0)
					}
				}
			}
			if !was.set4 && !was.rule4 {
				lf.add(fmt.Sprintf("delete set inet %s %s", blockTable, n4), 0)
			}
			if !was.set6 && !was.rule6 {
				lf.add(fmt.Sprintf("delete set inet %s %s", blockTable, n6), 0)
			}
		}
		if len(lf.lines) == 0 {
			return nil
		}
		return (&nftBackend{f: f}).load(ctx, lf, CodeRevertFailed)
	}
	bs, err := f.blockIPT(ctx)
	if err != nil {
		return err
	}
	var errs []string
	for _, b := range bs {
		fam := b.fmt
		chain, jump, rule, set := was.chain4, was.jump4, was.rule4, i4
		if fam == FormatIP6Tables {
			chain, jump, rule, set = was.chain6, was.jump6, was.rule6, i6
		}
		run := func(args ...string) {
			if _, err := f.run(ctx, nil, b.tool, append([]string{"-w", "10", "-t", "filter"}, args...)...); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if !jump {
			run("-D", "INPUT", "-m", "comment", "--comment", blockComment, "-j", blockChain)
		}
		if !rule {
			run("-D", blockChain, "-m", "set", "--match-set", set, "src", "-m", "comment", "--comment", blockComment+" "+name, "-j", "DROP")
		}
		if !chain {
			run("-F", blockChain)
			run("-X", blockChain)
		}
	}
	var destroy []string
	if !was.ipset4 {
		destroy = append(destroy, "destroy "+i4)
	}
	if !was.ipset6 && was.have6 {
		destroy = append(destroy, "destroy "+i6)
	}
	if len(destroy) > 0 {
		if _, err := f.run(ctx, []byte(strings.Join(destroy, "\n")+"\n"), "ipset", "restore", "-exist"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove the block set %s: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// blockIPT are the iptables backends that hold the block rules, IPv4 first:
// each family's own, except that an IPv6 family holding no rules follows
// the IPv4 one's mode (an iptables-legacy host gets ip6tables-legacy
// chains, not an ip6tables-nft table beside them).
func (f *hostFirewall) blockIPT(ctx context.Context) ([]*iptBackend, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	v4, _ := hf.byFormat[FormatIPTables].(*iptBackend)
	v6, _ := hf.byFormat[FormatIP6Tables].(*iptBackend)
	mode := func(b *iptBackend) string { return b.tool[strings.LastIndex(b.tool, "-")+1:] }
	if v4 != nil && v6 != nil && mode(v4) != mode(v6) {
		used, err := v6.inUse(ctx)
		if err != nil {
			return nil, err
		}
		if !used {
			for _, b := range hf.all {
				if ib, ok := b.(*iptBackend); ok && ib.fmt == FormatIP6Tables && mode(ib) == mode(v4) {
					v6 = ib
				}
			}
		}
	}
	var out []*iptBackend
	for _, b := range []*iptBackend{v4, v6} {
		if b != nil {
			out = append(out, b)
		}
	}
	return out, nil
}
