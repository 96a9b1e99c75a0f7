package revert

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// guardPrefix starts the comment of every guard rule; guardSet names the
// nft set whose element timeouts count down to the deadline.
const (
	guardPrefix = "lifeline-guard"
	guardSet    = "lifeline_guard"
)

func guardComment(g *Guard) string {
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, g.TxID)
	return guardPrefix + " " + id
}

var nftFamilies = map[string]bool{"ip": true, "ip6": true, "inet": true, "arp": true, "bridge": true, "netdev": true}

// nftTableID names one nft table.
type nftTableID struct{ family, name string }

func (t nftTableID) String() string { return t.family + " " + t.name }

// nftBaseChain is a base chain found in an nft file.
type nftBaseChain struct {
	table     nftTableID
	chain     string
	typ, hook string
}

// nftToken is a word, or one of "{", "}", ";", "\n".
type nftToken struct {
	s    string
	line int
}

func nftTokens(text string) []nftToken {
	var toks []nftToken
	line := 1
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == '\n':
			toks = append(toks, nftToken{"\n", line})
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\\' && i+1 < len(text) && text[i+1] == '\n':
			i += 2
			line++
		case c == '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, nftToken{string(c), line})
			i++
		case c == '"':
			j := i + 1
			for j < len(text) && text[j] != '"' && text[j] != '\n' {
				j++
			}
			if j < len(text) && text[j] == '"' {
				j++
			}
			toks = append(toks, nftToken{text[i:j], line})
			i = j
		default:
			j := i
			for j < len(text) && !strings.ContainsRune(" \t\r\n{};#\"", rune(text[j])) {
				j++
			}
			toks = append(toks, nftToken{text[i:j], line})
			i = j
		}
	}
	return toks
}

// nftScan finds the tables and base chains an nft file defines, in both the
// block syntax (table inet t { chain c { type filter hook input ...; } })
// and the command syntax (add chain inet t c { type ... hook ...; }).
func nftScan(text string) (tables []nftTableID, chains []nftBaseChain) {
	toks := nftTokens(text)
	type frame struct {
		kind  string // table, chain, other
		table nftTableID
		chain string
	}
	var stack []frame
	addTable := func(t nftTableID) {
		if !slices.Contains(tables, t) {
			tables = append(tables, t)
		}
	}
	// parseTable reads [family] name at toks[i:].
	parseTable := func(i int) (nftTableID, int) {
		if i < len(toks) && nftFamilies[toks[i].s] && i+1 < len(toks) && !isPunct(toks[i+1].s) {
			return nftTableID{toks[i].s, toks[i+1].s}, i + 2
		}
		if i < len(toks) && !isPunct(toks[i].s) {
			return nftTableID{"ip", toks[i].s}, i + 1
		}
		return nftTableID{}, i
	}
	stmtStart := true
	for i := 0; i < len(toks); i++ {
		t := toks[i].s
		switch t {
		case "\n", ";":
			stmtStart = true
			continue
		case "{":
			stack = append(stack, frame{kind: "other"})
			stmtStart = true
			continue
		case "}":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			stmtStart = true
			continue
		}
		if !stmtStart {
			continue
		}
		stmtStart = false
		var top frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		j := i
		if len(stack) == 0 && (t == "add" || t == "create") && j+1 < len(toks) {
			j++
			t = toks[j].s
		}
		switch {
		case len(stack) == 0 && t == "table":
			id, k := parseTable(j + 1)
			if id.name == "" {
				continue
			}
			addTable(id)
			if k < len(toks) && toks[k].s == "{" {
				stack = append(stack, frame{kind: "table", table: id})
				stmtStart = true
				i = k
			}
		case len(stack) == 0 && t == "chain":
			id, k := parseTable(j + 1)
			if id.name == "" || k >= len(toks) || isPunct(toks[k].s) {
				continue
			}
			name := toks[k].s
			if k+1 < len(toks) && toks[k+1].s == "{" {
				stack = append(stack, frame{kind: "chain", table: id, chain: name})
				stmtStart = true
				i = k + 1
			}
		case top.kind == "table" && t == "chain" && j+2 < len(toks) && toks[j+2].s == "{":
			stack = append(stack, frame{kind: "chain", table: top.table, chain: toks[j+1].s})
			stmtStart = true
			i = j + 2
		case top.kind == "chain" && t == "type":
			bc := nftBaseChain{table: top.table, chain: top.chain}
			for k := j + 1; k < len(toks) && !isPunct(toks[k].s); k++ {
				if k == j+1 {
					bc.typ = toks[k].s
				}
				if toks[k].s == "hook" && k+1 < len(toks) {
					bc.hook = toks[k+1].s
				}
			}
			if bc.hook != "" {
				chains = append(chains, bc)
			}
		}
	}
	return tables, chains
}

func isPunct(s string) bool { return s == "{" || s == "}" || s == ";" || s == "\n" }

var nftTableBlockRE = regexp.MustCompile(`(?m)^\s*table\s+(?:(ip|ip6|inet|arp|bridge|netdev)\s+)?([A-Za-z0-9_.-]+)\s*\{`)

// nftDeclaredTables returns the tables ruleset writes as blocks
// (table F N { ... }): each load replaces them whole.
func nftDeclaredTables(ruleset string) []nftTableID {
	var ids []nftTableID
	for _, m := range nftTableBlockRE.FindAllStringSubmatch(ruleset, -1) {
		fam := m[1]
		if fam == "" {
			fam = "ip"
		}
		ids = append(ids, nftTableID{fam, m[2]})
	}
	return ids
}

var flushRulesetRE = regexp.MustCompile(`^\s*flush\s+ruleset(?:\s+(ip6?|inet|arp|bridge|netdev))?\s*;?\s*(#.*)?$`)

