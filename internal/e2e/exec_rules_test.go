package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestExecRules (#10): exec --rules FILE preflights the ruleset the command
// is meant to leave. A lockout is refused before the command runs (its
// marker never appears, the live ruleset is byte-for-byte the same,
// nothing armed), naming the deciding rule; a good ruleset goes on and the
// command's result is confirmed; --force runs the lockout anyway, and the
// revert still restores the host.
func TestExecRules(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: lab.BackendNft, InitExe: lifelineBin})
	h := l.Hosts[0]
	// /var/tmp is shared with the lab's hosts: the command loads the
	// same file the workstation preflights
	dir, err := os.MkdirTemp("/var/tmp", "llexecrules")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyRules := func(name string) string {
		data, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "rulesets", name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, bad := copyRules("good.nft"), copyRules("dropall.nft")
	marker := filepath.Join(dir, "ran")
	run := func(rules string, extra ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		args := append([]string{"-F", l.SSHConfig, "exec", h.Name, "--rules", rules, "--window", "10s", "--revert-grace", "20s"}, extra...)
		args = append(args, "--", fmt.Sprintf("touch %s && nft -f %s", marker, rules))
		return cli(t, ctx, args...)
	}

	before := liveRuleset(t, l, h.Name)
	out, stderr, code := run(bad)
	if code == 0 || !strings.Contains(out+stderr, "lock you out") || !strings.Contains(out+stderr, "policy") && !strings.Contains(out+stderr, "rule") {
		t.Fatalf("exec --rules dropall: exit %d, want a refusal naming the deciding rule:\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran although the preflight refused it")
	}
	if after := liveRuleset(t, l, h.Name); after != before {
		t.Fatalf("the ruleset changed after a refusal:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if a := armed(t, l, h.Name); a != "" {
		t.Fatalf("left armed after a refusal: %s", a)
	}

	if out, stderr, code := run(good); code != 0 || !strings.Contains(out, "confirmed") {
		t.Fatalf("exec --rules good: exit %d, want confirmed:\n%s\n%s", code, out, stderr)
	}
	if live := liveRuleset(t, l, h.Name); !strings.Contains(live, "8080") {
		t.Fatalf("the command's ruleset is not live:\n%s", live)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatalf("the command did not run: %v", err)
	}

	before = liveRuleset(t, l, h.Name)
	out, stderr, code = run(bad, "--force")
	if code == 0 || !strings.Contains(out, "reverted") {
		t.Fatalf("exec --rules dropall --force: exit %d, want reverted:\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("--force did not run the command")
	}
	if after := liveRuleset(t, l, h.Name); after != before {
		t.Fatalf("not reverted to the snapshot:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
		t.Fatalf("after the revert: %v", err)
	}
}
