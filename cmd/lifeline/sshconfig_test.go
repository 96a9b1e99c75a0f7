package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runSSHConfigCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("LIFELINE_INVENTORY", "")
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
	root := newRootCmd(g)
	root.SetArgs(args)
	code = exitCode(g, root.Execute())
	return out.String(), errb.String(), code
}

func TestSSHConfigCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	text := `Host web1
  HostName 10.0.0.1
  User deploy
  Port 2222
  IdentityFile /keys/%r@%h
  IdentityFile /keys/%r@%h
  CertificateFile /keys/%n-cert.pub
  IdentityAgent none
  HostKeyAlias web-%h
  ProxyCommand ssh -W %h:%p bastion
  ProxyJump ignored-because-proxycommand-came-first
  AddKeysToAgent yes
Host db1
  ProxyJump j1,ops@j2:2200
  UserKnownHostsFile /kh/%n
  ProxyUseFdpass yes
`
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code := runSSHConfigCLI(t, "-F", cfg, "ssh-config", "web1", "db1")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"host web1\nhostname 10.0.0.1\nuser deploy\nport 2222\nidentityfile /keys/deploy@10.0.0.1\ncertificatefile /keys/web1-cert.pub\nidentityagent none\n",
		"hostkeyalias web-%h\nproxycommand ssh -W %h:%p bastion\nconnecttimeout 10\n",
		"# note: AddKeysToAgent yes is ignored",
		"host db1\n", "userknownhostsfile /kh/db1\n", "proxyjump j1,ops@j2:2200\n",
		"# unsupported: ProxyUseFdpass yes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "identityfile ") != 1+7 || strings.Contains(out, "ignored-because") {
		t.Errorf("duplicate IdentityFile kept, or ProxyJump shown after ProxyCommand:\n%s", out)
	}

	out, _, code = runSSHConfigCLI(t, "-F", cfg, "ssh-config", "--json", "web1")
	var doc []map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc) != 1 {
		t.Fatalf("--json: exit %d, %v:\n%s", code, err, out)
	}
	for _, k := range []string{"hostname", "user", "port", "identityfile", "certificatefile", "identityagent", "userknownhostsfile", "hostkeyalias", "proxycommand", "connecttimeout", "resolver"} {
		if _, ok := doc[0][k]; !ok {
			t.Errorf("--json lacks %q: %s", k, out)
		}
	}

	// A bad line anywhere fails every host, as in ssh.
	if err := os.WriteFile(cfg, []byte(text+"Host elsewhere\n  Port seventy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runSSHConfigCLI(t, "-F", cfg, "ssh-config", "web1")
	if code != 1 || !strings.Contains(stderr, "bad Port") || !strings.Contains(stderr, "web1:") {
		t.Fatalf("a bad Port: exit %d, stderr %q; want 1 and the host and setting named", code, stderr)
	}
	if _, _, code := runSSHConfigCLI(t, "ssh-config"); code != 2 {
		t.Fatalf("no host: exit %d, want 2", code)
	}
}
