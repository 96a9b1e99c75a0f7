package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// userConfig is a copy of the lab's ssh_config in which host logs in as
// user.
func userConfig(t *testing.T, l *lab.Lab, h *lab.Host, user string) string {
	t.Helper()
	b, err := os.ReadFile(l.SSHConfig)
	if err != nil {
		t.Fatal(err)
	}
	block := "\nHost " + h.Name + "\n"
	i := strings.Index(string(b), block)
	if i < 0 {
		t.Fatalf("no %q in %s", block, l.SSHConfig)
	}
	head, rest := string(b[:i+len(block)]), string(b[i+len(block):])
	old := "  User " + h.User + "\n"
	if !strings.HasPrefix(rest, "  HostName ") || !strings.Contains(rest, old) {
		t.Fatalf("unexpected block for %s in %s:\n%s", h.Name, l.SSHConfig, rest)
	}
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(head+strings.Replace(rest, old, "  User "+user+"\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPrivilegeRefused: a login user that cannot become root without
// help (no sudo rights, sudo that asks for a password, sudo that requires
// a tty) is refused before anything on the host changes: the host named
// with the cause and a hint, a non-zero exit, the ruleset as it was, no
// transaction begun, nothing armed.
func TestPrivilegeRefused(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	if r, _, _ := apply(t, l, l.SSHConfig, h.Name, "good.nft"); r.Outcome != "confirmed" {
		t.Fatalf("apply as %s: %s: %s", h.User, r.Outcome, r.Error)
	}
	before := liveRuleset(t, l, h.Name)
	txs := execOn(t, l, h.Name, "ls", "/var/lib/lifeline/tx")
	tests := []struct {
		user  string
		cause string // in the error
	}{
		{"nosudo", "sudo: "},
		{"pwsudo", "a password is required"},
		{"ttysudo", "tty"},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			cfg := userConfig(t, l, h, tc.user)
			if got := strings.TrimSpace(execOnSSH(t, cfg, h.Name, "id -un")); got != tc.user {
				t.Fatalf("ssh as %s: logged in as %q", tc.user, got)
			}
			r, stderr, code := apply(t, l, cfg, h.Name, "spaced.nft")
			t.Logf("%s: %s: %s (hint: %s)", tc.user, r.Outcome, r.Error, r.Hint)
			if r.Outcome != "refused" || code == 0 {
				t.Fatalf("outcome %s (exit %d), want refused\n%s", r.Outcome, code, stderr)
			}
			if r.Host != h.Name || !strings.Contains(r.Error, tc.cause) || !strings.Contains(r.Hint, "NOPASSWD") {
				t.Errorf("host %q error %q hint %q: want %s, %q and a sudo hint", r.Host, r.Error, r.Hint, h.Name, tc.cause)
			}
			// the text output names the host and the hint too
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stdout, stderr, code := cli(t, ctx, "-F", cfg, "apply", h.Name, filepath.Join(repoRoot, "testdata", "rulesets", "spaced.nft"))
			t.Logf("text output:\n%s%s", stdout, stderr)
			if out := stdout + stderr; code == 0 || !strings.Contains(out, h.Name) || !strings.Contains(out, "NOPASSWD") {
				t.Errorf("text output (exit %d) does not name %s with a hint:\n%s", code, h.Name, out)
			}
			if after := liveRuleset(t, l, h.Name); after != before {
				t.Errorf("the ruleset changed:\n%s", after)
			}
			if a := armed(t, l, h.Name); a != "" {
				t.Errorf("something is armed: %s", a)
			}
			if got := execOn(t, l, h.Name, "ls", "/var/lib/lifeline/tx"); got != txs {
				t.Errorf("tx folders changed: %q, before %q", got, txs)
			}
		})
	}
}

// execOnSSH runs command on host over ssh with cfg.
func execOnSSH(t *testing.T, cfg, host, command string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", "-F", cfg, host, command).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh %s %s: %v: %s", host, command, err, out)
	}
	return string(out)
}
