package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
	"github.com/lifeline-dev/lifeline/wire"
)

type preflightDoc struct {
	Host    string                `json:"host"`
	Verdict string                `json:"verdict"`
	Report  *wire.PreflightReport `json:"report"`
	Error   string                `json:"error"`
}

// preflight runs `lifeline preflight --json FILE --for alias` (FILE: a
// path, or a name under testdata/rulesets).
func preflight(t *testing.T, cfg, alias, file string, extra ...string) (preflightDoc, string, int) {
	t.Helper()
	if !filepath.IsAbs(file) {
		file = filepath.Join(repoRoot, "testdata", "rulesets", file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, append([]string{"-F", cfg, "--json", "preflight", file, "--for", alias}, extra...)...)
	var docs []preflightDoc
	if err := json.Unmarshal([]byte(stdout), &docs); err != nil || len(docs) != 1 {
		t.Fatalf("preflight %s %s: exit %d, unreadable JSON (%v)\nstdout: %s\nstderr: %s", alias, file, code, err, stdout, stderr)
	}
	return docs[0], stderr, code
}

// flowCheck is what one flow's verdict must be: the verdict, and for a
// lockout a substring of what decided it (table/chain/rule or policy).
type flowCheck struct {
	verdict string
	decider string // substring of PathVerdict.Decider() ("" : any)
	line    bool   // the operator's line must be known
}

type preflightCase struct {
	name     string
	file     string // under testdata/rulesets, or written from text
	text     string
	est, new flowCheck
}

func checkPreflight(t *testing.T, l *lab.Lab, h *lab.Host, cfg, alias string, tc preflightCase) {
	t.Helper()
	file := tc.file
	if tc.text != "" {
		ext := ".nft"
		if strings.HasPrefix(strings.TrimSpace(tc.text), "*") {
			ext = ".v4"
			if strings.Contains(tc.text, "ip6") || strings.Contains(tc.name, "v6") {
				ext = ".v6"
			}
		}
		file = filepath.Join(t.TempDir(), strings.ReplaceAll(tc.name, " ", "_")+ext)
		if err := os.WriteFile(file, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := liveRuleset(t, l, h.Name)
	doc, stderr, code := preflight(t, cfg, alias, file)
	if after := liveRuleset(t, l, h.Name); after != before {
		t.Fatalf("%s %s: preflight changed the live ruleset:\nbefore:\n%s\nafter:\n%s", alias, tc.name, before, after)
	}
	if doc.Error != "" || doc.Report == nil {
		t.Fatalf("%s %s: preflight failed (exit %d): %s\n%s", alias, tc.name, code, doc.Error, stderr)
	}
	wantCode := map[string]int{wire.PreflightPass: 0, wire.PreflightLockout: 1, wire.PreflightUndecided: 3}[wire.Worst(tc.est.verdict, tc.new.verdict)]
	if code != wantCode || doc.Verdict != wire.Worst(tc.est.verdict, tc.new.verdict) {
		t.Errorf("%s %s: verdict %s exit %d, want %s exit %d\n%s", alias, tc.name, doc.Verdict, code, wire.Worst(tc.est.verdict, tc.new.verdict), wantCode, stderr)
	}
	if len(doc.Report.Paths) != 2 {
		t.Fatalf("%s %s: want two flows, got %+v", alias, tc.name, doc.Report.Paths)
	}
	for i, want := range []flowCheck{tc.est, tc.new} {
		v := doc.Report.Paths[i]
		t.Logf("%s %s: %s", alias, tc.name, v)
		if v.Verdict != want.verdict {
			t.Errorf("%s %s: %s flow %s, want %s: %s", alias, tc.name, v.Flow, v.Verdict, want.verdict, v)
			continue
		}
		if want.verdict == wire.PreflightLockout {
			if v.Method != wire.PreflightKernel || !strings.Contains(v.Decider(), want.decider) || v.Decider() == "" {
				t.Errorf("%s %s: %s flow decided by %q [%s], want %q [kernel]", alias, tc.name, v.Flow, v.Decider(), v.Method, want.decider)
			}
			if want.line && v.Line == 0 {
				t.Errorf("%s %s: %s flow: the operator's line of the deciding rule is unknown: %s", alias, tc.name, v.Flow, v)
			}
		}
	}
	if h.Jump != "" && !strings.HasPrefix(doc.Report.Paths[0].Path.Name, "via jump "+h.Jump) {
		t.Errorf("%s: path %q, want via jump %s", alias, doc.Report.Paths[0].Path.Name, h.Jump)
	}
}

var (
	pass         = flowCheck{verdict: wire.PreflightPass}
	policyDrop   = flowCheck{verdict: wire.PreflightLockout, decider: "input policy", line: true}
	policyDropIP = flowCheck{verdict: wire.PreflightLockout, decider: "INPUT policy", line: true}
)

// preflightCases are the acceptance cases of a host in its backend's
// syntax (v6: over its IPv6 path).
func preflightCases(l *lab.Lab, h *lab.Host, v6 bool) []preflightCase {
	port := h.Port
	if h.Backend == "nft" {
		cs := []preflightCase{
			{name: "good", file: "good.nft", est: pass, new: pass},
			{name: "dropall", file: "dropall.nft", est: policyDrop, new: policyDrop},
			{name: "dropnew keeps the session, blocks new ones", file: "dropnew.nft", est: pass, new: policyDrop},
			{name: "drop NEW on sshd's port", est: pass, new: flowCheck{verdict: wire.PreflightLockout, decider: "inet filter chain input rule", line: true},
				text: fmt.Sprintf("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state new tcp dport %d drop\n\t}\n}\n", port)},
			{name: "policy drop, ssh only from another address", est: policyDrop, new: policyDrop,
				text: fmt.Sprintf("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\tip saddr 203.0.113.7 tcp dport %d accept\n\t\tip6 saddr 2001:db8::7 tcp dport %d accept\n\t}\n}\n", port, port)},
			{name: "accept in one table, another table drops", est: flowCheck{verdict: wire.PreflightLockout, decider: "table inet b chain input rule", line: true}, new: flowCheck{verdict: wire.PreflightLockout, decider: "table inet b chain input rule", line: true},
				text: fmt.Sprintf("table inet a {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport %d accept\n\t}\n}\ntable inet b {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport %d drop\n\t}\n}\n", port, port)},
		}
		if v6 {
			cs = append(cs, preflightCase{name: "ipv6 path through a v4-only drop", est: pass, new: pass,
				text: "table ip v4only {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n"})
		}
		if h.Jump != "" {
			jump := l.Host(h.Jump)
			cs = append(cs, preflightCase{name: "the jump host's address dropped", est: flowCheck{verdict: wire.PreflightLockout, decider: "rule", line: true}, new: flowCheck{verdict: wire.PreflightLockout, decider: "rule", line: true},
				text: fmt.Sprintf("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr %s tcp dport %d drop\n\t}\n}\n", jump.BackAddress, port)})
		}
		return cs
	}
	ext, star := ".v4", ""
	if v6 {
		ext = ".v6"
	}
	_ = star
	return []preflightCase{
		{name: "good", file: "good" + ext, est: pass, new: pass},
		{name: "dropall", file: "dropall" + ext, est: policyDropIP, new: policyDropIP},
		{name: "dropnew keeps the session, blocks new ones", file: "dropnew" + ext, est: pass, new: policyDropIP},
		{name: "drop NEW on sshd's port " + ext, est: pass, new: flowCheck{verdict: wire.PreflightLockout, decider: "filter chain INPUT rule", line: true},
			text: fmt.Sprintf("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m conntrack --ctstate NEW -m tcp --dport %d -j DROP\nCOMMIT\n", port)},
		{name: "policy drop, ssh only from another address " + ext, est: policyDropIP, new: policyDropIP,
			text: fmt.Sprintf("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s %s -p tcp --dport %d -j ACCEPT\nCOMMIT\n", map[bool]string{false: "203.0.113.7/32", true: "2001:db8::7/128"}[v6], port)},
	}
}

// TestPreflight: lifeline preflight flags every lockout ruleset of the
// apply tests and the acceptance cases as would-lock-you-out with the
// deciding rule, passes the good ones, on nft, iptables-nft and
// iptables-legacy hosts, over IPv4 and IPv6, and on a host reached only
// through a jump host; and changes nothing.
func TestPreflight(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 4, InitExe: lifelineBin})
	cfg6 := v6Config(t, l)
	for _, h := range l.Hosts {
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			t.Parallel()
			families := []bool{false}
			if h.Address6 != "" && h.Jump == "" {
				families = append(families, true)
			}
			for _, v6 := range families {
				cfg, alias := l.SSHConfig, h.Name
				if v6 {
					cfg, alias = cfg6, h.Name+"-v6"
				}
				for _, tc := range preflightCases(l, h, v6) {
					checkPreflight(t, l, h, cfg, alias, tc)
				}
			}
		})
	}
}

