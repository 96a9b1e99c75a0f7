package remote_test

import (
	"io"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/remote"
)

// TestStderrTail: the tail every Runner keeps for ExitError.Stderr holds
// the last 4 KiB written, however the writes are cut.
func TestStderrTail(t *testing.T) {
	long := strings.Repeat("a", 4000) + strings.Repeat("b", 200)
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{name: "nothing", want: ""},
		{name: "short", writes: []string{"oops\n"}, want: "oops\n"},
		{name: "exactly 4 KiB", writes: []string{strings.Repeat("x", 4096)}, want: strings.Repeat("x", 4096)},
		{name: "one long write", writes: []string{"first line\n" + long}, want: ("first line\n" + long)[len("first line\n")+len(long)-4096:]},
		{name: "many writes", writes: []string{long, long, "end\n"}, want: (long + long + "end\n")[2*len(long)+4-4096:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tail remote.StderrTail
			for _, w := range tt.writes {
				if n, err := io.WriteString(&tail, w); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(w))
				}
			}
			if got := tail.String(); got != tt.want {
				t.Errorf("String() = %d bytes ending %q, want %d bytes ending %q", len(got), got[max(0, len(got)-20):], len(tt.want), tt.want[max(0, len(tt.want)-20):])
			}
		})
	}
}
