package inventory

import (
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// TestAnsibleConnection: one table per item of Ansible's reading that
// decides how a host is reached; each row is an inventory and what one
// host must come out as (or the refusal it must carry, or the load error).
func TestAnsibleConnection(t *testing.T) {
	tests := []struct {
		name, file, text string
		vars             map[string]string // group_vars/ and host_vars/ files
		host             string
		check            func(h *Host) string // "" when right, else what is wrong
		refused, loadErr string
	}{
		{
			name: "group priority beats name order", file: "/i/inv.yml",
			text: "all:\n  children:\n    a:\n      vars: {ansible_user: a_user, ansible_group_priority: 10}\n      hosts: {h1: }\n    b:\n      vars: {ansible_user: b_user}\n      hosts: {h1: }\n",
			host: "h1", check: func(h *Host) string { return want("user", h.User, "a_user") },
		},
		{
			name: "without priority the later name wins", file: "/i/inv.yml",
			text: "all:\n  children:\n    a:\n      vars: {ansible_user: a_user}\n      hosts: {h1: }\n    b:\n      vars: {ansible_user: b_user}\n      hosts: {h1: }\n",
			host: "h1", check: func(h *Host) string { return want("user", h.User, "b_user") },
		},
		{
			name: "bad priority", file: "/i/hosts", text: "[a]\nh1\n[a:vars]\nansible_group_priority=high\n",
			loadErr: "/i/hosts:4: group a: ansible_group_priority \"high\" is not a whole number",
		},
		{
			name: "group_vars/all beats a child group's inventory vars", file: "/i/hosts",
			text: "[web]\nh1\n[web:vars]\nansible_user=inline\n", vars: map[string]string{"group_vars/all.yml": "ansible_user: from_file\n"},
			host: "h1", check: func(h *Host) string { return want("user", h.User, "from_file") },
		},
		{
			name: "host_vars beat the host's inventory vars", file: "/i/hosts",
			text: "h1 ansible_port=22\n", vars: map[string]string{"host_vars/h1.yml": "ansible_port: 2222\n"},
			host: "h1", check: func(h *Host) string { return want("port", itoa(h.Port), "2222") },
		},
		{
			name: "ssh_config matched on ansible_host", file: "/i/hosts", text: "web1 ansible_host=10.0.0.5\n",
			host: "web1", check: func(h *Host) string { return want("ssh_alias", h.SSHAlias, "10.0.0.5") },
		},
		{
			name: "ssh_config matched on the name without ansible_host", file: "/i/hosts", text: "web1\n",
			host: "web1", check: func(h *Host) string { return want("ssh_alias", h.SSHAlias, "web1") },
		},
		{
			name: "-o Port in ansible_ssh_args beats ansible_port", file: "/i/hosts",
			text: "h1 ansible_port=2201 ansible_ssh_args='-C -o Port=2299'\n",
			host: "h1", check: func(h *Host) string { return want("port", itoa(h.Port), "2299") },
		},
		{
			name: "ansible_port beats -p in common args", file: "/i/hosts",
			text: "h1 ansible_port=2201 ansible_ssh_common_args='-p 2288 -l other'\n",
			host: "h1", check: func(h *Host) string { return want("port/user", itoa(h.Port)+" "+h.User, "2201 other") },
		},
		{
			name: "-i in common args", file: "/i/hosts", text: "h1 ansible_ssh_common_args='-i ~/.ssh/k'\n",
			host: "h1", check: func(h *Host) string { return want("identity", h.IdentityFile, "~/.ssh/k") },
		},
		{
			name: "a second identity file is refused", file: "/i/hosts", text: "h1 ansible_ssh_private_key_file=/k1 ansible_ssh_common_args='-i /k2'\n",
			host: "h1", refused: "ansible_ssh_common_args (/i/hosts:1): a second identity file /k2 (after /k1)",
		},
		{
			name: "common args' jump beats extra args'", file: "/i/hosts", text: "h1 ansible_ssh_common_args='-J j1' ansible_ssh_extra_args='-o ProxyJump=j2'\n",
			host: "h1", check: func(h *Host) string { return want("jump", h.Jump, "j1") },
		},
		{
			name: "Python-quoted INI values", file: "/i/hosts", text: "[w]\nh1 ansible_user='de''ploy'\n[w:vars]\nansible_host=\"10.0.0.\\x39\"\n",
			host: "h1", check: func(h *Host) string { return want("user/address", h.User+" "+h.Address, "deploy 10.0.0.9") },
		},
		{
			name: "bare IPv6 host", file: "/i/hosts", text: "[v6]\n2001:db8::10 ansible_user=v6\n",
			host: "2001:db8::10", check: func(h *Host) string { return want("ssh_alias/user", h.SSHAlias+" "+h.User, "2001:db8::10 v6") },
		},
		{
			name: "connection local", file: "/i/hosts", text: "localhost ansible_connection=local\n",
			host: "localhost", refused: "ansible_connection (/i/hosts:1): local: lifeline does not change the workstation's own firewall",
		},
		{
			name: "connection docker", file: "/i/hosts", text: "c1 ansible_connection=docker\n",
			host: "c1", refused: "ansible_connection (/i/hosts:1): docker: lifeline reaches hosts over SSH only",
		},
		{
			name: "connection ssh", file: "/i/hosts", text: "h1 ansible_connection=ssh\n",
			host: "h1", check: func(h *Host) string { return want("connection", h.Connection, "") },
		},
		{
			name: "become sudo", file: "/i/hosts", text: "h1 ansible_become=yes\n",
			host: "h1", check: func(h *Host) string { return want("become", h.Become, "sudo") },
		},
		{
			name: "become false", file: "/i/hosts", text: "h1 ansible_become=false ansible_become_method=su\n",
			host: "h1", check: func(h *Host) string { return want("become", h.Become, "") },
		},
		{
			name: "become doas", file: "/i/hosts", text: "h1 ansible_become=true ansible_become_method=doas\n",
			host: "h1", refused: "ansible_become_method (/i/hosts:1): doas: lifeline becomes root with sudo only",
		},
		{
			name: "become another user", file: "/i/hosts", text: "h1 ansible_become=true ansible_become_user=postgres\n",
			host: "h1", refused: "ansible_become_user (/i/hosts:1): postgres",
		},
		{
			name: "jinja inventory_hostname", file: "/i/inv.yml", text: "all:\n  hosts:\n    web1.example.com:\n      ansible_host: \"{{ inventory_hostname }}.mgmt\"\n      ansible_user: \"{{inventory_hostname_short}}-ops\"\n",
			host: "web1.example.com", check: func(h *Host) string {
				return want("address/user", h.SSHAlias+" "+h.User, "web1.example.com.mgmt web1-ops")
			},
		},
		{
			name: "other jinja refused, never dialed", file: "/i/inv.yml", text: "all:\n  hosts:\n    h1:\n      ansible_host: \"{{ lookup('env', 'IP') }}\"\n",
			host: "h1", refused: `ansible_host (/i/inv.yml:4): "{{ lookup('env', 'IP') }}" is a Jinja template`,
			check: func(h *Host) string { return want("address", h.Address, "") },
		},
		{
			name: "undefined child group", file: "/i/hosts", text: "[prod:children]\nweb\ndb\n[web]\nh1\n",
			loadErr: "/i/hosts:3: section [prod:children] names group db, which is not defined",
		},
		{
			name: "child declared later", file: "/i/hosts", text: "[prod:children]\nweb\n[web]\nh1\n",
			host: "h1", check: func(h *Host) string { return want("groups", strings.Join(h.Groups, ","), "prod,web") },
		},
		{
			name: "child declared only by vars", file: "/i/hosts", text: "[prod:children]\nweb\n[web:vars]\nx=1\n",
			loadErr: "/i/hosts:2: section [prod:children] names group web, which is not defined",
		},
		{
			name: "vars of an undefined group", file: "/i/hosts", text: "h1\n[nowhere:vars]\nx=1\n",
			loadErr: "/i/hosts:2: section [nowhere:vars] is for a group that is not defined",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for p, text := range tt.vars {
				fsys[p] = &fstest.MapFile{Data: []byte(text)}
			}
			inv, err := parse(tt.file, []byte(tt.text), fsys)
			if tt.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.loadErr) {
					t.Fatalf("error = %v, want %q", err, tt.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := inv.Lookup(tt.host)
			if h == nil {
				t.Fatalf("no host %s", tt.host)
			}
			refused := strings.Join(h.Unsupported, "\n")
			if tt.refused == "" && refused != "" || !strings.Contains(refused, tt.refused) {
				t.Errorf("refused %q, want %q", refused, tt.refused)
			}
			if tt.check != nil {
				if msg := tt.check(h); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func want(what, got, want string) string {
	if got == want {
		return ""
	}
	return what + " = " + got + ", want " + want
}

func itoa(n int) string { return strconv.Itoa(n) }
