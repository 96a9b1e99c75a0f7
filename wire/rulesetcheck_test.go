package wire

import (
	"strings"
	"testing"
)

func TestCheckRulesetText(t *testing.T) {
	nft := "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n"
	ipt := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
	for _, tc := range []struct {
		name   string
		format Format
		text   string
		want   string // "" accepted
		line   int
	}{
		{"nft", FormatNft, nft, "", 0},
		{"iptables", FormatIPTables, ipt, "", 0},
		{"ip6tables", FormatIP6Tables, strings.ReplaceAll(ipt, "22", "2222"), "", 0},
		{"nft then iptables", FormatNft, nft + ipt, "mixes nft and iptables-save", 6},
		{"iptables then nft", FormatIPTables, ipt + nft, "mixes nft and iptables-save", 5},
		{"all the other format is not mixed", FormatIPTables, nft, "", 0},
		{"nul byte", FormatNft, "table inet x {\n}\n\x00\n", "binary data", 3},
		{"mostly not text", FormatIPTables, "*filter\n\xff\xfe\x81\x82\x83\x84\x85\nCOMMIT\n", "binary data", 0},
		{"a stray Latin-1 byte in a comment is text", FormatIPTables, "# M\xfcller's rules\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", "", 0},
		{"a comment naming the other syntax", FormatNft, "# converted from *filter / COMMIT\n" + nft, "", 0},
		{"an nft set named like a table header", FormatNft, "table ip t {\n\tset s { type ipv4_addr; }\n}\n", "", 0},
	} {
		err := CheckRuleset(tc.format, tc.text, 0)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want accepted", tc.name, err)
			}
			continue
		}
		e, ok := err.(*Error)
		if !ok || !strings.Contains(e.Message, tc.want) || e.Code != CodeInvalidRuleset {
			t.Errorf("%s: %v, want an invalid-ruleset error saying %q", tc.name, err, tc.want)
			continue
		}
		if tc.line > 0 && e.Line != tc.line && !strings.Contains(e.Message, "line "+string(rune('0'+tc.line))) {
			t.Errorf("%s: line %d (%s), want line %d", tc.name, e.Line, e.Message, tc.line)
		}
	}
}
