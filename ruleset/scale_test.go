package ruleset

import (
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/rulesetgen"
)

// The generator's small outputs, loaded into a namespace and read back
// (testdata/kp20-*), give the same canonical state: gen writes what the
// kernel tools print.
func TestGenMatchesKernel(t *testing.T) {
	for _, tc := range []struct{ gen, real string }{
		{"testdata/kp20-gen.json", "testdata/kp20-nft.json"},
		{"testdata/kp20-gen.save", "testdata/kp20-ipt.save"},
	} {
		a, b := loadAny(t, tc.gen), loadAny(t, tc.real)
		if d := Diff(a, b); !d.Empty() {
			t.Errorf("%s and %s differ: %+v", tc.gen, tc.real, d)
		}
		if string(a.Canonical()) != string(b.Canonical()) {
			t.Errorf("%s and %s: canonical forms differ", tc.gen, tc.real)
		}
	}
	ipt, _ := rulesetgen.Iptables(20)
	if string(ipt) != string(readFile(t, "testdata/kp20-gen.save")) {
		t.Error("rulesetgen.Iptables(20) is not testdata/kp20-gen.save: regenerate both")
	}
	nft, _ := rulesetgen.Nft(20)
	if string(nft) != string(readFile(t, "testdata/kp20-gen.json")) {
		t.Error("rulesetgen.Nft(20) is not testdata/kp20-gen.json: regenerate both")
	}
}

func countRules(rs *Ruleset) int {
	n := 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
	}
	return n
}

// Parsing a kube-proxy-scale ruleset (about 20,000 rules) is fast: well
// under 300 ms for each syntax (a generous bound for a loaded machine).
func TestParseScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test")
	}
	ipt, nIpt := rulesetgen.Iptables(2000)
	nft, nNft := rulesetgen.Nft(2500)
	for _, tc := range []struct {
		name  string
		data  []byte
		rules int
		parse func([]byte) (*Ruleset, error)
	}{
		{"iptables-save", ipt, nIpt, func(b []byte) (*Ruleset, error) { return ParseIptablesSave(SourceIptablesNft, b) }},
		{"nft json", nft, nNft, ParseNftJSON},
	} {
		if tc.rules < 19000 {
			t.Fatalf("%s: only %d rules generated", tc.name, tc.rules)
		}
		best := time.Hour
		var rs *Ruleset
		for range 3 {
			start := time.Now()
			var err error
			rs, err = tc.parse(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		if got := countRules(rs); got != tc.rules {
			t.Errorf("%s: parsed %d rules, generated %d", tc.name, got, tc.rules)
		}
		t.Logf("%s: %d rules (%d bytes) parsed in %v", tc.name, tc.rules, len(tc.data), best)
		if best > 300*time.Millisecond && !raceEnabled {
			t.Errorf("%s: %d rules took %v, want < 300ms", tc.name, tc.rules, best)
		}
		start := time.Now()
		c := rs.Canonical()
		t.Logf("%s: canonical %d bytes in %v", tc.name, len(c), time.Since(start))
	}
}

func BenchmarkParseIptablesSave20k(b *testing.B) {
	data, n := rulesetgen.Iptables(2000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseIptablesSave(SourceIptablesNft, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "rules")
}

func BenchmarkParseNftJSON20k(b *testing.B) {
	data, n := rulesetgen.Nft(2500)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseNftJSON(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "rules")
}

func BenchmarkCanonical20k(b *testing.B) {
	data, _ := rulesetgen.Iptables(2000)
	rs, err := ParseIptablesSave(SourceIptablesNft, data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rs.Canonical()
	}
}

func BenchmarkDiff20k(b *testing.B) {
	data, _ := rulesetgen.Iptables(2000)
	from, err := ParseIptablesSave(SourceIptablesNft, data)
	if err != nil {
		b.Fatal(err)
	}
	to := from.Strip()
	svc := to.Tables[0].Chain("KUBE-SERVICES")
	svc.Rules = append(svc.Rules[:10], svc.Rules[11:]...)
	b.ReportAllocs()
	for b.Loop() {
		if Diff(from, to).Empty() {
			b.Fatal("no change found")
		}
	}
}
