package session

import "testing"

func TestParseCheck(t *testing.T) {
	for _, tc := range []struct {
		in, addr string // addr "": refused
	}{
		{"tcp://web01.example.com:443", "web01.example.com:443"},
		{"tcp://198.18.0.5:22", "198.18.0.5:22"},
		{"tcp://[fd00::5]:2222", "[fd00::5]:2222"},
		{"tcp://my_host:80", "my_host:80"},
		{"web01:443", ""},
		{"http://web01:443", ""},
		{"tcp://web01", ""},
		{"tcp://web01:0", ""},
		{"tcp://web01:65536", ""},
		{"tcp://web01:443/path", ""},
		{"tcp://user@web01:443", ""},
		{"tcp://web01:443?x=1", ""},
		{"tcp://x;touch /tmp/p:22", ""},
		{"tcp://$(touch /tmp/p):22", ""},
		{"tcp://`id`:22", ""},
		{"tcp://-oProxyCommand=id:22", ""},
		{"tcp://a b:22", ""},
		{"tcp://a\nb:22", ""},
		{"tcp://:22", ""},
	} {
		addr, err := ParseCheck(tc.in)
		if tc.addr == "" {
			if err == nil {
				t.Errorf("%q: accepted as %q, want refused", tc.in, addr)
			}
			continue
		}
		if err != nil || addr != tc.addr {
			t.Errorf("%q: %q, %v; want %q", tc.in, addr, err, tc.addr)
		}
	}
}
