package ruleset

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/diff/*/want* from the current output")

// loadAny parses a testdata file by its extension: .json nft, .save
// iptables-save (iptables-nft), .ipset ipset save.
func loadAny(t *testing.T, path string) *Ruleset {
	t.Helper()
	data := readFile(t, path)
	var rs *Ruleset
	var err error
	switch filepath.Ext(path) {
	case ".json":
		rs, err = ParseNftJSON(data)
	case ".save":
		rs, err = ParseIptablesSave(SourceIptablesNft, data)
	case ".ipset":
		var sets []*Set
		sets, err = ParseIpsetSave(data)
		rs = &Ruleset{Sets: sets}
	default:
		t.Fatalf("%s: unknown extension", path)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rs
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestDiffGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/diff/*")
	if err != nil || len(dirs) < 4 {
		t.Fatalf("diff cases: %v %v", dirs, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			from, _ := filepath.Glob(filepath.Join(dir, "from.*"))
			to, _ := filepath.Glob(filepath.Join(dir, "to.*"))
			if len(from) != 1 || len(to) != 1 {
				t.Fatalf("%s: want one from.* and one to.*", dir)
			}
			d := Diff(loadAny(t, from[0]), loadAny(t, to[0]))
			var txt, col bytes.Buffer
			if err := d.Write(&txt, false); err != nil {
				t.Fatal(err)
			}
			if err := d.Write(&col, true); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(txt.String(), "\x1b") {
				t.Error("colour without color")
			}
			if !d.Empty() && !strings.Contains(col.String(), "\x1b[") {
				t.Error("no colour with color")
			}
			js, err := json.MarshalIndent(d, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "want.txt"), txt.Bytes())
			golden(t, filepath.Join(dir, "want.json"), append(js, '\n'))
			if filepath.Base(dir) == "same" && !d.Empty() {
				t.Error("identical inputs give a non-empty delta")
			}
			// The reverse diff is the mirror image: same size.
			r := Diff(loadAny(t, to[0]), loadAny(t, from[0]))
			if countChanges(r) != countChanges(d) {
				t.Errorf("reverse diff has %d changes, forward %d", countChanges(r), countChanges(d))
			}
		})
	}
}

func countChanges(d *Delta) int {
	n := 0
	for _, t := range d.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules) + 1
		}
		for _, s := range t.Sets {
			n += len(s.Added) + len(s.Removed) + 1
		}
		n++
	}
	for _, s := range d.Sets {
		n += len(s.Added) + len(s.Removed) + 1
	}
	return n
}

func TestDiffRulesLCS(t *testing.T) {
	mk := func(s string) []*Rule {
		var rs []*Rule
		for _, f := range strings.Fields(s) {
			rs = append(rs, &Rule{Text: f, Packets: 7, Handle: 9})
		}
		return rs
	}
	for _, tc := range []struct{ from, to, want string }{
		{"a b c", "a b c", ""},
		{"a b c", "a x c", "-2b +2x"},
		{"a b c", "c a b", "+1c -3c"},
		{"", "a b", "+1a +2b"},
		{"a b", "", "-1a -2b"},
		{"a b c d", "a c d e", "-2b +4e"},
	} {
		var got []string
		for _, c := range diffRules(mk(tc.from), mk(tc.to)) {
			got = append(got, c.Op+itoa(c.Pos)+c.Text)
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%q -> %q: %q, want %q", tc.from, tc.to, g, tc.want)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestDiffIgnoresCountersAndHandles(t *testing.T) {
	a, err := ParseIptablesSave(SourceIptablesNft, readFile(t, "testdata/ipt1-nft.save"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseIptablesSave(SourceIptablesNft, readFile(t, "testdata/ipt1-nft-nocounters.save"))
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(a, b); !d.Empty() {
		t.Errorf("counters only, delta %+v", d)
	}
	if d := Diff(a, a.Strip()); !d.Empty() {
		t.Errorf("Strip changed the semantics: %+v", d)
	}
}
