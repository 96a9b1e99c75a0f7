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

// TestProxyCommandBastion applies to the host reached only through the
// jump host, with ProxyCommand ssh -W %h:%p JUMP instead of ProxyJump:
// the change is confirmed, and the fresh confirm connection runs the
// same ProxyCommand. The command is a script that logs one line per
// invocation, so the log counts the SSH connections lifeline opened
// through it.
func TestProxyCommandBastion(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	var inner *lab.Host
	for _, h := range l.Hosts {
		if h.Jump != "" {
			inner = h
		}
	}
	if inner == nil {
		t.Fatal("the lab has no host behind a jump host")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "proxy.log")
	script := filepath.Join(dir, "proxy.sh")
	err := os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\necho \"$$ $1 $2\" >> %s\nexec ssh -F %s -o BatchMode=yes -W \"$1:$2\" %s\n", log, l.SSHConfig, inner.Jump)), 0o700)
	if err != nil {
		t.Fatal(err)
	}
	// The alias comes first: its ProxyCommand is obtained before anything
	// the lab's config says, and the lab's config still names the jump.
	alias := inner.Name + "-pc"
	cfg := filepath.Join(dir, "ssh_config")
	text := fmt.Sprintf("Host %s\n  HostName %s\n  User %s\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  ConnectTimeout 10\n  ProxyCommand %s %%h %%p\n  ProxyJump %s\n\nInclude %s\n",
		alias, inner.Address, inner.User, inner.Port, l.Key, l.KnownHosts, script, inner.Jump, l.SSHConfig)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	// The preview shows the ProxyCommand and no jump (first obtained wins).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, stderr, code := cli(t, ctx, "-F", cfg, "ssh-config", alias)
	if code != 0 || !strings.Contains(out, "proxycommand "+script+" %h %p\n") || strings.Contains(out, "proxyjump") {
		t.Fatalf("ssh-config %s: exit %d\n%s%s", alias, code, out, stderr)
	}

	r, stderr, code := apply(t, l, cfg, alias, rulesetFor(inner, "good", false), "--confirm-timeout=20s")
	if code != 0 || r.Outcome != "confirmed" {
		t.Fatalf("apply through the ProxyCommand: exit %d, outcome %s: %s\n%s", code, r.Outcome, r.Error, stderr)
	}
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	// One ProxyCommand per SSH connection: the working connection and the
	// fresh confirm connection.
	if r.Connections != 2 || len(lines) != r.Connections {
		t.Fatalf("apply opened %d SSH connections and ran the ProxyCommand %d times (want 2 and 2):\n%s", r.Connections, len(lines), b)
	}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) != 3 || f[1] != inner.Address || f[2] != fmt.Sprint(inner.Port) {
			t.Fatalf("ProxyCommand got %q, want %%h %%p = %s %d", line, inner.Address, inner.Port)
		}
	}
}
