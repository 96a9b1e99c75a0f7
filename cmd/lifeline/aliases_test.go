package main

import (
	"slices"
	"testing"
)

func TestHostAliases(t *testing.T) {
	tests := []struct {
		name, config string
		want         []string
	}{
		{"decoded", "Host web1 web2 *.prod !bad\n  User ops\nHost db\n  Port 2222\n", []string{"web1", "web2", "db"}},
		{"equals sign", "Host=jump\n  HostName 10.0.0.1\n", []string{"jump"}},
		{"with a Match block", "Host a\nMatch host b exec \"true\"\n  User x\nHost c d?\n", []string{"a", "c"}},
		{"none", "# nothing\n", nil},
		{"undecodable: scanned", "Host ok1\nHost \"unterminated\n", []string{"ok1", "\"unterminated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := hostAliases([]byte(tc.config))
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("aliases %q, want %q", got, want)
			}
		})
	}
}
