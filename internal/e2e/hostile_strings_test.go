package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestHostileStrings (issue #14, part 3): shell syntax in every string an
// inventory, a target, a ruleset path or a --check URL carries — `;`,
// `$(…)`, backticks, quotes, spaces, newlines, a leading `-` — is never
// executed, on the workstation or on the host: each is refused with the
// field named, or passed as data (and then fails as data would: an address
// that does not resolve, a file that does not exist). Every payload would
// create a marker file in /var/tmp, which the lab's hosts share with this
// machine, so one look covers both sides. The host's ruleset never changes
// and nothing is left armed.
func TestHostileStrings(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 1, InitExe: lifelineBin})
	h := l.Hosts[0]
	rules := filepath.Join(repoRoot, "testdata", "rulesets", rulesetFor(h, "good", false))
	marker := filepath.Join("/var/tmp", fmt.Sprintf("llpwn-%d", os.Getpid()))
	t.Cleanup(func() {
		ms, _ := filepath.Glob(marker + "*")
		for _, m := range ms {
			_ = os.Remove(m)
		}
	})
	before := liveRuleset(t, l, h.Name)
	payloads := func(tag string) []string {
		m := marker + "-" + tag
		return []string{
			"x;touch " + m,
			"$(touch " + m + ")",
			"`touch " + m + "`",
			"x' ; touch " + m + " ; '",
			`x" ; touch ` + m + ` ; "`,
			"x\ntouch " + m,
			"-oProxyCommand=touch " + m,
			"x touch " + m,
		}
	}
	dir := t.TempDir()
	yaml := func(field, value string) string {
		fields := map[string]string{
			"address": h.Address, "user": h.User, "port": fmt.Sprint(h.Port), "identity_file": l.Key,
		}
		fields[field] = value
		var b strings.Builder
		fmt.Fprintf(&b, "known_hosts: %s\nhosts:\n  h01:\n", l.KnownHosts)
		for _, k := range []string{"address", "user", "port", "identity_file", "jump", "ruleset"} {
			if v, ok := fields[k]; ok {
				fmt.Fprintf(&b, "    %s: %q\n", k, v)
			}
		}
		return b.String()
	}
	type run struct {
		name string
		args []string
		// refusedSays: when the run is refused, the message names this
		// (the field); "" accepts any non-zero exit
		refusedSays string
	}
	var runs []run
	for i, field := range []string{"address", "user", "port", "jump", "ruleset"} {
		for j, p := range payloads(fmt.Sprintf("%s%d", field, i)) {
			inv := filepath.Join(dir, fmt.Sprintf("%s-%d.yaml", field, j))
			if err := os.WriteFile(inv, []byte(yaml(field, p)), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"-i", inv, "apply", "all", "--confirm-timeout", "20s"}
			if field != "ruleset" {
				args = append(args, rules)
			}
			runs = append(runs, run{name: fmt.Sprintf("inventory %s %q", field, p), args: args, refusedSays: ""})
		}
	}
	for j, p := range payloads("target") {
		runs = append(runs, run{name: fmt.Sprintf("target %q", p), args: []string{"-F", l.SSHConfig, "apply", "--", p, rules}, refusedSays: ""})
		runs = append(runs, run{name: fmt.Sprintf("user@target %q", p), args: []string{"-F", l.SSHConfig, "run", "--", p + "@" + h.Name, "true"}})
		// a ruleset path that exists, its name full of shell: read as data
		evil := filepath.Join(dir, fmt.Sprintf("r%d-%s.nft", j, strings.NewReplacer("/", "_", "\n", "_").Replace(p)))
		data, err := os.ReadFile(rules)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(evil, data, 0o600); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run{name: fmt.Sprintf("ruleset path %q, dry run", p), args: []string{"-F", l.SSHConfig, "apply", h.Name, evil, "--dry-run"}})
		runs = append(runs, run{name: fmt.Sprintf("--check %q", p), args: []string{"-F", l.SSHConfig, "apply", h.Name, rules, "--confirm-timeout", "20s", "--check", "tcp://" + p + ":22"}, refusedSays: "--check"})
		runs = append(runs, run{name: fmt.Sprintf("--check host %q", p), args: []string{"-F", l.SSHConfig, "apply", h.Name, rules, "--confirm-timeout", "20s", "--check", p}, refusedSays: "--check"})
	}
	for _, r := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, stderr, code := cli(t, ctx, r.args...)
		cancel()
		ms, _ := filepath.Glob(marker + "*")
		if len(ms) > 0 {
			t.Fatalf("%s: a payload ran: %v exists\nexit %d\n%s\n%s", r.name, ms, code, out, stderr)
		}
		dry := strings.Contains(r.name, "dry run")
		switch {
		case dry && code != 0:
			t.Errorf("%s: exit %d, want the file read as data and the dry run to work\n%s\n%s", r.name, code, out, stderr)
		case !dry && code == 0:
			t.Errorf("%s: exit 0, want a refusal or a failure as data\n%s\n%s", r.name, out, stderr)
		case !dry && r.refusedSays != "" && !strings.Contains(stderr+out, r.refusedSays):
			t.Errorf("%s: the error does not name %s:\n%s\n%s", r.name, r.refusedSays, out, stderr)
		}
		if strings.Contains(stderr, "\x1b") {
			t.Errorf("%s: raw escape in stderr: %q", r.name, stderr)
		}
	}
	if after := liveRuleset(t, l, h.Name); after != before {
		t.Errorf("the host's ruleset changed:\n%s", after)
	}
	if a := armed(t, l, h.Name); a != "" {
		t.Errorf("something is armed on %s: %s", h.Name, a)
	}
}
