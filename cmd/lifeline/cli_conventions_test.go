package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/remote"

	"github.com/spf13/cobra"
)

// runWithArgs is runInProcess with g.args set as main sets them, so a flag
// error that stops parsing before --json still prints JSON.
func runWithArgs(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("LIFELINE_INVENTORY", "")
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), args: args}
	root := newRootCmd(g)
	root.SetArgs(args)
	code := exitCode(g, root.Execute())
	return out.String(), errb.String(), code
}

// commandPaths lists every runnable command of the tree, as argument lists.
func commandPaths() [][]string {
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Runnable() && len(path) > 0 && c.Name() != "help" {
			out = append(out, append([]string(nil), path...))
		}
		for _, sub := range c.Commands() {
			walk(sub, append(path, sub.Name()))
		}
	}
	walk(newRootCmd(&globals{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}), nil)
	return out
}

// TestEveryCommandJSONUsageError walks the cobra tree: every command given
// an unknown flag exits 2 and, under --json, prints exactly one JSON error
// object on stdout and nothing on stderr; without --json, one lifeline:
// line on stderr and nothing on stdout.
func TestEveryCommandJSONUsageError(t *testing.T) {
	paths := commandPaths()
	if len(paths) < 25 {
		t.Fatalf("walked %d commands, want every command (25 or more): %v", len(paths), paths)
	}
	for _, p := range paths {
		name := strings.Join(p, " ")
		t.Run(name, func(t *testing.T) {
			for _, jsonFirst := range []bool{true, false} {
				args := append(append([]string(nil), p...), "--json", "--no-such-flag")
				if !jsonFirst {
					args = append(append([]string(nil), p...), "--no-such-flag", "--json")
				}
				stdout, stderr, code := runWithArgs(t, args...)
				if code != exitUsage {
					t.Fatalf("%v: exit %d, want %d", args, code, exitUsage)
				}
				if stderr != "" {
					t.Errorf("%v: stderr %q, want nothing under --json", args, stderr)
				}
				var doc struct {
					Error struct {
						Message, Code string
						Exit          int
					}
				}
				dec := json.NewDecoder(strings.NewReader(stdout))
				if err := dec.Decode(&doc); err != nil {
					t.Fatalf("%v: stdout %q is not one JSON document: %v", args, stdout, err)
				}
				if dec.More() {
					t.Errorf("%v: stdout holds more than one JSON document: %q", args, stdout)
				}
				if doc.Error.Code != "usage" || doc.Error.Exit != exitUsage || !strings.Contains(doc.Error.Message, "unknown flag: --no-such-flag") {
					t.Errorf("%v: error object %+v, want code usage, exit 2, the unknown flag named", args, doc.Error)
				}
			}
			stdout, stderr, code := runWithArgs(t, append(append([]string(nil), p...), "--no-such-flag")...)
			if code != exitUsage || stdout != "" || !strings.HasPrefix(stderr, "lifeline: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("without --json: exit %d, stdout %q, stderr %q; want exit 2 and one lifeline: line", code, stdout, stderr)
			}
		})
	}
}

// TestVersion: lifeline version and lifeline --version print the same, and
// --json has every field.
func TestVersion(t *testing.T) {
	a, _, code := runWithArgs(t, "version")
	b, _, code2 := runWithArgs(t, "--version")
	if code != 0 || code2 != 0 || a != b || !strings.HasPrefix(a, "lifeline ") || !strings.Contains(a, "go1.") {
		t.Fatalf("version %q (exit %d), --version %q (exit %d): want the same lifeline ... go1.x line", a, code, b, code2)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if !strings.Contains(a, "helper linux/"+arch+": ") {
			t.Errorf("version %q does not name the %s helper", a, arch)
		}
	}
	out, _, code := runWithArgs(t, "version", "--json")
	var d versionDoc
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 {
		t.Fatalf("version --json: %q, exit %d: %v", out, code, err)
	}
	if d.Version == "" || d.Go == "" || len(d.Helpers) != 2 {
		t.Errorf("version --json: %+v: want version, go and two helpers", d)
	}
	for _, h := range d.Helpers {
		if (h.SHA256 == "") == (h.Error == "") || h.SHA256 != "" && len(h.SHA256) != 64 {
			t.Errorf("helper %+v: want a 64-digit sha256 or an error, not both", h)
		}
	}
}

