package inventory

import (
	"reflect"
	"testing"
)

// TestPySplit pins pySplit with comments, as Ansible splits INI host lines;
// every expectation was printed by python3's shlex.split(s, comments=True).
func TestPySplit(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr error
	}{
		{`h1 a="x \"y\" z" b='it''s' c="tab\tx" # c`, []string{"h1", `a=x "y" z`, "b=its", `c=tab\tx`}, nil},
		{"a#b c", []string{"a"}, nil},
		{"a '#b' c", []string{"a", "#b", "c"}, nil},
		{`e=plain\ x`, []string{"e=plain x"}, nil},
		{"x=1 #c\ny=2", []string{"x=1", "y=2"}, nil},
		{"", []string{}, nil},
		{`"unterminated`, nil, errNoClosingQuote},
		{`a\`, nil, errNoEscapedChar},
	}
	for _, tt := range tests {
		got, err := pySplit(tt.in, true)
		if err != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("pySplit(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestPyValue pins what Ansible's ast.literal_eval makes of an INI value;
// every expectation was printed by python3 (a non-string result, or an
// error, keeps the text as written).
func TestPyValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"quoted value"`, "quoted value"},
		{`'single'`, "single"},
		{`a b c`, "a b c"},
		{`"u\u00e9"`, "ué"},
		{`'it''s'`, "its"},
		{`'a' \"b\"`, `'a' \"b\"`},
		{`2222`, "2222"},
		{`True`, "True"},
		{`"a\tb"`, "a\tb"},
		{`r'a\tb'`, `a\tb`},
		{`'unterminated`, `'unterminated`},
		{`"\x41\101"`, "AA"},
		{`'\q'`, `\q`},
		{`'''tri'''`, "tri"},
		{` "lead"`, "lead"},
		{`f"x"`, `f"x"`},
		{`"a" b`, `"a" b`},
		{`'-o ProxyCommand="ssh -W %h:%p bastion"'`, `-o ProxyCommand="ssh -W %h:%p bastion"`},
	}
	for _, tt := range tests {
		if got := pyValue(tt.in); got != tt.want {
			t.Errorf("pyValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
