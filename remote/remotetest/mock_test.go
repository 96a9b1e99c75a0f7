package remotetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/lifeline-dev/lifeline/remote"
)

// recordingTB captures failures instead of failing the real test.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Helper()          {}
func (r *recordingTB) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestMockFailsTheTest(t *testing.T) {
	tests := []struct {
		name    string
		run     []string
		wantErr string // substring of the recorded failure; "" for none
	}{
		{"expected command", []string{"uname -m"}, ""},
		{"used twice", []string{"uname -m", "uname -m"}, ""},
		{"unexpected command", []string{"uname -m", "rm -rf /"}, `unexpected command "rm -rf /"`},
		{"never ran", nil, `expected command never ran: "uname -m"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingTB{TB: t}
			m := New(rt, "h1").Expect("uname -m", Reply{Stdout: "x86_64\n"})
			for _, c := range tc.run {
				out, err := remote.Output(context.Background(), m, c, []byte("in"))
				if c == "uname -m" && (err != nil || string(out) != "x86_64\n") {
					t.Fatalf("%q = %q, %v", c, out, err)
				}
				if c != "uname -m" && !errors.Is(err, ErrUnexpected) {
					t.Fatalf("%q = %v, want ErrUnexpected", c, err)
				}
			}
			rt.finish()
			got := strings.Join(rt.errs, "\n")
			if tc.wantErr == "" && got != "" || tc.wantErr != "" && !strings.Contains(got, tc.wantErr) {
				t.Fatalf("failures %q, want %q", got, tc.wantErr)
			}
			if len(m.Calls()) != len(tc.run) || (len(tc.run) > 0 && string(m.Calls()[0].Stdin) != "in") {
				t.Fatalf("calls %+v not recorded", m.Calls())
			}
		})
	}
}
