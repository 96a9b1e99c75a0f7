package blockcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/internal/state"
	"github.com/lifeline-dev/lifeline/ruleset"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

// The fixtures in testdata are real listings, made in a throwaway network
// namespace with nft -j list ruleset, iptables-nft-save -c and ipset save:
//
//	nft-fresh.json   inet filter: policy drop, ct established, lo, tcp dport 22 accept
//	nft-ready.json   the same plus table inet lifeline as block creates it, 203.0.113.0/24 in it
//	nft-closed.json  inet filter: policy drop, only ct established (new SSH already dropped)
//	ipt-fresh.save   iptables-nft filter: INPUT DROP, established, dport 22 accept
//	ipt-ready.*      the same plus LIFELINE-BLOCK and ipset lifeline-blocked (203.0.113.0/24)
func parts(t *testing.T, files ...string) []wire.StatePart {
	t.Helper()
	var out []wire.StatePart
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		p := wire.StatePart{Text: string(b)}
		switch {
		case strings.HasSuffix(f, ".json"):
			p.Source, p.Format = "nft", wire.StateNftJSON
		case strings.HasSuffix(f, ".save"):
			p.Source, p.Format = "iptables-nft", wire.StateIptablesSave
		case strings.HasSuffix(f, ".ipset"):
			p.Source, p.Format = "ipset", wire.StateIpsetSave
		}
		out = append(out, p)
	}
	return out
}

func TestCheck(t *testing.T) {
	op := session.BlockPath{What: "this connection", Src: "10.9.1.5", SrcPort: 40000, Dst: "10.9.0.1", DstPort: 22}
	op6 := session.BlockPath{What: "this connection", Src: "2001:db8:9::5", SrcPort: 40000, Dst: "2001:db8:9::1", DstPort: 22}
	jump := session.BlockPath{What: "the workstation, as the first jump host sees it", Src: "172.16.5.9", SrcPort: 40001, Dst: "10.9.0.1", DstPort: 22}
	for _, tc := range []struct {
		name   string
		files  []string
		mode   string
		cidrs  []string
		paths  []session.BlockPath
		refuse []string // the refused paths' sources, with the CIDR named
		cidr   string
	}{
		{"nft fresh: a range holding the operator", []string{"nft-fresh.json"}, wire.BlockModeNft, []string{"10.9.0.0/16"}, []session.BlockPath{op}, []string{"10.9.1.5"}, "10.9.0.0/16"},
		{"nft fresh: the exact address", []string{"nft-fresh.json"}, wire.BlockModeNft, []string{"198.51.100.1", "10.9.1.5"}, []session.BlockPath{op}, []string{"10.9.1.5"}, "10.9.1.5"},
		{"nft fresh: elsewhere", []string{"nft-fresh.json"}, wire.BlockModeNft, []string{"198.51.100.0/24", "10.9.1.4"}, []session.BlockPath{op}, nil, ""},
		{"nft fresh: ipv6", []string{"nft-fresh.json"}, wire.BlockModeNft, []string{"2001:db8::/32"}, []session.BlockPath{op, op6}, []string{"2001:db8:9::5"}, "2001:db8::/32"},
		{"nft ready: the jump path only", []string{"nft-ready.json"}, wire.BlockModeNft, []string{"172.16.0.0/12"}, []session.BlockPath{op, jump}, []string{"172.16.5.9"}, "172.16.0.0/12"},
		{"nft ready: elsewhere", []string{"nft-ready.json"}, wire.BlockModeNft, []string{"192.0.2.0/24"}, []session.BlockPath{op, jump}, nil, ""},
		{"nft closed: new SSH already dropped, not the block's doing", []string{"nft-closed.json"}, wire.BlockModeNft, []string{"10.9.0.0/16"}, []session.BlockPath{op}, nil, ""},
		{"iptables fresh: a range holding the operator", []string{"ipt-fresh.save"}, wire.BlockModeIpset, []string{"10.0.0.0/8"}, []session.BlockPath{op}, []string{"10.9.1.5"}, "10.0.0.0/8"},
		{"iptables fresh: elsewhere", []string{"ipt-fresh.save"}, wire.BlockModeIpset, []string{"192.0.2.0/24"}, []session.BlockPath{op}, nil, ""},
		{"iptables ready: the operator", []string{"ipt-ready.save", "ipt-ready.ipset"}, wire.BlockModeIpset, []string{"10.9.1.0/24"}, []session.BlockPath{op, jump}, []string{"10.9.1.5"}, "10.9.1.0/24"},
		{"iptables ready: elsewhere", []string{"ipt-ready.save", "ipt-ready.ipset"}, wire.BlockModeIpset, []string{"192.0.2.0/24"}, []session.BlockPath{op, jump}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Check("h01", parts(t, tc.files...), tc.mode, session.BlockSpec{Set: "blocked", CIDRs: tc.cidrs}, tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			var srcs []string
			for _, r := range got {
				srcs = append(srcs, r.Path.Src)
				if r.CIDR != tc.cidr || r.Why == "" {
					t.Errorf("refusal %+v: want CIDR %s and the deciding rule", r, tc.cidr)
				}
			}
			if strings.Join(srcs, ",") != strings.Join(tc.refuse, ",") {
				t.Errorf("refused %v, want %v (%+v)", srcs, tc.refuse, got)
			}
		})
	}
}

// TestCandidate: the candidate holds the block pieces once, however often
// it is built on a state that already has them, and the new elements.
func TestCandidate(t *testing.T) {
	for _, tc := range []struct {
		files []string
		mode  string
	}{
		{[]string{"nft-fresh.json"}, wire.BlockModeNft},
		{[]string{"nft-ready.json"}, wire.BlockModeNft},
		{[]string{"ipt-fresh.save"}, wire.BlockModeIpset},
		{[]string{"ipt-ready.save", "ipt-ready.ipset"}, wire.BlockModeIpset},
	} {
		rs, err := state.Parse("h01", parts(t, tc.files...))
		if err != nil {
			t.Fatal(err)
		}
		if err := Candidate(rs, tc.mode, "blocked", []string{"192.0.2.0/24", "2001:db8::/32"}); err != nil {
			t.Fatal(err)
		}
		var rules, elems int
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					if strings.HasPrefix(r.Comment, ruleset.BlockCommentPrefix) {
						rules++
					}
				}
			}
			for _, s := range tb.Sets {
				elems += len(s.Elements)
			}
		}
		for _, s := range rs.Sets {
			elems += len(s.Elements)
		}
		wantRules, wantElems := 2, 2 // nft: the v4 and v6 drop; iptables: the jump and the v4 drop (no ip6tables here)
		if tc.mode == wire.BlockModeIpset {
			wantElems = 1 // only the v4 ipset: the state has no ip6tables
		}
		if strings.Contains(tc.files[0], "ready") {
			wantElems++
		}
		if rules != wantRules || elems != wantElems {
			t.Errorf("%v: %d block rules and %d elements, want %d and %d", tc.files, rules, elems, wantRules, wantElems)
		}
	}
}
