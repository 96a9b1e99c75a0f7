package remote

import (
	"reflect"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`a b  c`, []string{"a", "b", "c"}},
		{`"a b" 'c d' e`, []string{"a b", "c d", "e"}},
		{`a\ b "q\"x" # comment`, []string{"a b", `q"x`}},
		{`"#not" # yes`, []string{"#not"}},
		{``, nil},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := splitArgs(`"open`); err == nil {
		t.Error(`splitArgs("open) succeeded, want an error`)
	}
}

func TestConvtime(t *testing.T) {
	for in, want := range map[string]int{"90": 90, "90s": 90, "1m30s": 90, "2h": 7200, "1d": 86400, "1w": 604800} {
		if got, err := convtime(in); err != nil || got != want {
			t.Errorf("convtime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "5y", "m"} {
		if _, err := convtime(bad); err == nil {
			t.Errorf("convtime(%q) succeeded", bad)
		}
	}
}

func TestApplyAlgoSpec(t *testing.T) {
	def := []string{"a", "b-cert", "c"}
	tests := []struct {
		spec string
		want []string
	}{
		{"", def},
		{"c,a", []string{"c", "a"}},
		{"+d", []string{"a", "b-cert", "c", "d"}},
		{"-*-cert", []string{"a", "c"}},
		{"^c", []string{"c", "a", "b-cert"}},
	}
	for _, tt := range tests {
		if got := applyAlgoSpec(tt.spec, def); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("applyAlgoSpec(%q) = %q, want %q", tt.spec, got, tt.want)
		}
	}
}

// TestExpandPercent checks the token table; %C is checked against ssh
// itself by TestPreviewMatchesSSHG (tokens_all.conf, agents.conf).
func TestExpandPercent(t *testing.T) {
	tv := tokenValues{host: "h.example", port: "22", ruser: "r", alias: "al", keyAlias: "ka", luser: "me", home: "/home/me", uid: "1000", thisHost: "ws.lan"}
	tests := []struct {
		in, allowed, want string
		err               bool
	}{
		{"%h:%p %r %n %k %u %d %i %l %L %%", fileTokens, "h.example:22 r al ka me /home/me 1000 ws.lan ws %", false},
		{"nc %h %p", proxyTokens, "nc h.example 22", false},
		{"nc %d", proxyTokens, "", true},
		{"trailing %", fileTokens, "", true},
	}
	for _, tt := range tests {
		got, err := expandPercent(tt.in, tv, tt.allowed)
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("expandPercent(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}
