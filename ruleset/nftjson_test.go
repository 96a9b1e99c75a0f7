package ruleset

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var nftCounterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// nftTextRules reads `nft list ruleset` text: the rules of each chain, by
// "family table chain", with counter values removed.
func nftTextRules(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var table, chain string
	depth := 0
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "table "):
			table = strings.TrimSuffix(strings.TrimPrefix(l, "table "), " {")
			depth = 1
		case depth == 1 && strings.HasPrefix(l, "chain "):
			chain = strings.TrimSuffix(strings.TrimPrefix(l, "chain "), " {")
			depth = 2
			out[table+" "+chain] = []string{}
		case depth == 1 && strings.HasSuffix(l, "{"):
			depth = 3
		case l == "}":
			depth--
			if depth == 2 {
				depth = 1
			}
		case depth == 2 && l != "" && !strings.HasPrefix(l, "type "):
			out[table+" "+chain] = append(out[table+" "+chain], nftCounterRE.ReplaceAllString(l, "counter"))
		}
	}
	return out
}

func TestParseNftJSONTextMatchesNft(t *testing.T) {
	type textCase struct {
		json, text string
		// rules nft itself prints differently from its JSON (iptables-nft
		// tables print translated xt matches; our text keeps the xt name).
		skipXt bool
		small  bool // a small fixture: counted in the total only
	}
	cases := []textCase{
		{"testdata/sample1.json", "testdata/sample1.txt", false, false},
		{"testdata/ipt1-nft.json", "testdata/ipt1-nft.txt", true, false},
		{"testdata/kp20-nft.json", "testdata/kp20-nft.txt", false, false},
	}
	// The evaluator's fixtures (testdata/eval/gen.sh saves both listings).
	evalTexts, _ := filepath.Glob("testdata/eval/*.txt")
	for _, txt := range evalTexts {
		cases = append(cases, textCase{strings.TrimSuffix(txt, ".txt") + ".json", txt, false, true})
	}
	total := 0
	for _, tc := range cases {
		data, err := os.ReadFile(tc.json)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := ParseNftJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		want := nftTextRules(t, tc.text)
		n := 0
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				k := tb.Family + " " + tb.Name + " " + c.Name
				w := want[k]
				if len(w) != len(c.Rules) {
					t.Errorf("%s %s: %d rules, nft lists %d", tc.json, k, len(c.Rules), len(w))
					continue
				}
				for i, r := range c.Rules {
					if tc.skipXt && strings.Contains(r.Text, "xt ") {
						continue
					}
					n++
					if r.Text != w[i] {
						t.Errorf("%s %s rule %d:\n got  %s\n want %s", tc.json, k, i+1, r.Text, w[i])
					}
				}
			}
		}
		total += n
		if n < 10 && !tc.small {
			t.Errorf("%s: only %d rules compared", tc.json, n)
		}
	}
	if len(evalTexts) < 10 || total < 100 {
		t.Errorf("%d eval fixtures, %d rules compared in all", len(evalTexts), total)
	}
}