// TestTargetCompletions: the TARGET completion offers hosts and groups of
// the inventory, keeping what was typed before the last ':' or ','.
func TestTargetCompletions(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts.ini")
	if err := os.WriteFile(inv, []byte("[web]\nweb1\nweb2\n[db]\ndb1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typed string
		want  []string
	}{
		{"", []string{"web1", "web2", "db1", "all", "db", "web"}},
		{"we", []string{"web1", "web2", "web"}},
		{"web:!d", []string{"web:!db1", "web:!db"}},
		{"db1,w", []string{"db1,web1", "db1,web2", "db1,web"}},
		{"web:&", []string{"web:&web1", "web:&web2", "web:&db1", "web:&all", "web:&db", "web:&web"}},
		{"zz", nil},
	}
	for _, tc := range tests {
		if got := targetCompletions(inv, tc.typed); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("targetCompletions(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	if got := targetCompletions("", "we"); got != nil {
		t.Errorf("without an inventory: %q, want nothing", got)
	}
	// Through cobra's hidden __complete command, as a shell calls it.
	out, _, code := runWithArgs(t, "-i", inv, "__complete", "status", "we")
	if code != 0 || !strings.Contains(out, "web1\nweb2\nweb\n") {
		t.Errorf("__complete status we: exit %d, %q; want web1, web2, web", code, out)
	}
	out, _, _ = runWithArgs(t, "-i", inv, "__complete", "inventory", "graph", "")
	if !strings.HasPrefix(out, "all\ndb\nweb\n:") {
		t.Errorf("__complete inventory graph '': %q, want the groups only", out)
	}
	out, _, _ = runWithArgs(t, "-i", inv, "__complete", "apply", "web", "")
	if !strings.Contains(out, "nft\n") {
		t.Errorf("__complete apply web '': %q, want ruleset file extensions", out)
	}
}

// TestAnsibleRefusals: a command targeting a host whose Ansible inventory
// asks for what lifeline cannot carry exits 2 before contacting anything,
// naming the host, the variable and where it is set; the other hosts of
// the same inventory are targeted as usual.
func TestAnsibleRefusals(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts")
	text := `[web]
ok1 ansible_host=127.0.0.1 ansible_port=1
shk ansible_host=127.0.0.1 ansible_ssh_common_args='-o StrictHostKeyChecking=no'
pc ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -i /k bastion"'
loc ansible_connection=local
tpl ansible_host="{{ lookup('env', 'X') }}"
su ansible_become=true ansible_become_method=su
`
	if err := os.WriteFile(inv, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{"loc", "loc: ansible_connection (" + inv + ":5): local: lifeline does not change the workstation's own firewall"},
		{"tpl", "tpl: ansible_host (" + inv + ":6): \"{{ lookup('env', 'X') }}\" is a Jinja template lifeline does not evaluate"},
		{"su", "su: ansible_become_method (" + inv + ":7): su: lifeline becomes root with sudo only"},
	}
	for _, tc := range tests {
		_, stderr, code := runWithArgs(t, "-i", inv, "status", tc.host)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "nothing was contacted") {
			t.Errorf("status %s: exit %d, stderr %q; want exit 2 and %q", tc.host, code, stderr, tc.want)
		}
	}
	// carried to the transport, not refused: the option as ssh's -o, the
	// hop's own ProxyCommand run as written
	for _, tc := range []struct {
		host string
		want func(remote.Target) bool
	}{
		{"shk", func(t remote.Target) bool { return len(t.Options) == 1 && t.Options[0] == "StrictHostKeyChecking no" }},
		{"pc", func(t remote.Target) bool { return t.ProxyCommand == "ssh -W %h:%p -i /k bastion" && t.Jump == "" }},
	} {
		_, hs, err := resolveTargets(&globals{inventory: inv}, tc.host, "")
		if err != nil || len(hs) != 1 || !tc.want(targetOf(hs[0])) {
			t.Errorf("%s: %v, target %+v", tc.host, err, hs)
		}
	}
	_, hosts, err := resolveTargets(&globals{inventory: inv}, "ok1", "")
	if err != nil || len(hosts) != 1 {
		t.Fatalf("ok1: %v, %v", hosts, err)
	}
	if tgt := targetOf(hosts[0]); tgt.Name != "127.0.0.1" || tgt.Address != "" || tgt.Port != 1 {
		t.Errorf("targetOf(ok1) = %+v: want ssh_config matched on ansible_host 127.0.0.1, port 1", tgt)
	}
}
