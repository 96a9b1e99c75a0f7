package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
	"github.com/lifeline-dev/lifeline/internal/rulesetgen"
)

type auditDoc []struct {
	Host   string `json:"host"`
	Error  string `json:"error"`
	Report *struct {
		Backends     []string `json:"backends"`
		Mixed        bool     `json:"mixed"`
		Rules        int      `json:"rules"`
		KubeServices int      `json:"kube_services"`
		Findings     []struct {
			Code string `json:"code"`
		} `json:"findings"`
	} `json:"report"`
}

// TestAudit builds each pitfall on a lab host with the tools an operator
// (or Docker) would use, and checks that audit names exactly it; a clean
// host has none; a kube-proxy-scale host (20,000 rules) is audited in
// under 2 s.
func TestAudit(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 4, InitExe: lifelineBin})
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	byBackend := func(b string, skip ...*lab.Host) *lab.Host {
		for _, h := range l.Hosts {
			if h.Backend == b && !slices.Contains(skip, h) {
				return h
			}
		}
		t.Fatalf("no %s host in the lab", b)
		return nil
	}
	clean, pit, docker := byBackend(lab.BackendNft), byBackend(lab.BackendIptablesNft), byBackend(lab.BackendIptablesLegacy)
	kube := byBackend(lab.BackendNft, clean)
	apply := func(h *lab.Host, path string) {
		t.Helper()
		if out, errs, code := cliState(t, home, "-F", l.SSHConfig, "--json", "apply", h.Name, path); code != 0 {
			t.Fatalf("%s: apply %s: exit %d\n%s\n%s", h.Name, path, code, out, errs)
		}
	}
	run := func(h *lab.Host, args ...string) {
		t.Helper()
		if out, err := l.Exec(ctx, h.Name, args...); err != nil {
			t.Fatalf("%s: %v: %v\n%s", h.Name, args, err, out)
		}
	}
	write := func(name, text string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	apply(clean, filepath.Join(repoRoot, "testdata", "rulesets", "good.nft"))
	// SSH accepted only through the workstation's network, no established
	// accept, a LOG without limit, forwarding on with FORWARD ACCEPT, no IPv6 rules
	apply(pit, write("pitfalls.v4", fmt.Sprintf("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s %s -j ACCEPT\n-A INPUT -j LOG --log-prefix \"in: \"\nCOMMIT\n", l.Subnet4)))
	run(pit, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Docker publishing a port, and an nft table next to iptables-legacy
	apply(docker, filepath.Join(repoRoot, "testdata", "rulesets", "good.v4"))
	run(docker, "iptables-legacy", "-t", "nat", "-N", "DOCKER")
	run(docker, "iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER")
	run(docker, "iptables-legacy", "-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "-m", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "172.17.0.2:80")
	run(docker, "nft", "add table ip mixed; add chain ip mixed c { type filter hook input priority 10; }; add rule ip mixed c counter")

	out, errs, code := cliState(t, home, "-F", l.SSHConfig, "--json", "audit", clean.Name+","+pit.Name+","+docker.Name)
	var doc auditDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc) != 3 {
		t.Fatalf("audit: exit %d (%v)\n%s\n%s", code, err, out, errs)
	}
	if code != 1 {
		t.Fatalf("audit with error findings: exit %d, want 1", code)
	}
	got := map[string][]string{}
	for _, h := range doc {
		if h.Error != "" || h.Report == nil {
			t.Fatalf("%s: %s", h.Host, h.Error)
		}
		for _, f := range h.Report.Findings {
			got[h.Host] = append(got[h.Host], f.Code)
		}
	}
	pitfalls := []string{"ssh-not-accepted", "no-established-accept", "log-without-limit", "forward-open", "ipv6-open", "docker-bypasses-input", "mixed-backends", "shadowed-rule"}
	if len(got[clean.Name]) != 0 {
		t.Fatalf("the clean host %s has findings %v", clean.Name, got[clean.Name])
	}
	for _, c := range []string{"ssh-not-accepted", "no-established-accept", "log-without-limit", "forward-open", "ipv6-open"} {
		if !slices.Contains(got[pit.Name], c) {
			t.Errorf("%s: %s missing from %v", pit.Name, c, got[pit.Name])
		}
	}
	for _, c := range []string{"docker-bypasses-input", "mixed-backends"} {
		if !slices.Contains(got[docker.Name], c) {
			t.Errorf("%s: %s missing from %v", docker.Name, c, got[docker.Name])
		}
		if slices.Contains(got[pit.Name], c) {
			t.Errorf("%s: %s on a host without it: %v", pit.Name, c, got[pit.Name])
		}
	}
	for _, c := range got[docker.Name] {
		if !slices.Contains(pitfalls, c) {
			t.Errorf("%s: unexpected finding %s", docker.Name, c)
		}
	}
	text, _, _ := cliState(t, home, "-F", l.SSHConfig, "audit", pit.Name)
	if !strings.Contains(text, "why:") || !strings.Contains(text, "fix:") || !strings.Contains(text, "ssh-not-accepted") {
		t.Fatalf("text view:\n%s", text)
	}

	// kube-proxy scale: 20,000 rules through iptables-legacy-restore (the
	// helper uploaded before: the bound is on reading and auditing)
	if out, errs, code := cliState(t, home, "-F", l.SSHConfig, "audit", kube.Name); code != 0 {
		t.Fatalf("%s: audit before: exit %d\n%s\n%s", kube.Name, code, out, errs)
	}
	kubeRules, n := rulesetgen.Iptables(2000)
	// the hosts mount their own /tmp: hand the file over through /var/tmp
	vdir, err := os.MkdirTemp("/var/tmp", "lle2e-kube")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(vdir)
	p := filepath.Join(vdir, "kube.save")
	if err := os.WriteFile(p, kubeRules, 0o644); err != nil {
		t.Fatal(err)
	}
	run(kube, "sh", "-c", "iptables-legacy-restore < "+p)
	start := time.Now()
	out, errs, code = cliState(t, home, "-F", l.SSHConfig, "-v", "--json", "audit", kube.Name)
	took := time.Since(start)
	doc = nil
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc) != 1 || doc[0].Report == nil {
		t.Fatalf("audit of the kube-proxy host: exit %d (%v)\n%s\n%s", code, err, out, errs)
	}
	r := doc[0].Report
	t.Logf("audit of %d rules (%d services) took %v; %s", r.Rules, r.KubeServices, took, errs)
	if r.Rules < n || r.KubeServices != 2000 || !r.Mixed {
		t.Fatalf("kube host: %d rules (want >= %d), %d services, mixed %v", r.Rules, n, r.KubeServices, r.Mixed)
	}
	if took > 2*time.Second {
		t.Fatalf("audit of %d rules took %v, want under 2s", r.Rules, took)
	}
}
