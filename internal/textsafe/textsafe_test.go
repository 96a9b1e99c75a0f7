package textsafe

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "refused: lock held by tx 42", "refused: lock held by tx 42"},
		{"newline and tab kept", "a\n\tb", "a\n\tb"},
		{"clear screen", "x\x1b[2Jy", `x\x1b[2Jy`},
		{"carriage return", "ok\rFAKE", `ok\x0dFAKE`},
		{"bell and nul", "\a\x00", `\x07\x00`},
		{"del", "a\x7fb", `a\x7fb`},
		{"invalid utf-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"utf-8 kept", "größe … ✔", "größe … ✔"},
		{"c1 csi", "a\u009b2Jb", `a\u009b2Jb`},
		{"bidi override", "abc\u202edef", `abc\u202edef`},
		{"backslash kept", `C:\x`, `C:\x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Escape(tc.in); got != tc.want {
				t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTruncateAndText(t *testing.T) {
	long := strings.Repeat("a", MaxLine+5)
	tests := []struct {
		name, in    string
		trunc, text string
	}{
		{"short", "short", "short", "short"},
		{"exactly the limit", long[:MaxLine], long[:MaxLine], long[:MaxLine]},
		{"long line", long, long[:MaxLine] + "… (1005 bytes)", long[:MaxLine] + "… (1005 bytes)"},
		{"only the long line is cut", "head\n" + long + "\ntail", "head\n" + long[:MaxLine] + "… (1005 bytes)\ntail", "head\n" + long[:MaxLine] + "… (1005 bytes)\ntail"},
		{"never inside a character", strings.Repeat("a", MaxLine-1) + "é", strings.Repeat("a", MaxLine-1) + "… (1001 bytes)", strings.Repeat("a", MaxLine-1) + "… (1001 bytes)"},
		{"escapes after cutting", "\x1b" + long[:MaxLine], "\x1b" + long[:MaxLine-1] + "… (1001 bytes)", `\x1b` + long[:MaxLine-1] + "… (1001 bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Truncate(tc.in); got != tc.trunc {
				t.Errorf("Truncate = %q\nwant %q", got, tc.trunc)
			}
			if got := Text(tc.in); got != tc.text {
				t.Errorf("Text = %q\nwant %q", got, tc.text)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "h01", `"h01"`},
		{"traversal", "../../tmp/x", `"../../tmp/x"`},
		{"escapes", "a\x1b[2J\nb\"", `"a\x1b[2J\nb\""`},
		{"invalid utf-8", "\xff", `"\xff"`},
		{"long", long, `"` + long[:MaxQuoted] + `"… (300 bytes)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quote(tc.in); got != tc.want {
				t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}