// TestPreflightRefusesApply: apply of a certain lockout without --force is
// refused before the live ruleset changes, naming the rule; with --force
// it is applied and reverted by the host.
func TestPreflightRefusesApply(t *testing.T) {
	t.Parallel()
	// h01 nft, h02 iptables-nft, h03 iptables-legacy (h04, behind h01,
	// is left out: h01's forced lockout would cut its path)
	l := labtest.Start(t, labtest.Options{Hosts: 4, InitExe: lifelineBin})
	for _, h := range l.Hosts {
		if h.Jump != "" {
			continue
		}
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			t.Parallel()
			before := liveRuleset(t, l, h.Name)
			r, stderr, code := apply(t, l, l.SSHConfig, h.Name, rulesetFor(h, "dropnew", false), "--confirm-timeout=8s")
			if r.Outcome != "refused" || code != 1 {
				t.Fatalf("apply dropnew: outcome %s exit %d, want refused/1: %s\n%s", r.Outcome, code, r.Error, stderr)
			}
			for _, want := range []string{wire.CodePreflightLockout, "new connection: lockout", "policy", "nothing was changed"} {
				if !strings.Contains(r.Error, want) {
					t.Errorf("refusal does not say %q: %s", want, r.Error)
				}
			}
			if after := liveRuleset(t, l, h.Name); after != before {
				t.Fatalf("a refused apply changed the live ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if a := armed(t, l, h.Name); a != "" {
				t.Fatalf("left armed after the refusal: %s", a)
			}
			if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
				t.Fatal(err)
			}
			r, stderr, code = apply(t, l, l.SSHConfig, h.Name, rulesetFor(h, "dropnew", false), "--confirm-timeout=8s", "--force")
			if r.Outcome != "reverted" || code != 1 {
				t.Fatalf("apply --force dropnew: outcome %s exit %d, want reverted/1: %s\n%s", r.Outcome, code, r.Error, stderr)
			}
			if after := liveRuleset(t, l, h.Name); after != before {
				t.Fatalf("not reverted:\n%s", after)
			}
		})
	}
}
