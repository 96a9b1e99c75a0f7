package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// escapeTo returns a host name that, joined under lifeline's run folder
// (XDG_STATE_HOME/lifeline/runs/ID/hosts), points at dir/x: enough ".."
// to reach / from any depth, then dir.
func escapeTo(dir string) string {
	return strings.Repeat("../", 40) + strings.TrimPrefix(dir, "/") + "/x"
}

// runFolders lists the run folders in lifeline's state (the tests share it).
func runFolders(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(stateDir(t), "lifeline", "runs"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		out[e.Name()] = true
	}
	return out
}

// TestHostileHostNames: an inventory (lifeline YAML or Ansible INI) or an
// ad-hoc target naming a host with a path in it is refused with the file
// and line, before any host is touched, and nothing is written where the
// name points. The hosts' settings are real, so that without the check the
// apply would reach the lab host and store its result through the name.
func TestHostileHostNames(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, InitExe: lifelineBin})
	h := l.Hosts[0]
	rules := filepath.Join(repoRoot, "testdata", "rulesets", rulesetFor(h, "good", false))
	before := liveRuleset(t, l, h.Name)

	lifelineYAML := func(name string) string {
		return fmt.Sprintf("known_hosts: %s\nhosts:\n  h01ok: {address: %s}\n  %q:\n    address: %s\n    user: %s\n    port: %d\n    identity_file: %s\n",
			l.KnownHosts, h.Address, name, h.Address, h.User, h.Port, l.Key)
	}
	ansibleINI := func(name string) string {
		return fmt.Sprintf("[lab]\nh01ok ansible_host=%s\n%s ansible_host=%s ansible_user=%s ansible_port=%d ansible_ssh_private_key_file=%s\n",
			h.Address, name, h.Address, h.User, h.Port, l.Key)
	}
	// The literal name of issue #13 lands on /tmp/x from the usual depths.
	literal := "../../../../../../../tmp/x"
	_, errLiteral := os.Lstat("/tmp/x.json")

	tests := []struct {
		name   string
		file   string // inventory file name; "" = an ad-hoc target, no inventory
		inv    func(string) string
		target func(dir string) string
		line   int
	}{
		{"lifeline yaml", "inventory.yaml", lifelineYAML, escapeTo, 4},
		{"lifeline yaml, the issue's name", "inventory.yaml", lifelineYAML, func(string) string { return literal }, 4},
		{"ansible ini", "hosts.ini", ansibleINI, escapeTo, 3},
		{"ad-hoc target", "", nil, escapeTo, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := tc.target(dir)
			runsBefore := runFolders(t)
			args := []string{"-F", l.SSHConfig, "apply", "--confirm-timeout", "20s"}
			var where string
			if tc.file != "" {
				inv := filepath.Join(t.TempDir(), tc.file)
				if err := os.WriteFile(inv, []byte(tc.inv(name)), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"-i", inv}, args...)
				args = append(args, "all", rules)
				where = fmt.Sprintf("%s:%d: ", inv, tc.line)
			} else {
				args = append(args, h.User+"@"+name, rules)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stdout, stderr, code := cli(t, ctx, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2 (usage)\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			want := regexp.QuoteMeta(where+`host name "`) + `.*` + regexp.QuoteMeta(`x" cannot be targeted: use letters, digits, '.', '-' and '_'`)
			if !regexp.MustCompile(want).MatchString(stderr) {
				t.Errorf("stderr = %q\nwant it to match %q", stderr, want)
			}
			for _, f := range []string{"x.json", "x.snapshot.json"} {
				if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
					t.Errorf("%s was written outside the run folder", filepath.Join(dir, f))
				}
			}
			if name == literal && os.IsNotExist(errLiteral) {
				if _, err := os.Lstat("/tmp/x.json"); err == nil {
					_ = os.Remove("/tmp/x.json")
					_ = os.Remove("/tmp/x.snapshot.json")
					t.Errorf("/tmp/x.json was written outside the run folder")
				}
			}
			for id := range runFolders(t) {
				if !runsBefore[id] {
					t.Errorf("run folder %s was created for a refused inventory", id)
				}
			}
		})
	}
	if after := liveRuleset(t, l, h.Name); after != before {
		t.Errorf("the host's ruleset changed:\n%s", after)
	}
	if a := armed(t, l, h.Name); a != "" {
		t.Errorf("something is armed on %s: %s", h.Name, a)
	}
}

// TestHostileRulesetOutputEscaped: a ruleset holding terminal escapes is
// refused by the host, whose error quotes the bad line; lifeline prints
// that error escaped, on stdout and stderr, so the terminal never obeys it.
func TestHostileRulesetOutputEscaped(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, InitExe: lifelineBin})
	h := l.Hosts[0]
	text := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j \x1b[2J\x1b]0;owned\x07\xff\n\x1b[31mCOMMIT\n"
	if h.Backend == "nft" {
		text = "table inet t {\n  chain c { \x1b[2J\x1b]0;owned\x07\xff }\n}\n\x1b[31m\n"
	}
	rules := filepath.Join(t.TempDir(), "hostile.rules")
	if err := os.WriteFile(rules, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	format := "nft"
	if h.Backend != "nft" {
		format = "iptables"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, "-F", l.SSHConfig, "apply", h.Name, rules, "--format", format, "--confirm-timeout", "20s")
	if code != 1 || !strings.Contains(stdout, "refused") {
		t.Fatalf("exit %d, want 1 with %s refused\nstdout: %q\nstderr: %q", code, h.Name, stdout, stderr)
	}
	for what, s := range map[string]string{"stdout": stdout, "stderr": stderr} {
		if strings.ContainsAny(s, "\x1b\x07") || strings.Contains(s, "\xff") {
			t.Errorf("%s holds raw control bytes: %q", what, s)
		}
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if !strings.Contains(stdout+stderr, `\x1b`) {
		t.Errorf("the host's error does not show the escaped bytes\nstdout: %q\nstderr: %q", stdout, stderr)
	}
}

// TestTamperedHelper: one byte appended to the helper on the host. The
// wrapper's hash check catches it before exec, keeps the file aside for
// inspection, and lifeline uploads a fresh one and warns loudly.
func TestTamperedHelper(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	if r, _, _ := apply(t, l, l.SSHConfig, h.Name, "good.nft"); r.Outcome != "confirmed" {
		t.Fatalf("first apply: %s: %s", r.Outcome, r.Error)
	}
	execOn(t, l, h.Name, "sh", "-c", "for f in /var/lib/lifeline/bin/*; do printf x >> $f; done")
	r, _, code := apply(t, l, l.SSHConfig, h.Name, "good.nft")
	if r.Outcome != "confirmed" || code != 0 {
		t.Fatalf("apply over a tampered helper: %s: %s", r.Outcome, r.Error)
	}
	if len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "tampered") {
		t.Fatalf("no warning about the tampered helper: %q", r.Warnings)
	}
	kept := execOn(t, l, h.Name, "sh", "-c", "ls /var/lib/lifeline/bin/ | grep -c tampered")
	if strings.TrimSpace(kept) != "1" {
		t.Fatalf("the tampered helper was not kept aside: %q", kept)
	}
}
