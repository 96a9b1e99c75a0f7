package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// rolloutInventory writes a lifeline inventory for the lab in which every
// host has its own ruleset (from testdata/rulesets): lockouts maps a host to
// the ruleset that locks it out, the others get good.nft.
func rolloutInventory(t *testing.T, l *lab.Lab, lockouts map[string]string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "ssh_config: %s\nknown_hosts: %s\nhosts:\n", l.SSHConfig, l.KnownHosts)
	for _, h := range l.Hosts {
		rs := "good.nft"
		if r, ok := lockouts[h.Name]; ok {
			rs = r
		}
		fmt.Fprintf(&b, "  %s: {ruleset: %s}\n", h.Name, filepath.Join(repoRoot, "testdata", "rulesets", rs))
	}
	p := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func rollout(t *testing.T, inv string, args ...string) (applyDoc, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, append([]string{"-i", inv, "--json", "apply", "all"}, args...)...)
	var doc applyDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("rollout: exit %d, unreadable JSON: %v\nstdout: %s\nstderr: %s", code, err, stdout, stderr)
	}
	return doc, stderr, code
}

func byHost(doc applyDoc) map[string]result {
	m := map[string]result{}
	for _, r := range doc.Results {
		m[r.Host] = r
	}
	return m
}

// TestRolloutBatches: a 30-host rollout with a canary, max-fail 0, and one
// host of the second batch locking itself out: the canary confirms, that
// host reverts, the rollout stops after its batch, the third batch is
// skipped and untouched. With --max-fail 1 the same rollout goes to the end.
func TestRolloutBatches(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 30, Backend: "nft", InitExe: lifelineBin})
	const bad = "h05" // batch 2 is h02..h16 (1, then 50% of 30, then the rest)
	inv := rolloutInventory(t, l, map[string]string{bad: "dropnew.nft"})
	before := map[string]string{}
	for _, h := range l.Hosts[16:] {
		before[h.Name] = liveRuleset(t, l, h.Name)
	}

	doc, stderr, code := rollout(t, inv, "--serial", "1,50%,100%", "--max-fail", "0", "--confirm-timeout", "40s", "--force")
	if code != 1 || doc.OK {
		t.Fatalf("max-fail 0: exit %d ok=%v, want failure\n%s", code, doc.OK, stderr)
	}
	res := byHost(doc)
	for i, h := range l.Hosts {
		r := res[h.Name]
		want := "confirmed"
		switch {
		case h.Name == bad:
			want = "reverted"
		case i >= 16:
			want = "skipped"
		}
		if r.Outcome != want {
			t.Errorf("max-fail 0: %s: outcome %s, want %s (%s)", h.Name, r.Outcome, want, r.Error)
		}
	}
	if doc.Counts["confirmed"] != 15 || doc.Counts["reverted"] != 1 || doc.Counts["skipped"] != 14 {
		t.Errorf("max-fail 0: counts %v, want 15 confirmed, 1 reverted, 14 skipped", doc.Counts)
	}
	for _, h := range l.Hosts[16:] {
		if got := liveRuleset(t, l, h.Name); got != before[h.Name] {
			t.Errorf("skipped host %s was changed:\n%s", h.Name, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, _ := l.Exec(ctx, h.Name, "sh", "-c", "ls /var/lib/lifeline/tx 2>/dev/null | wc -l")
		cancel()
		if strings.TrimSpace(string(out)) != "0" {
			t.Errorf("skipped host %s has transactions: %s", h.Name, out)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	doc, stderr, code = rollout(t, inv, "--serial", "1,50%,100%", "--max-fail", "1", "--confirm-timeout", "40s", "--force")
	if code != 1 {
		t.Fatalf("max-fail 1: exit %d, want 1 (one host reverted)\n%s", code, stderr)
	}
	if doc.Counts["confirmed"] != 29 || doc.Counts["reverted"] != 1 {
		t.Fatalf("max-fail 1: counts %v, want 29 confirmed and 1 reverted\n%s", doc.Counts, stderr)
	}
}

// TestRolloutInterrupt: SIGINT in the middle of a 20-host rollout stops
// scheduling; the hosts in flight finish their protocol; no host is left
// armed; every host is confirmed, reverted or untouched, and the report
// says which.
func TestRolloutInterrupt(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 20, Backend: "nft", InitExe: lifelineBin})
	inv := rolloutInventory(t, l, map[string]string{"h03": "dropnew.nft"})
	cmd, sc := startStream(t, "-i", inv, "apply", "all", "--json-stream", "--forks", "4", "--confirm-timeout", "30s", "--force")
	kill := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	defer kill.Stop()
	applied := 0
	interrupted := false
	var doc applyDoc
	for sc.Scan() {
		var ev struct {
			Type   string `json:"type"`
			Phase  string `json:"Phase"`
			Status string `json:"Status"`
			applyDoc
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.Type == "event" && ev.Phase == "apply" && ev.Status == "done" {
			applied++
			if applied == 2 && !interrupted {
				interrupted = true
				_ = cmd.Process.Signal(syscall.SIGINT)
			}
		}
		if ev.Type == "result" {
			doc = ev.applyDoc
		}
	}
	err := cmd.Wait()
	if !interrupted || len(doc.Results) != 20 {
		t.Fatalf("interrupted=%v results=%d (wait: %v)", interrupted, len(doc.Results), err)
	}
	started, skipped := 0, 0
	for _, r := range doc.Results {
		switch r.Outcome {
		case "confirmed", "reverted":
			started++
		case "skipped":
			skipped++
		default:
			t.Errorf("%s: outcome %s after Ctrl-C, want confirmed, reverted or skipped: %s", r.Host, r.Outcome, r.Error)
		}
	}
	if skipped == 0 || started == 0 {
		t.Errorf("after Ctrl-C: %d finished, %d skipped: want both", started, skipped)
	}
	for _, h := range l.Hosts {
		if a := armed(t, l, h.Name); a != "" {
			t.Errorf("%s left armed after Ctrl-C: %s", h.Name, a)
		}
	}
	res := byHost(doc)
	for _, h := range l.Hosts {
		if res[h.Name].Outcome != "skipped" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		o, _ := l.Exec(ctx, h.Name, "sh", "-c", "ls /var/lib/lifeline/tx 2>/dev/null | wc -l")
		cancel()
		if strings.TrimSpace(string(o)) != "0" {
			t.Errorf("skipped host %s was touched: %s", h.Name, o)
		}
	}
}

// TestAnsibleInventoryApply: an Ansible INI inventory (from a testdata
// template: ranges, children, vars, a ProxyJump through
// ansible_ssh_common_args) drives an apply against the lab.
func TestAnsibleInventoryApply(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	tmpl, err := template.ParseFiles(filepath.Join(repoRoot, "testdata", "inventories", "lab-ansible.ini.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]*lab.Host{}
	for _, h := range l.Hosts {
		hosts[h.Name] = h
	}
	inv := filepath.Join(t.TempDir(), "hosts.ini")
	f, err := os.Create(inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Execute(f, map[string]any{"H": hosts, "Key": l.Key, "Rules": filepath.Join(repoRoot, "testdata", "rulesets")}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// -F: an ssh_config supplies the key and known_hosts; the INI
	// inventory overrides address, user and port and sets the jump. As
	// with Ansible's ssh, its Host blocks match ansible_host (the
	// address), so the lab's Host hNN blocks are repeated for each
	// address; the jump h01 is matched by name, as ssh would.
	cfgText, err := os.ReadFile(l.SSHConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(cfgText)
	for _, h := range l.Hosts {
		cfg += fmt.Sprintf("\nHost %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
			h.Address, l.Key, l.KnownHosts)
	}
	sshConfig := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(sshConfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := cli(t, ctx, "-F", sshConfig, "-i", inv, "--json", "apply", "lab", "--confirm-timeout", "30s")
	var doc applyDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("exit %d: %v\n%s\n%s", code, err, stdout, stderr)
	}
	if code != 0 || doc.Counts["confirmed"] != 3 {
		t.Fatalf("apply over the Ansible inventory: exit %d, counts %v\n%s\n%s", code, doc.Counts, stdout, stderr)
	}
}
