package ruleset

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseIpsetSave(t *testing.T) {
	sets, err := ParseIpsetSave(readFile(t, "testdata/ipset1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Set{
		{Source: SourceIpset, Family: "ip", Name: "allow", Type: "hash:ip,port", Timeout: "3600", Elements: []string{"1.2.3.4,tcp:22", "1.2.3.4,udp:53"}, Expires: map[string]int64{"1.2.3.4,tcp:22": 99, "1.2.3.4,udp:53": 3599}},
		{Source: SourceIpset, Family: "ip", Name: "blocklist", Type: "hash:net", Elements: []string{"10.1.0.0/16", "192.168.5.1"}},
		{Source: SourceIpset, Family: "ip", Name: "ports", Type: "bitmap:port", Flags: []string{"range 0-1024"}, Elements: []string{"22", "80"}},
		{Source: SourceIpset, Family: "ip6", Name: "v6", Type: "hash:ip", Flags: []string{"comment"}, Elements: []string{`fe80::1 comment "link local"`}},
	}
	if len(sets) != len(want) {
		t.Fatalf("%d sets, want %d", len(sets), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(*sets[i], want[i]) {
			t.Errorf("set %d:\n got  %+v\n want %+v", i, *sets[i], want[i])
		}
	}
}

func TestParseIpsetSaveErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"add x 1.2.3.4\n", "line 1: add to set x before its create line"},
		{"create x hash:ip\ncreate x hash:ip\n", "line 2: set x created twice"},
		{"create x hash:ip\nflush x y\n", `line 2: unknown ipset command "flush"`},
		{"create x\n", "line 1: \"create x\": too few words"},
		{"create x hash:ip comment\nadd x 1.2.3.4 comment \"open\n", "line 2: unterminated quote"},
	} {
		_, err := ParseIpsetSave([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}
