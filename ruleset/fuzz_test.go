package ruleset

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"
)

func readFileF(f *testing.F, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// Every parser: never a panic; a parsed ruleset has a canonical form that
// Strip keeps, differs from itself in nothing, and writes its delta.
func checkParsed(t *testing.T, rs *Ruleset) {
	c := rs.Canonical()
	if !bytes.Equal(rs.Strip().Canonical(), c) {
		t.Fatal("Strip changed the canonical form")
	}
	if d := Diff(rs, rs); !d.Empty() {
		t.Fatalf("a ruleset differs from itself: %+v", d)
	}
	rs.WithoutOwned().Canonical()
	if err := Diff(rs, &Ruleset{}).Write(io.Discard, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Merge(rs).Canonical(), c) {
		t.Fatal("Merge of one ruleset changed it")
	}
}

func FuzzParseNftJSON(f *testing.F) {
	f.Add([]byte(`{"nftables":[{"table":{"family":"inet","name":"t"}},{"rule":{"family":"inet","table":"t","chain":"c","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":22}},{"accept":null}]}}]}`))
	// Small seeds, one per rule and set of a real sample, let the fuzzer
	// work on each expression shape (a whole sample mutates slowly).
	var doc struct {
		Nftables []json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(readFileF(f, "testdata/sample1.json"), &doc); err != nil {
		f.Fatal(err)
	}
	for _, o := range doc.Nftables {
		if bytes.HasPrefix(o, []byte(`{"rule"`)) || bytes.HasPrefix(o, []byte(`{"set"`)) || bytes.HasPrefix(o, []byte(`{"map"`)) {
			f.Add([]byte(`{"nftables":[` + string(o) + `]}`))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseNftJSON(data)
		if err != nil {
			return
		}
		checkParsed(t, rs)
	})
}

func FuzzParseIptablesSave(f *testing.F) {
	f.Add([]byte("*filter\n:INPUT DROP [1:2]\n[3:4] -A INPUT -p tcp ! --dport 22 -m comment --comment \"a \\\"b\\\"\" -j ACCEPT\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseIptablesSave(SourceIptablesLegacy, data)
		if err != nil {
			return
		}
		checkParsed(t, rs)
	})
}

func FuzzParseIpsetSave(f *testing.F) {
	f.Add([]byte("create s hash:net family inet timeout 60\nadd s 10.0.0.0/8 timeout 5 comment \"x\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sets, err := ParseIpsetSave(data)
		if err != nil {
			return
		}
		checkParsed(t, &Ruleset{Sets: sets})
	})
}
