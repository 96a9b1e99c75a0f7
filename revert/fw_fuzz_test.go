package revert

import (
	"os"
	"path/filepath"
	"testing"
)

// seedRulesets adds the repository's rulesets (testdata/rulesets) to f.
func seedRulesets(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "rulesets", "*"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("*filter\n:INPUT DROP [0:0]\n-A INPUT -m comment --comment \"a \\\" b\" ! -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n")
	f.Add("table inet f { chain c { type filter hook input priority 0; policy drop; } }\nflush ruleset ip\n")
	f.Add("table ip t {\n\tchain c {\n\t\tcomment \"}{\"\n\t}\n")
}

// FuzzParseIPTables: the iptables-save parser and normaliser never panic,
// and what parses normalises.
func FuzzParseIPTables(f *testing.F) {
	seedRulesets(f)
	f.Fuzz(func(t *testing.T, text string) {
		ts, err := parseIPTables(text)
		if err != nil {
			return
		}
		_ = normIPTables(ts, func(string) bool { return false })
		_ = iptInUse(ts)
	})
}

// FuzzNftScan: the nft scanners (tables, base chains, blocks) never panic.
func FuzzNftScan(f *testing.F) {
	seedRulesets(f)
	f.Fuzz(func(t *testing.T, text string) {
		tables, chains := nftScan(text)
		_ = nftDeclaredTables(text)
		blocks := splitNftTables(text)
		_ = normNft(blocks)
		for _, c := range chains {
			_ = c
		}
		for _, tb := range tables {
			_ = tb.String()
		}
	})
}

// FuzzReverseDiff: reversing a diff of any two texts never panics, and
// reversing twice gives the diff back.
func FuzzReverseDiff(f *testing.F) {
	f.Add("a\nb\n", "a\nc\n")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, a, b string) {
		d := unifiedDiff("a", "b", a, b)
		if got := reverseDiff(reverseDiff(d)); got != d {
			t.Fatalf("reverse twice:\n%q\nwant\n%q", got, d)
		}
	})
}
