//go:build linux

package session

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/revert"
	"github.com/lifeline-dev/lifeline/wire"
)

func TestParseUse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"80%", 0.8, true},
		{"0.8", 0.8, true},
		{" 92.5% ", 0.925, true},
		{"100%", 1, true},
		{"1", 1, true},
		{"0.05", 0.05, true},
		{"80", 0, false}, // a fraction above 1: the % was forgotten
		{"0", 0, false},
		{"0%", 0, false},
		{"-10%", 0, false},
		{"101%", 0, false},
		{"NaN", 0, false},
		{"eighty", 0, false},
		{"%", 0, false},
		{"", 0, false},
	} {
		got, err := ParseUse(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (got-tc.want > 1e-9 || tc.want-got > 1e-9)) {
			t.Errorf("ParseUse(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// conntrackHost is a fake host whose table holds count of max entries:
// the captured listing of 21 entries, with the sysctls the test chooses.
func conntrackHost(t *testing.T, count, max string) *fakeHost {
	h := newFakeHost(t)
	proc := t.TempDir()
	files := map[string]string{
		"sys/net/netfilter/nf_conntrack_count": count,
		"sys/net/netfilter/nf_conntrack_max":   max,
	}
	b, err := os.ReadFile(filepath.Join("..", "revert", "testdata", "conntrack", "proc-nf_conntrack"))
	if err != nil {
		t.Fatal(err)
	}
	files["net/nf_conntrack"] = string(b)
	for name, body := range files {
		p := filepath.Join(proc, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.env.Clock = kmsgClock{}
	h.env.Conntrack = revert.ConntrackProbe{Proc: proc, Tool: "-", Kmsg: filepath.Join("..", "revert", "testdata", "conntrack", "kmsg")}
	return h
}

func TestConntrackJudged(t *testing.T) {
	for _, tc := range []struct {
		name        string
		count, max  string
		warn        float64
		since       time.Duration
		near, alarm bool
		dropping    bool
		wantUse     float64
	}{
		{name: "below", count: "21", max: "100", warn: 0.8, since: time.Second, wantUse: 0.21},
		{name: "at the threshold", count: "80", max: "100", warn: 0.8, since: time.Second, near: true, alarm: true, wantUse: 0.8},
		{name: "above", count: "99", max: "100", warn: 0.8, since: time.Second, near: true, alarm: true, wantUse: 0.99},
		// the sample's kernel log holds table-full messages: the whole log counts them
		{name: "table full messages", count: "21", max: "100", warn: 0.8, since: 0, dropping: true, alarm: true, wantUse: 0.21},
		{name: "no limit", count: "21", max: "0", warn: 0.8, since: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := conntrackHost(t, tc.count, tc.max)
			s := newTestSession(h, time.Minute)
			r := s.Conntrack(context.Background(), Target{Name: "fake"}, ConntrackOptions{Warn: tc.warn, Top: 2, Since: tc.since})
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if r.NearFull != tc.near || r.Dropping != tc.dropping || r.Alarm() != tc.alarm || r.Use != tc.wantUse {
				t.Errorf("near %v dropping %v alarm %v use %v; want %v %v %v %v", r.NearFull, r.Dropping, r.Alarm(), r.Use, tc.near, tc.dropping, tc.alarm, tc.wantUse)
			}
			if e := r.Conntrack.Entries; e == nil || len(e.TopSources) != 2 || e.TopSources[0].Addr != "10.254.77.1" {
				t.Errorf("entries %+v", e)
			}
			for _, c := range h.cmds {
				if c != probeCmd && !isConntrackCall(c) {
					t.Errorf("conntrack sent %q: it must only probe and ask the helper", c)
				}
			}
		})
	}
}

func isConntrackCall(c string) bool {
	_, verb, ok := wire.ParseHelperCommand(c)
	return ok && verb == "conntrack"
}

func TestConntrackUnreachable(t *testing.T) {
	h := conntrackHost(t, "1", "100")
	h.refuse = func(int) error { return remote.ErrAuth }
	r := newTestSession(h, time.Minute).Conntrack(context.Background(), Target{Name: "fake"}, ConntrackOptions{Warn: 0.8})
	if r.Err == nil || !errors.Is(r.Err, remote.ErrAuth) || r.Alarm() || r.Error == "" {
		t.Errorf("%+v", r)
	}
}

// kmsgClock stands 10s after the newest table-full message of the sample
// kernel log (kernel stamp 83873.792826s).
type kmsgClock struct{}

func (kmsgClock) Now() time.Time { return time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC) }
func (kmsgClock) Monotonic() time.Duration {
	return 83873792826*time.Microsecond + 10*time.Second
}
func (kmsgClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
