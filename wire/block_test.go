package wire

import (
	"strings"
	"testing"
	"time"
)

func TestNormalizeCIDR(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"10.1.2.3/24", "10.1.2.0/24", ""},
		{"10.1.2.3", "10.1.2.3", ""},
		{"10.1.2.3/32", "10.1.2.3", ""},
		{"2001:db8::1/32", "2001:db8::/32", ""},
		{"2001:DB8::1", "2001:db8::1", ""},
		{"0.0.0.0/0", "", "every address"},
		{"::/0", "", "every address"},
		{"::ffff:10.1.2.3", "", "IPv4-mapped"},
		{"fe80::1%eth0", "", "neither"},
		{"10.1.2.300", "", "neither"},
		{"example.com", "", "neither"},
	} {
		_, got, err := NormalizeCIDR(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %q, %v; want an error saying %q", tc.in, got, err, tc.err)
		}
	}
}

func TestBlockChangeCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Change
		ok   bool
	}{
		{"fine", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "blocked", CIDRs: []string{"10.0.0.0/8"}, TTL: Duration(time.Hour)}}, true},
		{"no payload", Change{Kind: ChangeBlock}, false},
		{"with a ruleset", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "blocked", CIDRs: []string{"10.0.0.0/8"}}, Ruleset: &RulesetChange{}}, false},
		{"no cidrs", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "blocked"}}, false},
		{"not normalised", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "blocked", CIDRs: []string{"10.1.2.3/8"}}}, false},
		{"bad set name", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "Blocked", CIDRs: []string{"10.0.0.0/8"}}}, false},
		{"set name too long", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "abcdefghijklmnopq", CIDRs: []string{"10.0.0.0/8"}}}, false},
		{"set name with a quote", Change{Kind: ChangeBlock, Block: &BlockChange{Set: `a"b`, CIDRs: []string{"10.0.0.0/8"}}}, false},
		{"fractional ttl", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "blocked", CIDRs: []string{"10.0.0.0/8"}, TTL: Duration(1500 * time.Millisecond)}}, false},
		{"negative ttl", Change{Kind: ChangeBlock, Block: &BlockChange{Set: "blocked", CIDRs: []string{"10.0.0.0/8"}, TTL: Duration(-time.Second)}}, false},
		{"guarded with a block", Change{Kind: ChangeGuarded, Block: &BlockChange{Set: "blocked", CIDRs: []string{"10.0.0.0/8"}}}, false},
	} {
		err := tc.c.Check()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
