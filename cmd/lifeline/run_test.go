package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrefixWriter(t *testing.T) {
	tests := []struct {
		writes []string
		want   string
	}{
		{[]string{"a\nb\n"}, "h1 | a\nh1 | b\n"},
		{[]string{"par", "tial\nrest"}, "h1 | partial\nh1 | rest\n"},
		{[]string{""}, ""},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		p := &prefixWriter{prefix: "h1 | ", w: &out}
		for _, w := range tc.writes {
			p.Write([]byte(w))
		}
		p.Flush()
		if out.String() != tc.want {
			t.Errorf("writes %q: got %q, want %q", tc.writes, out.String(), tc.want)
		}
	}
}

func TestResolveTargetsAliases(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(cfg, []byte("Host extra\n  HostName 192.0.2.7\nHost web*\n  User x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(inv, []byte("ssh_config: ssh_config\nhosts:\n  h01: {address: 192.0.2.1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, inventory, pattern string
		want                     string // host names joined by ","; "" = usage error
	}{
		{"no inventory", "", "a,b", "a,b"},
		{"no inventory glob", "", "web*", ""},
		{"inventory host", inv, "h01", "h01"},
		{"alias only in ssh_config", inv, "extra", "extra"},
		{"mixed", inv, "h01,extra", "h01,extra"},
		{"unknown everywhere", inv, "nowhere", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &globals{inventory: tc.inventory}
			_, hosts, err := resolveTargets(g, tc.pattern, "")
			var names []string
			for _, h := range hosts {
				names = append(names, h.Name)
			}
			if tc.want == "" {
				var ue usageError
				if err == nil || !asUsage(err, &ue) {
					t.Fatalf("resolveTargets(%q) = %v, %v; want a usage error", tc.pattern, names, err)
				}
				return
			}
			if err != nil || strings.Join(names, ",") != tc.want {
				t.Fatalf("resolveTargets(%q) = %v, %v; want %s", tc.pattern, names, err, tc.want)
			}
		})
	}
}

func asUsage(err error, ue *usageError) bool {
	u, ok := err.(usageError)
	if ok {
		*ue = u
	}
	return ok
}
