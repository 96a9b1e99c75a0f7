package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/session"
)

// runInProcess runs lifeline in-process with args and returns stdout, stderr and
// the exit code.
func runInProcess(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("LIFELINE_INVENTORY", "")
	t.Setenv("XDG_STATE_HOME", t.TempDir()) // run folders
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
	root := newRootCmd(g)
	root.SetArgs(args)
	code := exitCode(g, root.Execute())
	return out.String(), errb.String(), code
}

// TestConfirmTimeoutBounds: --confirm-timeout is refused outside 5s..24h,
// naming the limit, before anything is read or dialed.
func TestConfirmTimeoutBounds(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.nft")
	tests := []struct {
		timeout string
		want    string // in stderr
	}{
		{"1000000h", "--confirm-timeout 1000000h0m0s is too long: at most 24h"},
		{"24h1s", "--confirm-timeout 24h0m1s is too long: at most 24h"},
		{"4s", "--confirm-timeout 4s is too short: at least 5s"},
		{"24h", "read ruleset"}, // accepted: fails later, on the missing file
		{"5s", "read ruleset"},
	}
	for _, tc := range tests {
		t.Run(tc.timeout, func(t *testing.T) {
			_, stderr, code := runInProcess(t, "apply", "h1", missing, "--confirm-timeout", tc.timeout)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

const hostile = "nft: stdin:1:1: \x1b[2J\x1b]0;owned\a\r\xff"

// TestPrintersEscape: what a host or an input said reaches the terminal
// escaped, in the final table, the progress lines and the last error line;
// the JSON document stays valid JSON, with long lines cut.
func TestPrintersEscape(t *testing.T) {
	long := strings.Repeat("A", 5000)
	results := []*session.Result{{
		Host: "h01", Outcome: session.Refused, Phase: session.PhaseBegin,
		Error: hostile + long, Hint: "fix the ruleset\x1b[31m", Diff: "+ table x\x1b[2J\n", Timings: []session.Timing{},
	}}
	raw := func(s string) bool { return strings.ContainsAny(s, "\x1b\a\r") || strings.Contains(s, "\xff") }

	t.Run("text", func(t *testing.T) {
		var out, errb bytes.Buffer
		g := &globals{stdout: &out, stderr: &errb}
		p := newProgress(g, false, 1)
		p.event(session.Event{Host: "h01", Phase: session.PhaseBegin, Status: "fail", Msg: hostile, At: time.Now()})
		p.done("run1", "", results)
		if raw(out.String()) || raw(errb.String()) {
			t.Fatalf("raw control bytes printed:\nstdout %q\nstderr %q", out.String(), errb.String())
		}
		for _, want := range []string{`\x1b[2J\x1b]0;owned\x07\x0d\xff`, "… (5032 bytes) (hint: fix the ruleset\\x1b[31m)", `+ table x\x1b[2J`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("stdout lacks %q:\n%s", want, out.String())
			}
		}
		if !strings.Contains(errb.String(), `fail: nft: stdin:1:1: \x1b[2J`) {
			t.Errorf("progress line not escaped: %q", errb.String())
		}
	})

	t.Run("json", func(t *testing.T) {
		var out bytes.Buffer
		g := &globals{stdout: &out, stderr: &bytes.Buffer{}, jsonOut: true}
		newProgress(g, false, 1).done("run1", "", results)
		var doc struct {
			Results []struct{ Error, Hint string }
		}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out.String())
		}
		if raw(out.String()) {
			t.Errorf("raw control bytes in the JSON text: %q", out.String())
		}
		e := doc.Results[0].Error
		if !strings.HasPrefix(e, "nft: stdin:1:1: \x1b[2J") || !strings.HasSuffix(e, "… (5032 bytes)") || len(e) > 1100 {
			t.Errorf("error in JSON = %.60q… (%d bytes), want the original text cut after 1000 bytes", e, len(e))
		}
		if results[0].Error != hostile+long {
			t.Errorf("printing changed the result itself")
		}
	})

	t.Run("stream", func(t *testing.T) {
		var out bytes.Buffer
		g := &globals{stdout: &out, stderr: &bytes.Buffer{}}
		newProgress(g, true, 1).event(session.Event{Host: "h01", Phase: "begin", Status: "fail", Msg: hostile + long})
		var ev struct{ Msg string }
		if err := json.Unmarshal(out.Bytes(), &ev); err != nil || !strings.HasSuffix(ev.Msg, "… (5032 bytes)") {
			t.Errorf("stream event %q: %v, want JSON with the message cut", out.String(), err)
		}
	})

	t.Run("last error line", func(t *testing.T) {
		var errb bytes.Buffer
		g := &globals{stderr: &errb}
		exitCode(g, errors.New(hostile))
		exitCode(g, usagef("read ruleset: %s", hostile))
		if raw(errb.String()) || strings.Count(errb.String(), `lifeline: nft: stdin:1:1: \x1b[2J`) != 1 {
			t.Errorf("stderr = %q", errb.String())
		}
	})
}

// TestHostileTargetsRefused: ad-hoc targets on the command line follow the
// inventory's rules for host names and users.
func TestHostileTargetsRefused(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "r.nft")
	if err := os.WriteFile(rules, []byte("flush ruleset\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"../../../../tmp/x", ".ssh", "h1,..", "-oProxyCommand=sh", "h\x1bc", "a\nb@h1"} {
		t.Run(target, func(t *testing.T) {
			_, stderr, code := runInProcess(t, "apply", "--", target, rules)
			if code != exitUsage || !strings.Contains(stderr, "cannot be targeted") && !strings.Contains(stderr, "control character") {
				t.Errorf("exit %d, stderr %q; want a usage error refusing the target", code, stderr)
			}
			if strings.ContainsAny(stderr, "\x1b") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q: want one escaped line", stderr)
			}
		})
	}
}
