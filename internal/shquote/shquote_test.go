package shquote

import (
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", "abc"},
		{"/usr/sbin/nft", "/usr/sbin/nft"},
		{"", "''"},
		{"a b", "'a b'"},
		{"c'd $HOME", `'c'\''d $HOME'`},
		{"$(reboot)", "'$(reboot)'"},
		{"a\nb", "'a\nb'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestJoinRoundTrip: sh splits a joined line back into the same words.
func TestJoinRoundTrip(t *testing.T) {
	words := []string{"printf", "%s|", "plain", "", "two words", "it's", "$HOME", "`id`", "a\\b", "*", "new\nline"}
	out, err := exec.Command("sh", "-c", Join(words)).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, w := range words[2:] {
		want += w + "|"
	}
	if string(out) != want {
		t.Fatalf("sh -c %s\n= %q\nwant %q", Join(words), out, want)
	}
}
