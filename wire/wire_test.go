package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestHelperCommandRoundTrip(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	for _, verb := range []string{VerbDetect, VerbBegin, VerbConfirm, VerbStatus} {
		cmd := HelperCommand(sha, verb)
		gs, gv, ok := ParseHelperCommand(cmd)
		if !ok || gs != sha || gv != verb {
			t.Errorf("ParseHelperCommand(HelperCommand(%s)) = %q %q %v", verb, gs, gv, ok)
		}
	}
	for _, bad := range []string{
		"",
		"true",
		strings.Replace(HelperCommand(sha, VerbBegin), "exit 97", "exit 0", 1),
		HelperCommand("ABC", VerbBegin),
		HelperCommand(sha, VerbBegin) + "; rm -rf /",
	} {
		if _, _, ok := ParseHelperCommand(bad); ok {
			t.Errorf("ParseHelperCommand(%q) accepted", bad)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Request{Version: ProtocolVersion, Extend: &ExtendArgs{ConfirmTimeout: Duration(90 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"confirm_timeout":"1m30s"`) {
		t.Fatalf("marshal: %s", b)
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil || r.Extend == nil || time.Duration(r.Extend.ConfirmTimeout) != 90*time.Second {
		t.Fatalf("unmarshal: %+v %v", r.Extend, err)
	}
}

func TestCheckRuleset(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		max        int64
		ok         bool
	}{
		{"rules", "table inet f {}\n", 0, true},
		{"empty", "", 0, false},
		{"comments only", "# nothing\n\n   # here\n", 0, false},
		{"too big", "table inet f {}\n", 4, false},
	} {
		err := CheckRuleset(FormatNft, tc.text, tc.max)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Code != CodeInvalidRuleset {
				t.Errorf("%s: want *Error invalid-ruleset, got %#v", tc.name, err)
			}
		}
	}
}

func TestChangeCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Change
		ok   bool
	}{
		{"ruleset", Change{Kind: ChangeRuleset, Ruleset: &RulesetChange{Format: FormatNft, Text: "table inet f {}\n"}}, true},
		{"ruleset without text", Change{Kind: ChangeRuleset}, false},
		{"bad format", Change{Kind: ChangeRuleset, Ruleset: &RulesetChange{Format: "pf", Text: "x\n"}}, false},
		{"guarded", Change{Kind: ChangeGuarded}, true},
		{"guarded with a ruleset", Change{Kind: ChangeGuarded, Ruleset: &RulesetChange{Format: FormatNft, Text: "x\n"}}, false},
		{"unknown kind", Change{Kind: "reboot"}, false},
		{"no kind", Change{}, false},
	} {
		err := tc.c.Check()
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil {
			if e, ok := err.(*Error); !ok || (e.Code != CodeBadRequest && e.Code != CodeInvalidRuleset) {
				t.Errorf("%s: want a bad-request/invalid-ruleset *Error, got %#v", tc.name, err)
			}
		}
	}
}

// TestHelperCommandBuiltinsOnly: up to the exec, the wrapper forks nothing
// (no command substitution, no pipe, no external tool): the hash check is
// the helper's own (issue #12). HelperVerifyCommand keeps sha256sum for
// the failure path.
func TestHelperCommandBuiltinsOnly(t *testing.T) {
	sha := strings.Repeat("0f", 32)
	cmd := HelperCommand(sha, VerbBegin)
	head, _, ok := strings.Cut(cmd, `exec "$f" begin`)
	if !ok {
		t.Fatalf("no exec in %q", cmd)
	}
	for _, bad := range []string{"$(", "`", "|", "sha256sum", "cut "} {
		if strings.Contains(head, bad) {
			t.Errorf("the wrapper runs %q before the exec: %s", bad, head)
		}
	}
	for _, want := range []string{`[ -f "$f" ]`, `[ -x "$f" ]`, `[ ! -L "$f" ]`} {
		if !strings.Contains(head, want) {
			t.Errorf("the wrapper does not check %s before the exec: %s", want, head)
		}
	}
	if v := HelperVerifyCommand(sha); !strings.Contains(v, `sha256sum "$f"`) || !strings.Contains(v, "exit 96") || strings.Contains(v, "exec") {
		t.Errorf("HelperVerifyCommand = %q", v)
	}
	if _, _, ok := ParseHelperCommand(HelperVerifyCommand(sha)); ok {
		t.Errorf("ParseHelperCommand accepted the verify command")
	}
}
