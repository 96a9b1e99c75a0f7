//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// lifelineBin is the lifeline binary built once for the e2e tests (the
// lab re-executes it as each host's init).
var lifelineBin string

func TestMain(m *testing.M) {
	labtest.MaybeRunInit()
	dir, err := os.MkdirTemp("", "lifeline-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lifelineBin = filepath.Join(dir, "lifeline")
	cmd := exec.Command("go", "build", "-o", lifelineBin, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build lifeline for e2e tests: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cliResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lifelineBin, args...)
	cmd.Env = append(os.Environ(), "LIFELINE_INVENTORY=", "SSH_AUTH_SOCK=")
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("lifeline %v: %v", args, err)
	}
	t.Logf("lifeline %s -> exit %d in %s\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// hostOutputs parses "host | line" output into host -> lines.
func hostOutputs(s string) map[string][]string {
	out := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		h, rest, ok := strings.Cut(l, " | ")
		if ok {
			out[strings.TrimSpace(h)] = append(out[strings.TrimSpace(h)], rest)
		}
	}
	return out
}

func TestRunE2E(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	if len(l.Hosts) != 3 {
		t.Fatalf("lab has %d hosts, want 3", len(l.Hosts))
	}
	names := []string{l.Hosts[0].Name, l.Hosts[1].Name, l.Hosts[2].Name}

	t.Run("hostname on all", func(t *testing.T) {
		r := runCLI(t, "-i", l.Inventory, "run", "all", "--", "hostname")
		if r.code != 0 {
			t.Fatalf("exit %d, want 0", r.code)
		}
		got := hostOutputs(r.stdout)
		seen := map[string]bool{}
		for _, n := range names {
			if len(got[n]) != 1 || got[n][0] == "" {
				t.Fatalf("host %s printed %q, want one hostname line", n, got[n])
			}
			seen[got[n][0]] = true
		}
		if len(seen) != 3 {
			t.Fatalf("hostnames %v are not three distinct names", got)
		}
	})

	t.Run("sudo and json", func(t *testing.T) {
		r := runCLI(t, "-i", l.Inventory, "--json", "run", "--sudo", "all", "--", "id -u; id -un >&2")
		if r.code != 0 {
			t.Fatalf("exit %d, want 0", r.code)
		}
		var res []struct {
			Host, Stdout, Stderr, Error string
			Status                      int
			DurationMS                  int64 `json:"duration_ms"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("--json output: %v", err)
		}
		if len(res) != 3 {
			t.Fatalf("%d results, want 3", len(res))
		}
		for _, x := range res {
			if x.Stdout != "0\n" || x.Stderr != "root\n" || x.Status != 0 || x.Error != "" || x.DurationMS <= 0 {
				t.Errorf("result %+v, want uid 0 as root", x)
			}
		}
		// Without --sudo the sudo host's login user is not root.
		r = runCLI(t, "-i", l.Inventory, "run", "all", "--", "id -un")
		users := []string{}
		for _, lines := range hostOutputs(r.stdout) {
			users = append(users, lines...)
		}
		sort.Strings(users)
		if strings.Join(users, ",") != "ops,root,root" {
			t.Errorf("login users %v, want ops,root,root", users)
		}
	})

	t.Run("failing command", func(t *testing.T) {
		r := runCLI(t, "-i", l.Inventory, "run", names[0], "--", "echo out; echo err >&2; exit 4")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		if !strings.Contains(r.stdout, names[0]+" | out") || !strings.Contains(r.stderr, names[0]+" | err") || !strings.Contains(r.stderr, "exit status 4") {
			t.Fatalf("want prefixed stdout/stderr and the exit status")
		}
	})

	t.Run("proxyjump through two hops", func(t *testing.T) {
		inner := l.Hosts[2]
		base, err := os.ReadFile(l.SSHConfig)
		if err != nil {
			t.Fatal(err)
		}
		extra := fmt.Sprintf("\nHost inner2\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  ConnectTimeout 5\n  ProxyJump %s,%s\n",
			inner.Address, inner.Port, inner.User, l.Key, l.KnownHosts, names[0], names[1])
		cfg := filepath.Join(t.TempDir(), "ssh_config")
		if err := os.WriteFile(cfg, append(base, extra...), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, "-F", cfg, "-v", "run", "inner2", "--", `hostname; echo "$SSH_CONNECTION"`)
		if r.code != 0 {
			t.Fatalf("exit %d, want 0", r.code)
		}
		got := hostOutputs(r.stdout)["inner2"]
		want, err := l.Exec(context.Background(), inner.Name, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != strings.TrimSpace(string(want)) {
			t.Fatalf("inner2 printed %q, want hostname %q", got, want)
		}
		// The connection arrives from h02's back address: two hops.
		if from := strings.Fields(got[1]); len(from) != 4 || from[0] != l.Hosts[1].BackAddress {
			t.Errorf("SSH_CONNECTION %q, want it from %s (the second hop)", got[1], l.Hosts[1].BackAddress)
		}
		if !strings.Contains(r.stderr, "connected to "+names[1]) {
			t.Errorf("-v does not show the hop through %s", names[1])
		}
	})

	t.Run("host key changed", func(t *testing.T) {
		victim := l.Hosts[1].Name
		old := knownFingerprints(t, l, victim)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := l.RotateHostKeys(ctx, victim); err != nil {
			t.Fatal(err)
		}
		var fresh []string
		for _, f := range []string{"/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub"} {
			b, err := l.Exec(ctx, victim, "cat", f)
			if err != nil {
				t.Fatal(err)
			}
			k, _, _, _, err := ssh.ParseAuthorizedKey(b)
			if err != nil {
				t.Fatal(err)
			}
			fresh = append(fresh, ssh.FingerprintSHA256(k))
		}
		r := runCLI(t, "-i", l.Inventory, "--accept-new", "run", "all", "--", "hostname")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		got := hostOutputs(r.stdout)
		for _, n := range []string{names[0], names[2]} {
			if len(got[n]) != 1 {
				t.Errorf("%s did not succeed beside the refused host", n)
			}
		}
		if _, ok := got[victim]; ok {
			t.Errorf("command ran on %s despite its changed host key", victim)
		}
		line := failureLine(r.stderr, victim)
		if !strings.Contains(line, "host key mismatch") || !containsAny(line, fresh) || !containsAny(line, old) {
			t.Fatalf("failure line %q must name %s, the offered fingerprint (one of %v) and the known one (one of %v)", line, victim, fresh, old)
		}
	})

	t.Run("sshd stopped", func(t *testing.T) {
		victim := l.Hosts[1].Name
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.StopSSHD(ctx, victim); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, "-i", l.Inventory, "run", "all", "--", "hostname")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		if r.took > 8*time.Second {
			t.Fatalf("run took %s with one sshd down, want under 8s (ConnectTimeout 5s)", r.took)
		}
		got := hostOutputs(r.stdout)
		for _, n := range []string{names[0], names[2]} {
			if len(got[n]) != 1 {
				t.Errorf("%s did not succeed beside the dead host", n)
			}
		}
		line := failureLine(r.stderr, victim)
		if !strings.Contains(line, "connect to") || !(strings.Contains(line, "unreachable") || strings.Contains(line, "timed out")) {
			t.Fatalf("failure line %q does not say %s could not be reached", line, victim)
		}
	})
}

func failureLine(stderr, host string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "lifeline: "+host+":") {
			return l
		}
	}
	return ""
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// knownFingerprints lists the fingerprints known_hosts holds for host.
func knownFingerprints(t *testing.T, l *lab.Lab, host string) []string {
	t.Helper()
	b, err := os.ReadFile(l.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(b) > 0 {
		_, hosts, key, _, rest, err := ssh.ParseKnownHosts(b)
		if err != nil {
			break
		}
		for _, h := range hosts {
			if h == host || strings.HasPrefix(h, "["+host+"]") {
				out = append(out, ssh.FingerprintSHA256(key))
				break
			}
		}
		b = rest
	}
	if len(out) == 0 {
		t.Fatalf("no known_hosts entry for %s in %s", host, l.KnownHosts)
	}
	return out
}
