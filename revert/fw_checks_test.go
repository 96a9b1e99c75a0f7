package revert

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// Issue #13: rulesets that must never reach a load, and errors that quote
// input. These run without tools (the fake firewall, pure functions).

func TestCheckRulesetRefusesEmpty(t *testing.T) {
	for _, format := range []Format{FormatNft, FormatIPTables, FormatIP6Tables} {
		for _, text := range []string{"", "\n", "  \n\t\n", "# only a comment\n", "#!/usr/sbin/nft -f\n# flushed below? no\n\n"} {
			err := CheckRuleset(format, text, 0)
			var fe *Error
			if !errors.As(err, &fe) || fe.Code != CodeInvalidRuleset || !strings.Contains(fe.Message, "empty") {
				t.Errorf("%s %q: got %v, want %s saying it is empty", format, text, err, CodeInvalidRuleset)
			}
		}
	}
	for format, text := range map[Format]string{FormatNft: "flush ruleset\n", FormatIPTables: "# c\n*filter\nCOMMIT\n"} {
		if err := CheckRuleset(format, text, 0); err != nil {
			t.Errorf("%s %q: %v, want accepted", format, text, err)
		}
	}
}

func TestCheckRulesetCapsSize(t *testing.T) {
	big := "*filter\n" + strings.Repeat("# padding padding padding\n", (DefaultMaxRulesetSize/26)+1) + "COMMIT\n"
	err := CheckRuleset(FormatIPTables, big, 0)
	var fe *Error
	if !errors.As(err, &fe) || fe.Code != CodeInvalidRuleset || !strings.Contains(fe.Message, "limit") {
		t.Fatalf("%d bytes with the default cap: got %v, want refused", len(big), err)
	}
	if len(fe.Error()) > 400 {
		t.Errorf("error is %d bytes long: %.200s", len(fe.Error()), fe.Error())
	}
	if err := CheckRuleset(FormatIPTables, big, int64(len(big))); err != nil {
		t.Errorf("a cap raised to the size: %v, want accepted", err)
	}
	if err := CheckRuleset(FormatIPTables, "*filter\nCOMMIT\n", 5); err == nil {
		t.Errorf("a cap lowered under the size: accepted, want refused")
	}
}

func TestQuoteSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-A INPUT -j ACCEPT", "-A INPUT -j ACCEPT"},
		{"a\x1b[2Jb\rc\x00\x7f", `a\x1b[2Jb\x0dc\x00\x7f`},
		{"tab\tkept, ünïcode kept", "tab\tkept, ünïcode kept"},
		{"bad \xff utf8", `bad \xff utf8`},
		{"bidi \u202e", `bidi \u202e`},
	} {
		if got := quoteSafe(tc.in, 200); got != tc.want {
			t.Errorf("quoteSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("é", 150) // 300 bytes: the cut falls inside a character
	got := quoteSafe(long, 201)
	if !strings.HasPrefix(got, strings.Repeat("é", 100)+"... (cut, 300 bytes in all)") {
		t.Errorf("cut long line: %q", got)
	}
}

// A kernel-refused or unparsable line of 52 MB used to come back whole in
// the error (and in the tx record and log); now it is cut and escaped.
func TestLoadErrorQuotesAtMost200Bytes(t *testing.T) {
	line := "-A INPUT \x1b[2J" + strings.Repeat("x", 1<<20)
	lf := &loadFile{}
	lf.add("*filter", 1)
	lf.add(line, 2)
	lf.add("COMMIT", 3)
	err := &ToolError{Tool: "iptables-nft-restore", ExitCode: 2, Stderr: "iptables-restore v1.8.9 (nf_tables): unknown option " + line + "\nError occurred at line: 2\n"}
	e := loadError(CodeInvalidRuleset, FormatIPTables, lf, err)
	if e.Line != 2 {
		t.Fatalf("line %d, want 2", e.Line)
	}
	for name, s := range map[string]string{"text": e.Text, "message": e.Message} {
		if len(s) > 4*maxQuoted+60 || strings.ContainsRune(s, 0x1b) || !strings.Contains(s, `\x1b`) {
			t.Errorf("%s is %d bytes, want cut and escaped: %.120q", name, len(s), s)
		}
	}
	if len(e.Text) > maxQuoted+60 || !strings.Contains(e.Text, "bytes in all") {
		t.Errorf("text %d bytes, want about %d with the full length: %.300q", len(e.Text), maxQuoted, e.Text)
	}
}

func TestBeginRefusesEmptyAndHugeBeforeAnythingIsWritten(t *testing.T) {
	for name, text := range map[string]string{"empty": "# nothing here\n\n", "huge": strings.Repeat("# x\n", DefaultMaxRulesetSize/4+1)} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			req := beginReq("t-" + name)
			req.Begin.Change.Ruleset.Text = text
			rep := h.do(VerbBegin, req)
			if code(rep) != CodeInvalidRuleset || rep.State == StateArmed {
				t.Fatalf("begin: %s %v, want %s", rep.State, rep.Error, CodeInvalidRuleset)
			}
			if len(rep.Error.Message) > 400 {
				t.Errorf("message %d bytes", len(rep.Error.Message))
			}
			if _, err := os.Stat(h.dir + "/tx/" + req.TxID); !os.IsNotExist(err) {
				t.Errorf("tx folder of a refused %s ruleset: %v, want none", name, err)
			}
			if h.fw.S.Calls["Validate"] != 0 || h.fw.S.Calls["Apply"] != 0 || h.live() != oldRules {
				t.Errorf("calls %v, live %q: want nothing run", h.fw.S.Calls, h.live())
			}
		})
	}
	h := newHarness(t)
	req := &Request{Version: ProtocolVersion, Diff: &Change{Kind: ChangeRuleset, Ruleset: &RulesetChange{Format: FormatNft, Text: "\n"}}}
	if rep := h.do(VerbDiff, req); code(rep) != CodeInvalidRuleset {
		t.Errorf("diff of an empty ruleset: %v, want %s", rep.Error, CodeInvalidRuleset)
	}
}

