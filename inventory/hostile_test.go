package inventory

import (
	"strings"
	"testing"
	"testing/fstest"
)

// TestHostileNames: in every format, a host name that is not a safe file
// name component (it would name files in the run folder) and an address,
// user or jump with a control character are refused, naming file and line.
func TestHostileNames(t *testing.T) {
	long := strings.Repeat("a", 254)
	tests := []struct {
		name, file, text, want string
	}{
		// lifeline YAML
		{"lifeline traversal", "/i/inv.yaml", "hosts:\n  ../../../../../../../tmp/x: {}\n", `/i/inv.yaml:2: host name "../../../../../../../tmp/x" cannot be targeted`},
		{"lifeline slash", "/i/inv.yaml", "hosts:\n  h1: {}\n  a/b: {}\n", `/i/inv.yaml:3: host name "a/b" cannot be targeted`},
		{"lifeline dot dot", "/i/inv.yaml", "hosts:\n  ..: {}\n", `/i/inv.yaml:2: host name ".." cannot be targeted`},
		{"lifeline hidden", "/i/inv.yaml", "hosts:\n  .h1: {}\n", `/i/inv.yaml:2: host name ".h1" cannot be targeted: it must not start with '.'`},
		{"lifeline inner dot dot", "/i/inv.yaml", "hosts:\n  a..b: {}\n", `/i/inv.yaml:2: host name "a..b" cannot be targeted`},
		{"lifeline option", "/i/inv.yaml", "hosts:\n  -oProxyCommand: {}\n", `/i/inv.yaml:2: host name "-oProxyCommand" cannot be targeted`},
		{"lifeline escape in name", "/i/inv.yaml", "hosts:\n  \"h\\e[2J\": {}\n", `/i/inv.yaml:2: host name "h\x1b[2J" cannot be targeted`},
		{"lifeline colon", "/i/inv.yaml", "hosts:\n  \"a:b\": {}\n", `/i/inv.yaml:2: host name "a:b" cannot be targeted`},
		{"lifeline too long", "/i/inv.yaml", "hosts:\n  " + long + ": {}\n", `/i/inv.yaml:2: host name "` + long[:200] + `"… (254 bytes) is 254 bytes long: at most 253`},
		{"lifeline address newline", "/i/inv.yaml", "hosts:\n  h1:\n    address: \"10.0.0.1\\nProxyCommand sh\"\n", `/i/inv.yaml:3: host h1: address "10.0.0.1\nProxyCommand sh" has a control character`},
		{"lifeline address option", "/i/inv.yaml", "hosts:\n  h1: {address: -oProxyCommand=sh}\n", `/i/inv.yaml:2: host h1: address "-oProxyCommand=sh" starts with '-'`},
		{"lifeline user escape", "/i/inv.yaml", "hosts:\n  h1: {user: \"root\\e]0;x\\a\"}\n", `/i/inv.yaml:2: host h1: user "root\x1b]0;x\a" has a control character`},
		{"lifeline defaults user newline", "/i/inv.yaml", "defaults:\n  user: \"a\\nb\"\nhosts:\n  h1: {}\n", `/i/inv.yaml:2: host h1: user "a\nb" has a control character`},
		{"lifeline jump c1", "/i/inv.yaml", "hosts:\n  h1: {jump: \"b1\\x9b\"}\n", `/i/inv.yaml:2: host h1: jump "b1\u009b" has a control character`},
		// Ansible INI
		{"ini traversal", "/i/hosts", "[web]\n../../../../../../../tmp/x\n", `/i/hosts:2: host name "../../../../../../../tmp/x" cannot be targeted`},
		{"ini ungrouped traversal", "/i/hosts", "h1\n/etc/passwd ansible_host=1.2.3.4\n", `/i/hosts:2: host name "/etc/passwd" cannot be targeted`},
		{"ini range into traversal", "/i/hosts", "[web]\nw[1:2]/../../x\n", `/i/hosts:2: host name "w1/../../x" cannot be targeted`},
		{"ini address escape", "/i/hosts", "[web]\nw1 ansible_host=10.0.0.1\x1b[2J\n", `/i/hosts:2: host w1: address "10.0.0.1\x1b[2J" has a control character`},
		{"ini user escape", "/i/hosts", "[web]\nw1 ansible_user=ro\x07ot\n", `/i/hosts:2: host w1: user "ro\aot" has a control character`},
		{"ini group vars user", "/i/hosts", "[web]\nw1\n[web:vars]\nansible_ssh_user=a\x00b\n", `/i/hosts:4: host w1: user "a\x00b" has a control character`},
		// Ansible YAML
		{"ansible yaml traversal", "/i/inv.yml", "all:\n  hosts:\n    ../../../../../../../tmp/x:\n", `/i/inv.yml:3: host name "../../../../../../../tmp/x" cannot be targeted`},
		{"ansible yaml child traversal", "/i/inv.yml", "all:\n  children:\n    web:\n      hosts:\n        w1:\n        ../x:\n", `/i/inv.yml:6: host name "../x" cannot be targeted`},
		{"ansible yaml address newline", "/i/inv.yml", "all:\n  hosts:\n    w1:\n      ansible_host: \"10.0.0.1\\n  ProxyCommand sh\"\n", `/i/inv.yml:4: host w1: address "10.0.0.1\n  ProxyCommand sh" has a control character`},
		{"ansible yaml group user", "/i/inv.yml", "all:\n  vars:\n    ansible_user: \"u\\r\"\n  hosts:\n    w1:\n", `/i/inv.yml:3: host w1: user "u\r" has a control character`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse(tt.file, []byte(tt.text))
			if err == nil {
				var names []string
				for _, h := range inv.Hosts {
					names = append(names, h.Name+"@"+h.Address)
				}
				t.Fatalf("Parse succeeded (hosts %q), want error %q", names, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestHostileHostVars: a control character in a host_vars/ file is refused
// naming that file and line.
func TestHostileHostVars(t *testing.T) {
	fsys := fstest.MapFS{"host_vars/w1.yml": {Data: []byte("x: 1\nansible_host: \"1.2.3.4\\nProxyCommand sh\"\n")}}
	_, err := parse("/inv/hosts", []byte("[web]\nw1\n"), fsys)
	want := `/inv/host_vars/w1.yml:2: host w1: address "1.2.3.4\nProxyCommand sh" has a control character`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v\nwant it to contain %q", err, want)
	}
}

// TestSafeNamesStillWork: the names real inventories use pass.
func TestSafeNamesStillWork(t *testing.T) {
	for _, n := range []string{"h01", "web-01.example.com", "db_2", "10.0.0.1", "A.b-C_9", strings.Repeat("a", 253)} {
		if err := CheckHostName(n); err != nil {
			t.Errorf("CheckHostName(%q) = %v, want nil", n, err)
		}
	}
}

// TestFromAliasesHostile: ad-hoc targets (no inventory) follow the same
// rules as inventory host names and users.
func TestFromAliasesHostile(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"../../../../tmp/x", `host name "../../../../tmp/x" cannot be targeted`},
		{"h1,..", `host name ".." cannot be targeted`},
		{".ssh", `host name ".ssh" cannot be targeted`},
		{"-oProxyCommand=sh", `host name "-oProxyCommand=sh" cannot be targeted`},
		{"h\x1bc", `host name "h\x1bc" cannot be targeted`},
		{"h\nx", `host name "h\nx" cannot be targeted`},
		{"ro\x1bot@h1", `user "ro\x1bot" has a control character`},
		{"-l@h1", `user "-l" starts with '-'`},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			hosts, err := FromAliases(tt.pattern)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("FromAliases(%q) = %v, %v; want an error containing %q", tt.pattern, hosts, err, tt.want)
			}
			if strings.ContainsAny(err.Error(), "\x1b\n") {
				t.Errorf("error %q holds raw control characters", err)
			}
		})
	}
}
