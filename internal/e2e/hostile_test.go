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

// TestHelperIntegrity: the helper and its folders on the host, damaged in
// each way issue #14 lists. A helper file that is not the one its name
// promises (a byte changed, a symlink, not executable, too open, another
// owner) is moved aside before it runs a verb, and lifeline uploads a
// fresh one and warns; a state or helper folder of root's that is only too
// open is tightened, with a warning; a folder of another owner, or a tx
// folder others could write, is refused before any privileged step, with
// the host and the path named, and the live ruleset stays as it was.
func TestHelperIntegrity(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	sh := func(script string) string { return execOn(t, l, h.Name, "sh", "-c", script) }
	if r, _, _ := apply(t, l, l.SSHConfig, h.Name, "good.nft"); r.Outcome != "confirmed" {
		t.Fatalf("first apply: %s: %s", r.Outcome, r.Error)
	}
	// each helper file named by its hash, for the damage scripts
	const helpers = `for f in /var/lib/lifeline/bin/*; do case ${f##*/} in *.*) continue;; esac; `
	tests := []struct {
		name   string
		damage string // sh script on the host
		warn   string // repaired: the warning; "" = refused
		refuse string // refused: the path the error names
		undo   string // after a refusal
		check  string // sh script whose output must be "ok" afterwards
	}{
		{name: "one byte changed",
			damage: helpers + `printf X | dd of=$f bs=1 seek=100000 conv=notrunc 2>/dev/null; done`,
			warn:   "does not match its sha256"},
		{name: "truncated (a partly written copy)",
			damage: helpers + `truncate -s 1000000 $f; done`,
			warn:   "does not match its sha256"},
		{name: "cut inside its headers",
			damage: helpers + `truncate -s 40 $f; done`,
			warn:   "does not match its sha256"},
		{name: "symlink in place of the helper",
			damage: `printf '#!/bin/sh\ntouch /var/lib/lifeline/pwned\n' > /var/lib/lifeline/evil; chmod 0700 /var/lib/lifeline/evil; ` +
				helpers + `rm -f $f; ln -s /var/lib/lifeline/evil $f; done`,
			warn:  "is not an executable regular file",
			check: `[ ! -e /var/lib/lifeline/pwned ] && ls /var/lib/lifeline/bin/*.tampered-* | while read f; do [ -L $f ] && echo ok; done | head -1`},
		{name: "helper mode 0600", damage: helpers + `chmod 0600 $f; done`, warn: "is not an executable regular file"},
		{name: "helper mode 0777", damage: helpers + `chmod 0777 $f; done`, warn: "is writable by group or others (mode 0777)"},
		{name: "helper of another owner", damage: helpers + `chown 4242:4242 $f; done`, warn: "is owned by uid 4242, not root"},
		{name: "state folder mode 0777", damage: `chmod 0777 /var/lib/lifeline`,
			warn:  "/var/lib/lifeline is writable by group or others (mode 0777): repaired (chmod 0700)",
			check: `[ "$(stat -c %a /var/lib/lifeline)" = 700 ] && echo ok`},
		{name: "helper folder mode 0777", damage: `chmod 0777 /var/lib/lifeline/bin`,
			warn:  "/var/lib/lifeline/bin is writable by group or others (mode 0777): repaired (chmod 0700)",
			check: `[ "$(stat -c %a /var/lib/lifeline/bin)" = 700 ] && echo ok`},
		{name: "state folder of another owner", damage: `chown 4242:4242 /var/lib/lifeline`,
			refuse: "/var/lib/lifeline is owned by uid 4242, not root", undo: `chown 0:0 /var/lib/lifeline`},
		{name: "helper folder of another owner", damage: `chown 4242 /var/lib/lifeline/bin`,
			refuse: "/var/lib/lifeline/bin is owned by uid 4242, not root", undo: `chown 0 /var/lib/lifeline/bin`},
		{name: "tx folder writable by others", damage: `chmod 0777 /var/lib/lifeline/tx/$(cat /var/lib/lifeline/current)`,
			refuse: "is writable by group or others (mode 0777)", undo: `chmod 0700 /var/lib/lifeline/tx/*`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := liveRuleset(t, l, h.Name)
			txs := sh(`ls /var/lib/lifeline/tx`)
			sh(tc.damage)
			if tc.refuse != "" {
				r, stderr, code := apply(t, l, l.SSHConfig, h.Name, "spaced.nft")
				sh(tc.undo)
				t.Logf("refused: %s (hint: %s)", r.Error, r.Hint)
				if r.Outcome != "refused" || code == 0 {
					t.Fatalf("outcome %s (exit %d), want refused: %s\n%s", r.Outcome, code, r.Error, stderr)
				}
				if r.Host != h.Name || !strings.Contains(r.Error, tc.refuse) || !strings.Contains(r.Error, "unsafe-path") || !strings.Contains(r.Hint, "chown root:root") {
					t.Errorf("host %q error %q hint %q: want %s, unsafe-path: %s and a hint", r.Host, r.Error, r.Hint, h.Name, tc.refuse)
				}
				if after := liveRuleset(t, l, h.Name); after != before {
					t.Errorf("the ruleset changed after the refusal:\n%s", after)
				}
				if a := armed(t, l, h.Name); a != "" {
					t.Errorf("something is armed after the refusal: %s", a)
				}
				if got := sh(`ls /var/lib/lifeline/tx`); got != txs {
					t.Errorf("tx folders changed after the refusal: %q, before %q", got, txs)
				}
				// undone, the host takes changes again
				if r, _, _ := apply(t, l, l.SSHConfig, h.Name, "good.nft"); r.Outcome != "confirmed" {
					t.Fatalf("apply after the undo: %s: %s", r.Outcome, r.Error)
				}
				return
			}
			r, stderr, code := apply(t, l, l.SSHConfig, h.Name, "good.nft")
			if r.Outcome != "confirmed" || code != 0 {
				t.Fatalf("apply: %s (exit %d): %s\n%s", r.Outcome, code, r.Error, stderr)
			}
			t.Logf("warnings: %q", r.Warnings)
			if !strings.Contains(strings.Join(r.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q, want one with %q", r.Warnings, tc.warn)
			}
			if tc.check != "" {
				if got := strings.TrimSpace(sh(tc.check)); got != "ok" {
					t.Errorf("after the apply, %s: %q", tc.check, got)
				}
			}
			// the helper in use is the one lifeline built, root's, 0700
			got := strings.TrimSpace(sh(helpers + `[ -f $f ] && [ ! -L $f ] && echo "$(stat -c '%U %a' $f) $(sha256sum < $f | cut -d' ' -f1) ${f##*/}"; done`))
			f := strings.Fields(got)
			if len(f) != 4 || f[0] != "root" || f[1] != "700" || f[2] != f[3] {
				t.Errorf("helper after the repair: %q, want root 700 and its hash as its name", got)
			}
			sh(`rm -f /var/lib/lifeline/bin/*.tampered-* /var/lib/lifeline/evil`)
		})
	}
}