func TestBeginRefusesFormatOfAnotherBackend(t *testing.T) {
	const v4 = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
	cases := []struct {
		name     string
		live     map[Format]string
		format   Format
		ruleset  string
		refused  bool
		mentions []string
	}{
		{"iptables onto nft", map[Format]string{FormatNft: oldRules}, FormatIPTables, v4, true, []string{"active firewall is nft", "iptables format", "--format iptables"}},
		{"nft onto iptables", map[Format]string{FormatIPTables: v4}, FormatNft, newRules, true, []string{"iptables-nft", "nft format", "--format nft"}},
		{"nft onto nft", map[Format]string{FormatNft: oldRules}, FormatNft, newRules, false, nil},
		{"iptables onto iptables", map[Format]string{FormatIPTables: v4}, FormatIPTables, v4, false, nil},
		{"ip6tables onto iptables", map[Format]string{FormatIPTables: v4}, FormatIP6Tables, v4, false, nil},
		{"nft onto both", map[Format]string{FormatIPTables: v4, FormatNft: oldRules}, FormatNft, newRules, false, nil},
		{"iptables onto a bare host", nil, FormatIPTables, v4, false, nil},
	}
	for _, tc := range cases {
		for _, explicit := range []bool{false, true} {
			h := newHarness(t)
			h.fw.S.Live = map[Format]string{}
			for k, v := range tc.live {
				h.fw.S.Live[k] = v
			}
			req := beginReq("t1")
			req.Begin.Change.Ruleset.Format, req.Begin.Change.Ruleset.Text, req.Begin.Change.Ruleset.FormatExplicit = tc.format, tc.ruleset, explicit
			rep := h.do(VerbBegin, req)
			if !tc.refused || explicit {
				if rep.Error != nil || rep.State != StateArmed {
					t.Errorf("%s (explicit %v): %s %v, want armed", tc.name, explicit, rep.State, rep.Error)
				}
				continue
			}
			if code(rep) != CodeBackend || rep.State != StateRefused {
				t.Errorf("%s: %s %v, want refused %s", tc.name, rep.State, rep.Error, CodeBackend)
				continue
			}
			for _, m := range tc.mentions {
				if !strings.Contains(rep.Error.Message, m) {
					t.Errorf("%s: message %q does not say %q", tc.name, rep.Error.Message, m)
				}
			}
			if h.fw.S.Calls["Apply"] != 0 {
				t.Errorf("%s: applied", tc.name)
			}
		}
	}
}