// nftIdiom deletes a table whether it exists or not.
func nftIdiom(t nftTableID) []string {
	return []string{"table " + t.String() + " {}", "delete table " + t.String()}
}

// nftGuardTimeout formats d as an nft timeout (whole milliseconds, at least 1s).
func nftGuardTimeout(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1000 {
		ms = 1000
	}
	if ms%1000 == 0 {
		return fmt.Sprintf("%ds", ms/1000)
	}
	return fmt.Sprintf("%dms", ms)
}

// buildNft turns the operator's nft ruleset into the file nft -f loads.
//
// The rule for foreign and iptables-nft tables: nft never deletes or
// flushes a table that iptables-nft manages (ip/ip6 filter, nat, mangle,
// raw, security with iptables' built-in chains: they belong to the
// iptables family) nor a foreign one (its name or one of its chains is
// Docker's, kube-proxy's, Calico's or another configured owner's). A
// `flush ruleset [FAMILY]` line of the ruleset is therefore rewritten into
// `table F N {}` + `delete table F N` for each live native, non-foreign
// table (of that family), which works whether or not the table exists when
// the file loads.
//
// The guard (nil: none) is appended at the end of the same file, so it is
// loaded in the same transaction: at the top of every chain of
// guard.Chains (begin's GuardPlan: every base chain the operator's SSH
// traffic crosses, of any family, type and hook), rules that accept the
// operator's SSH path (and ARP or IPv6 neighbour discovery where those
// cross the chain) once the deadline has passed. Each rule pins its key and
// then looks the same key up in a set whose element times out at the
// deadline (see nftGuardRules): a relative countdown the kernel keeps,
// immune to clock steps, that can only keep the path shut too long, never
// open it early.
func buildNft(ruleset string, live []nftTableID, guard *Guard, logf func(string, ...any)) *loadFile {
	f := &loadFile{}
	// A table the file declares as a block replaces the live table of that
	// name as a whole (declarative per table): without this, nft -f merges
	// the block into the live table, so a re-apply (the confirm dropping
	// the guard) would duplicate every rule and keep the guard.
	for _, id := range nftDeclaredTables(ruleset) {
		if slices.Contains(live, id) {
			for _, l := range nftIdiom(id) {
				f.add(l, 0)
			}
		}
	}
	for i, line := range strings.Split(strings.TrimSuffix(ruleset, "\n"), "\n") {
		m := flushRulesetRE.FindStringSubmatch(line)
		if m == nil {
			f.add(line, i+1)
			continue
		}
		f.add("# lifeline: "+strings.TrimSpace(line)+" (native, non-foreign tables only)", i+1)
		for _, t := range live {
			if m[1] == "" || m[1] == t.family {
				for _, l := range nftIdiom(t) {
					f.add(l, i+1)
				}
			}
		}
	}
	if guard == nil {
		return f
	}
	addNftGuard(f, guard)
	return f
}

// nftBlock is one top-level table block of nft list output.
type nftBlock struct {
	id   nftTableID
	text string // "table F N {" ... "}" with a final newline
}

// splitNftTables splits `nft list` output into its table blocks.
func splitNftTables(text string) []nftBlock {
	var out []nftBlock
	var cur []string
	var id nftTableID
	depth := 0
	for _, line := range strings.Split(text, "\n") {
		tr := strings.TrimSpace(line)
		if depth == 0 {
			if !strings.HasPrefix(tr, "table ") {
				continue
			}
			f := strings.Fields(strings.TrimSuffix(tr, "{"))
			if len(f) >= 3 {
				id = nftTableID{f[1], f[2]}
			} else if len(f) == 2 {
				id = nftTableID{"ip", f[1]}
			}
			cur = nil
		}
		cur = append(cur, line)
		depth += braceDelta(line)
		if depth <= 0 {
			depth = 0
			out = append(out, nftBlock{id: id, text: strings.Join(cur, "\n") + "\n"})
		}
	}
	return out
}

func braceDelta(line string) int {
	d := 0
	inQ := false
	for _, c := range line {
		switch {
		case c == '"':
			inQ = !inQ
		case inQ:
		case c == '#':
			return d
		case c == '{':
			d++
		case c == '}':
			d--
		}
	}
	return d
}

var (
	nftCounterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	nftExpiresRE = regexp.MustCompile(` expires [0-9a-z.]+`)
	nftUsedRE    = regexp.MustCompile(` used \d+ [a-z]+`)
	nftHandleRE  = regexp.MustCompile(`\s*# handle \d+`)
)

// normNft renders table blocks canonically: counters, handles, set element
// expiry and the guard (set and rules) removed, blank lines dropped, tables
// sorted by family and name.
func normNft(blocks []nftBlock) string {
	blocks = slices.Clone(blocks)
	slices.SortFunc(blocks, func(a, b nftBlock) int { return strings.Compare(a.id.String(), b.id.String()) })
	var b strings.Builder
	for _, blk := range blocks {
		skip := 0
		for _, line := range strings.Split(blk.text, "\n") {
			tr := strings.TrimSpace(line)
			if skip > 0 {
				skip += braceDelta(line)
				continue
			}
			if strings.HasPrefix(tr, "set "+guardSet+" ") || strings.HasPrefix(tr, "set "+guardSet+"_") {
				skip = braceDelta(line)
				continue
			}
			if tr == "" || strings.Contains(tr, "comment \""+guardPrefix) {
				continue
			}
			line = nftCounterRE.ReplaceAllString(line, "counter")
			line = nftExpiresRE.ReplaceAllString(line, "")
			line = nftUsedRE.ReplaceAllString(line, "")
			line = nftHandleRE.ReplaceAllString(line, "")
			b.WriteString(strings.TrimRight(line, " \t") + "\n")
		}
	}
	return b.String()
}
