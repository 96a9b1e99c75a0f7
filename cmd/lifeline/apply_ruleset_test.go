package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/inventory"
)

// Issue #13 on the workstation: empty and oversized rulesets are refused
// before any host is contacted, and --format travels as FormatExplicit.
func TestApplyTargetsRefusesEmptyAndOversized(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hosts := []*inventory.Host{{Name: "h1"}}
	good := "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
	for name, tc := range map[string]struct {
		file string
		max  int64
		want string
	}{
		"empty":    {write("empty.v4", "# nothing\n\n"), 0, "empty"},
		"oversize": {write("big.v4", good), 10, "limit of 10 bytes"},
	} {
		if _, err := applyTargets(hosts, tc.file, "", tc.max); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	p := write("good.v4", good)
	for format, explicit := range map[string]bool{"": false, "iptables": true} {
		ts, err := applyTargets(hosts, p, format, 0)
		if err != nil || len(ts) != 1 || ts[0].FormatExplicit != explicit {
			t.Errorf("--format %q: %+v %v, want FormatExplicit %v", format, ts, err, explicit)
		}
	}
}

// FuzzDetectFormat: the format detector takes any file name and content
// without a panic, and answers one of the three formats or an error.
func FuzzDetectFormat(f *testing.F) {
	f.Add("", "r.nft", "table inet f {}\n")
	f.Add("", "rules", "*filter\nCOMMIT\n")
	f.Add("", "rules", "*filter\n-A INPUT -s ::/0 -j ACCEPT\nCOMMIT\n")
	f.Add("ip6tables", "x", "")
	f.Add("", "x", "\x00\x01")
	f.Fuzz(func(t *testing.T, flag, path, text string) {
		got, err := detectFormat(flag, path, text)
		if err != nil {
			return
		}
		switch got {
		case "nft", "iptables", "ip6tables":
		default:
			t.Fatalf("detectFormat(%q, %q, %q) = %q", flag, path, text, got)
		}
	})
}
