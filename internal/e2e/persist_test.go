package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// bootFile reads a file on the host ("" when it does not exist).
func bootFile(t *testing.T, l *lab.Lab, host, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, host, "sh", "-c", fmt.Sprintf("cat %s 2>/dev/null || true", path))
	if err != nil {
		t.Fatalf("%s: read %s: %v", host, path, err)
	}
	return string(out)
}

// TestPersistEmptyAndKernelState (issue #13): an empty ruleset is refused
// and the boot file stays as it was (it used to be confirmed and persisted
// as a 1-byte file, so the host booted without a firewall); a ruleset in
// another backend's format is refused unless --format says so; a persisted
// apply writes what the kernel holds (the tool's canonical form, not the
// operator's comments and spacing) and keeps the previous boot file.
func TestPersistEmptyAndKernelState(t *testing.T) {
	for _, tc := range []struct {
		backend, ext, other, boot, canonical string
		live                                 []string
	}{
		{lab.BackendNft, "nft", "v4", "/etc/nftables.conf", "tcp dport { 22, 2222 } accept", []string{"nft", "list", "table", "inet", "filter"}},
		{lab.BackendIptablesLegacy, "v4", "nft", "/etc/iptables/rules.v4", "-A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT", []string{"iptables-save"}},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: tc.backend, InitExe: lifelineBin})
			h := l.Hosts[0]
			before, live := bootFile(t, l, h.Name, tc.boot), liveRuleset(t, l, h.Name)
			if before == "" {
				t.Fatalf("the lab host has no %s", tc.boot)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, stderr, code := cli(t, ctx, "-F", l.SSHConfig, "apply", h.Name, filepath.Join(repoRoot, "testdata", "rulesets", "empty."+tc.ext), goodTimeout, "--persist")
			if code == 0 || !strings.Contains(stderr, "empty") {
				t.Fatalf("empty ruleset: exit %d, want refused as empty:\n%s", code, stderr)
			}
			if got := bootFile(t, l, h.Name, tc.boot); got != before {
				t.Fatalf("the empty ruleset changed %s:\n%s", tc.boot, got)
			}
			if got := liveRuleset(t, l, h.Name); got != live {
				t.Fatalf("the empty ruleset changed the live ruleset:\n%s", got)
			}

			// good.<other backend's format>: a second layer, refused
			r, stderr, code := apply(t, l, l.SSHConfig, h.Name, "good."+tc.other, goodTimeout)
			if r.Outcome != "refused" || code == 0 || !strings.Contains(r.Error, "active firewall") || !strings.Contains(r.Error, "--format") {
				t.Fatalf("ruleset of another backend: %s exit %d: %s\n%s", r.Outcome, code, r.Error, stderr)
			}
			if got := liveRuleset(t, l, h.Name); got != live {
				t.Fatalf("the refused format changed the live ruleset:\n%s", got)
			}

			r, stderr, code = apply(t, l, l.SSHConfig, h.Name, "spaced."+tc.ext, goodTimeout, "--persist")
			if r.Outcome != "confirmed" || code != 0 {
				t.Fatalf("persist spaced.%s: %s exit %d: %s\n%s", tc.ext, r.Outcome, code, r.Error, stderr)
			}
			got := bootFile(t, l, h.Name, tc.boot)
			if strings.Contains(got, "operator note") || !strings.Contains(got, tc.canonical) {
				t.Errorf("%s holds the operator's text, want the kernel's (%q):\n%s", tc.boot, tc.canonical, got)
			}
			kernel := execOn(t, l, h.Name, tc.live...)
			if !strings.Contains(normalize(got), normalize(kernel)) {
				t.Errorf("%s is not what the kernel holds:\nfile:\n%s\nkernel:\n%s", tc.boot, got, kernel)
			}
			if bak := bootFile(t, l, h.Name, tc.boot+".lifeline.bak"); bak != before {
				t.Errorf("backup %s.lifeline.bak: %q, want the previous boot file", tc.boot, bak)
			}
			rec := execOn(t, l, h.Name, "cat", "/var/lib/lifeline/tx/"+r.TxID+"/record.json")
			if !strings.Contains(rec, tc.boot+".lifeline.bak") {
				t.Errorf("the record does not report the backup as persisted:\n%s", rec)
			}
			confirmed := liveRuleset(t, l, h.Name)
			reboot(t, l, h.Name)
			if after := liveRuleset(t, l, h.Name); after != confirmed {
				t.Fatalf("after a reboot the persisted ruleset is not live:\nwant:\n%s\ngot:\n%s", confirmed, after)
			}
			if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
				t.Fatal(err)
			}
		})
	}
}
