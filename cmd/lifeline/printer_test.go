package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsageExitCodes: every way of calling lifeline wrongly exits 2, with
// one error line on stderr.
func TestUsageExitCodes(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "missing.nft")
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"apply", "h1", rules, "--bogus"}, "unknown flag: --bogus"},
		{"unknown shorthand flag", []string{"status", "-Z", "h1"}, "unknown shorthand flag: 'Z'"},
		{"unknown global flag", []string{"--nope", "inventory", "list"}, "unknown flag: --nope"},
		{"bad duration", []string{"apply", "h1", rules, "--confirm-timeout", "soon"}, `invalid argument "soon" for "--confirm-timeout"`},
		{"bad int", []string{"run", "--forks", "many", "h1", "--", "true"}, `invalid argument "many" for "--forks"`},
		{"missing argument", []string{"apply"}, "apply: accepts between 1 and 2 arg(s), received 0"},
		{"too many arguments", []string{"status", "a", "b"}, "status: accepts 1 arg(s), received 2"},
		{"missing command", []string{"run", "h1"}, "usage: lifeline run TARGET -- COMMAND..."},
		{"unknown command", []string{"aply"}, `unknown command "aply" (hint: did you mean apply?)`},
		{"exec without --", []string{"exec", "h1", "true"}, "want TARGET -- COMMAND..."},
		{"exec window too short", []string{"exec", "h1", "--window", "1s", "--", "true"}, "--window 1s is too short"},
		{"extend without --by", []string{"extend", "h1"}, "extend needs --by"},
		{"extend --by too long", []string{"extend", "h1", "--by", "48h"}, "--by 48h0m0s is too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runInProcess(t, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, exitUsage, tc.want)
			}
			if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "lifeline: ") {
				t.Errorf("stdout %q, stderr %q: want nothing on stdout and one lifeline: line on stderr", stdout, stderr)
			}
		})
	}
}

// TestJSONErrorObject: under --json a failing command prints exactly one
// JSON document, the error object, and nothing on stderr.
func TestJSONErrorObject(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "missing.nft")
	tests := []struct {
		name    string
		args    []string
		code    int
		kind    string
		message string // in message
		hint    string // in hint
	}{
		{"unreadable ruleset", []string{"--json", "apply", "h1", rules}, exitUsage, "usage", "read ruleset", ""},
		{"bad flag value", []string{"--json", "apply", "h1", rules, "--confirm-timeout", "soon"}, exitUsage, "usage", `invalid argument "soon"`, "lifeline apply --help"},
		{"bad flag before --json", []string{"apply", "--bogus", "--json", "h1"}, exitUsage, "usage", "unknown flag: --bogus", "lifeline apply --help"},
		{"missing argument", []string{"--json", "status"}, exitUsage, "usage", "status: accepts 1 arg(s), received 0", "lifeline status --help"},
		{"no inventory", []string{"--json", "inventory", "list"}, exitUsage, "usage", "no inventory: give -i FILE", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			t.Setenv("LIFELINE_INVENTORY", "")
			g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), args: tc.args}
			root := newRootCmd(g)
			root.SetArgs(tc.args)
			code := exitCode(g, root.Execute())
			var doc errorObject
			dec := json.NewDecoder(&out)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("stdout is not the error object: %v\n%s", err, out.String())
			}
			if dec.More() {
				t.Errorf("more than one JSON document on stdout")
			}
			e := doc.Error
			if code != tc.code || e.Exit != code || e.Code != tc.kind || !strings.Contains(e.Message, tc.message) || !strings.Contains(e.Hint, tc.hint) {
				t.Errorf("exit %d, error %+v; want exit %d, code %q, message with %q, hint with %q", code, e, tc.code, tc.kind, tc.message, tc.hint)
			}
			if strings.Contains(e.Message, "(hint:") || strings.HasPrefix(e.Message, "lifeline:") {
				t.Errorf("message %q carries its hint or prefix", e.Message)
			}
			if errb.Len() != 0 {
				t.Errorf("stderr %q, want nothing", errb.String())
			}
		})
	}
}

// TestPrinterErrors: what each printer does with an error, before and
// after a result was printed.
func TestPrinterErrors(t *testing.T) {
	hinted := errors.New("h1: authenticate to 192.0.2.1:22: authentication failed (hint: check the key)")
	for _, tc := range []struct {
		name           string
		jsonOut        bool
		stream         bool
		result         bool
		err            error
		code           int
		stdout, stderr string
	}{
		{name: "text", err: hinted, code: 1, stderr: "lifeline: " + hinted.Error() + "\n"},
		{name: "text failed", err: failedError{"2 of 3 hosts failed"}, code: 1, result: true, stdout: "table\n"},
		{name: "json", jsonOut: true, err: hinted, code: 1,
			stdout: `{"error":{"message":"h1: authenticate to 192.0.2.1:22: authentication failed","hint":"check the key","code":"error","exit":1}}`},
		{name: "json failed before a result", jsonOut: true, err: failedError{"lab hosts down"}, code: 1,
			stdout: `{"error":{"message":"lab hosts down","code":"failed","exit":1}}`},
		{name: "json failed after the result", jsonOut: true, result: true, err: failedError{"1 hosts did not end as asked"}, code: 1, stdout: `{"ok":false}`},
		{name: "json interrupted after the result", jsonOut: true, result: true, err: errors.New("context canceled"), code: 130,
			stdout: `{"ok":false}`, stderr: "lifeline: context canceled\n"},
		{name: "stream", stream: true, result: true, err: usagef("--serial %q: bad", "x"), code: 2,
			stdout: `{"type":"result","ok":false}` + "\n" + `{"type":"error","error":{"message":"--serial \"x\": bad","code":"usage","exit":2}}` + "\n"},
		{name: "stream failed", stream: true, result: true, err: failedError{"x"}, code: 1, stdout: `{"type":"result","ok":false}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			g := &globals{stdout: &out, stderr: &errb, jsonOut: tc.jsonOut, jsonStream: tc.stream}
			p := g.printer()
			if tc.result {
				if err := p.Result(map[string]bool{"ok": false}, func(w io.Writer) error { _, err := w.Write([]byte("table\n")); return err }); err != nil {
					t.Fatal(err)
				}
			}
			p.Error(tc.err, tc.code)
			got := out.String()
			if tc.jsonOut && !tc.stream {
				got = compactJSON(t, got)
			}
			if got != tc.stdout || errb.String() != tc.stderr {
				t.Errorf("stdout %q, stderr %q; want %q, %q", got, errb.String(), tc.stdout, tc.stderr)
			}
		})
	}
}

// compactJSON returns the JSON documents in s, each compacted, joined.
func compactJSON(t *testing.T, s string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var b strings.Builder
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, s)
		}
		var c bytes.Buffer
		_ = json.Compact(&c, raw)
		b.Write(c.Bytes())
	}
	return b.String()
}

func TestWithHint(t *testing.T) {
	for _, tc := range []struct{ err, hint, want string }{
		{"e", "", "e"},
		{"", "h", "h"},
		{"e", "h", "e (hint: h)"},
		{"e (hint: own)", "h", "e (hint: own)"},
	} {
		if got := withHint(tc.err, tc.hint); got != tc.want {
			t.Errorf("withHint(%q, %q) = %q, want %q", tc.err, tc.hint, got, tc.want)
		}
	}
}
