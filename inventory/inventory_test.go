package inventory

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func mustParse(t *testing.T, name, text string) *Inventory {
	t.Helper()
	inv, err := Parse(name, []byte(text))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return inv
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name, file, text string
		host             string
		want             map[string]string // field → value
		source           map[string]string // setting → source must contain
	}{
		{
			name: "lifeline host beats group beats defaults",
			file: "/i/inv.yaml",
			text: `
defaults: {user: d, port: 2200, jump: dj}
hosts:
  h1: {user: h}
  h2: {}
groups:
  g: {hosts: [h1, h2], user: g, jump: gj}
`,
			host:   "h1",
			want:   map[string]string{"user": "h", "port": "2200", "jump": "gj"},
			source: map[string]string{"user": "host h1 (inv.yaml:4)", "port": "defaults (inv.yaml:2)", "jump": "group g (inv.yaml:7)"},
		},
		{
			name: "lifeline child group beats parent, whatever the order",
			file: "/i/inv.yaml",
			text: `
hosts: {h1: {}}
groups:
  child: {hosts: [h1], jump: c, vars: {x: child}}
  parent: {children: [child], jump: p, vars: {x: parent, y: parent}}
`,
			host: "h1",
			want: map[string]string{"jump": "c", "vars.x": "child", "vars.y": "parent"},
		},
		{
			name: "lifeline siblings: alphabetical, later wins",
			file: "/i/inv.yaml",
			text: `
hosts: {h1: {}}
groups:
  zeta: {hosts: [h1], user: z}
  alpha: {hosts: [h1], user: a}
`,
			host: "h1",
			want: map[string]string{"user": "z"},
		},
		{
			name: "lifeline ruleset: own, else closest group, else defaults",
			file: "/i/inv.yaml",
			text: `
defaults: {ruleset: d.nft}
hosts: {h1: {}, h2: {ruleset: /abs/h2.nft}, h3: {}}
groups:
  top: {children: [mid], ruleset: top.nft}
  mid: {hosts: [h1, h2]}
`,
			host: "h1",
			want: map[string]string{"ruleset": "/i/top.nft"},
		},
		{
			name: "lifeline ruleset from defaults",
			file: "/i/inv.yaml",
			text: "defaults: {ruleset: rules/d.nft}\nhosts: {h3: {}}\n",
			host: "h3",
			want: map[string]string{"ruleset": "/i/rules/d.nft"},
		},
		{
			name: "lifeline deeper group wins even when its parent is deeper elsewhere",
			file: "/i/inv.yaml",
			text: `
hosts: {h1: {}}
groups:
  a: {children: [b]}
  b: {children: [c]}
  c: {hosts: [h1], user: c}
  z: {hosts: [h1], user: z}
`,
			host: "h1",
			want: map[string]string{"user": "c"},
		},
		{
			name: "lifeline empty value clears an inherited one",
			file: "/i/inv.yaml",
			text: "defaults: {jump: bastion}\nhosts: {bastion: {jump: \"\"}}\n",
			host: "bastion",
			want: map[string]string{"jump": ""},
		},
		{
			name: "ini host vars beat group vars beat all:vars",
			file: "/i/hosts",
			text: `
[web]
w1 ansible_user=host
w2
[web:vars]
ansible_user=group
ansible_port=2222
[all:vars]
ansible_user=all
ansible_port=22
lifeline_backend=iptables-nft
`,
			host:   "w1",
			want:   map[string]string{"user": "host", "port": "2222", "vars.lifeline_backend": ""},
			source: map[string]string{"user": "ansible_user on host w1 (hosts:3)", "port": "ansible_port in group web:vars (hosts:7)"},
		},
		{
			name: "ini child group beats parent",
			file: "/i/hosts",
			text: `
[parent:children]
child
[parent:vars]
ansible_user=p
[child]
c1
[child:vars]
ansible_user=c
`,
			host: "c1",
			want: map[string]string{"user": "c"},
		},
		{
			name: "ini host's ssh args replace the group's, jump included",
			file: "/i/hosts",
			text: `
[web]
w1 ansible_ssh_common_args="-o StrictHostKeyChecking=yes"
[web:vars]
ansible_ssh_common_args=-J bastion
`,
			host: "w1",
			want: map[string]string{"jump": "", "vars.ansible_ssh_common_args": "-o StrictHostKeyChecking=yes"},
		},
		{
			name: "ini ansible_host wins over ansible_ssh_host, unknown vars stay vars",
			file: "/i/hosts",
			text: "h ansible_ssh_host=1.1.1.1 ansible_host=2.2.2.2 ansible_connection=ssh lifeline_ruleset=r.nft\n",
			host: "h",
			want: map[string]string{"address": "2.2.2.2", "vars.ansible_connection": "ssh", "ruleset": "/i/r.nft", "vars.ansible_ssh_host": ""},
		},
		{
			name: "ini host:port shorthand",
			file: "/i/hosts",
			text: "[g]\nh1:2022\n",
			host: "h1",
			want: map[string]string{"port": "2022"},
		},
		{
			name: "ansible yaml host vars beat group vars",
			file: "/i/inv.yml",
			text: `
all:
  vars: {ansible_user: all}
  children:
    g:
      vars: {ansible_user: g, ansible_port: 2200}
      hosts:
        h1: {ansible_user: h}
`,
			host:   "h1",
			want:   map[string]string{"user": "h", "port": "2200"},
			source: map[string]string{"port": "ansible_port in group g vars (inv.yml:6)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := mustParse(t, tt.file, tt.text)
			h := inv.Lookup(tt.host)
			if h == nil {
				t.Fatalf("no host %s", tt.host)
			}
			for k, want := range tt.want {
				if got := field(h, k); got != want {
					t.Errorf("%s = %q, want %q (sources: %v)", k, got, want, h.Sources)
				}
			}
			for k, want := range tt.source {
				if got := h.Sources[k]; got != want {
					t.Errorf("source of %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func field(h *Host, k string) string {
	switch k {
	case "address":
		return h.Address
	case "user":
		return h.User
	case "port":
		if h.Port == 0 {
			return ""
		}
		return strconv.Itoa(h.Port)
	case "jump":
		return h.Jump
	case "identity_file":
		return h.IdentityFile
	case "ruleset":
		return h.Ruleset
	}
	if n, ok := strings.CutPrefix(k, "vars."); ok {
		return h.Vars[n]
	}
	if n, ok := strings.CutPrefix(k, "labels."); ok {
		return h.Labels[n]
	}
	panic("unknown field " + k)
}

func TestRanges(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "web01", want: []string{"web01"}},
		{in: "web[01:03].example.com", want: []string{"web01.example.com", "web02.example.com", "web03.example.com"}},
		{in: "web[8:10]", want: []string{"web8", "web9", "web10"}},
		{in: "web[08:10]", want: []string{"web08", "web09", "web10"}},
		{in: "db-[a:c]", want: []string{"db-a", "db-b", "db-c"}},
		{in: "n[1:10:4]", want: []string{"n1", "n5", "n9"}},
		{in: "n[a:e:2]", want: []string{"na", "nc", "ne"}},
		{in: "n[:2]", want: []string{"n0", "n1", "n2"}},
		{in: "r[1:2]c[a:b]", want: []string{"r1ca", "r1cb", "r2ca", "r2cb"}},
		{in: "web[3:1]", wantErr: "begin 3 is after end 1"},
		{in: "web[01:100]", wantErr: "same width"},
		{in: "web[a:3]", wantErr: "both numbers or both single letters"},
		{in: "web[1:3:0]", wantErr: "not a positive number"},
		{in: "web[1:3", wantErr: "missing ]"},
		{in: "web[1]", wantErr: "not a range"},
		{in: "web[1:2:3:4]", wantErr: "too many colons"},
		{in: "web[0:9999999]", wantErr: "more than"},
		{in: "web[0:999][0:999]", wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := expandRange(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("expandRange(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("expandRange(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// sshArgsOf maps ansible_ssh_common_args = args for host h1 the way an
// inventory's would be, and returns the jump, the kept ProxyCommand, and
// the refusals joined.
func sshArgsOf(args string) (jump, proxy, refused string, err error) {
	b := newBuilder("/i/hosts", "ansible-ini")
	m := settings{"vars.ansible_ssh_common_args": {v: args, src: "in group all:vars (hosts:2)", pos: "/i/hosts:2"}}
	res, err := b.mapAnsible("h1", m)
	return m["jump"].v, m["proxy_command"].v, strings.Join(res.unsupported, "\n"), err
}

// TestSSHArgs: ansible_ssh_common_args read as ssh reads its command line
// (first value wins, -o takes one word); what lifeline cannot carry is
// refused by name, never dropped.
func TestSSHArgs(t *testing.T) {
	tests := []struct {
		args, want, proxy, refused, wantErr string
	}{
		{args: "-o ProxyJump=bastion", want: "bastion"},
		{args: "-o ProxyJump=jump@b1:2222,b2", want: "jump@b1:2222,b2"},
		{args: "-o ProxyJump bastion", refused: `"bastion" is not an option: ssh would take it as the destination`},
		{args: "-o 'ProxyJump bastion'", want: "bastion"},
		{args: "-oProxyJump=bastion", want: "bastion"},
		{args: "-o 'proxyjump = bastion'", want: "bastion"},
		{args: "-J bastion", want: "bastion"},
		{args: "-Jbastion", want: "bastion"},
		{args: "-J first -o ProxyJump=second", want: "first"},
		{args: "-o StrictHostKeyChecking=no -J u@b:22", want: "u@b:22"}, // carried as an option: remote notes what it costs
		{args: "-o UserKnownHostsFile=/dev/null"},                       // carried as an option
		{args: "-o ProxyJump=none"},
		{args: `-o ProxyCommand="ssh -W %h:%p -q user@bastion"`, want: "user@bastion"},
		{args: `-o 'ProxyCommand=ssh -W %h:%p -q user@bastion'`, want: "user@bastion"},
		{args: `-o ProxyCommand="ssh -q -p 2222 -l ops -W %h:%p bastion"`, want: "ops@bastion:2222"},
		{args: `-o ProxyCommand="/usr/bin/ssh bastion nc %h %p"`, want: "bastion"},
		{args: `-o ProxyCommand="ssh -J outer -W %h:%p inner"`, want: "outer,inner"},
		{args: `-o ProxyCommand="ssh -o Port=2200 -W %h:%p b"`, want: "b:2200"},
		{args: `-o ProxyCommand="ssh -o Port=2200 -i ~/.ssh/k -W %h:%p b"`, proxy: "ssh -o Port=2200 -i ~/.ssh/k -W %h:%p b"}, // run as written: the hop keeps its own key
		{args: `-o ProxyCommand="ssh -W %h:%p -q u@b -o StrictHostKeyChecking=no"`, proxy: "ssh -W %h:%p -q u@b -o StrictHostKeyChecking=no"},
		{args: "-o StrictHostKeyChecking=no"},
		{args: "-o StrictHostKeyChecking=yes"}, // lifeline's own policy: kept, not refused
		{args: "-C -o ControlMaster=auto -o ControlPersist=60s -q"},
		{args: ""},
		{args: `-o ProxyCommand="aws ssm start-session --target %h"`, proxy: "aws ssm start-session --target %h"},
		{args: `-o ProxyCommand="ssh bastion"`, proxy: "ssh bastion"},
		{args: `-o ProxyCommand="ssh -W %h:%p bastion"`, want: "bastion"},
		{args: `-o "ProxyCommand=ssh -W %h:%p bastion"`, want: "bastion"},
		{args: `-o ProxyCommand='ssh -W %h:%p "ops@bastion"'`, want: "ops@bastion"},
		{args: `-o ProxyCommand="ssh -o \"User=ops\" -W %h:%p bastion"`, want: "ops@bastion"},
		{args: `-o ProxyCommand=ssh\ -W\ %h:%p\ bastion`, want: "bastion"},
		{args: `-o ProxyJump=\'b1\'`, want: "'b1'"},
		{args: "-F other_config", refused: "-F other_config: give the ssh_config file with lifeline's -F"},
		{args: "-4", refused: "ssh flag -4"},
		{args: `-o "ProxyJump=b`, wantErr: "unterminated quote"},
		{args: `-o 'ProxyJump=b`, wantErr: "unterminated quote"},
		{args: `-o ProxyCommand="ssh -W %h:%p 'bastion"`, wantErr: `/i/hosts:2: host h1: ansible_ssh_common_args: unterminated quote in "ssh -W %h:%p 'bastion"`},
		{args: `-J b\`, wantErr: "ends with a backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			jump, proxy, refused, err := sshArgsOf(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if jump != tt.want || proxy != tt.proxy {
				t.Errorf("jump %q, proxy command %q; want %q, %q", jump, proxy, tt.want, tt.proxy)
			}
			if tt.refused == "" && refused != "" || !strings.Contains(refused, tt.refused) {
				t.Errorf("refused %q, want %q", refused, tt.refused)
			}
			if tt.refused != "" && !strings.HasPrefix(refused, "ansible_ssh_common_args (/i/hosts:2): ") {
				t.Errorf("refusal %q does not name the variable and where it is set", refused)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file, text, want string
	}{
		{"lifeline unknown top key", "/i/inv.yaml", "hosts: {}\nhost: {}\n", `/i/inv.yaml:2: unknown key "host" in the inventory (did you mean hosts?)`},
		{"lifeline unknown host key", "/i/inv.yaml", "hosts:\n  h1:\n    adress: 1.2.3.4\n", `/i/inv.yaml:3: unknown key "adress" in host h1 (did you mean address?)`},
		{"lifeline unknown defaults key", "/i/inv.yaml", "defaults: {address: x}\n", `/i/inv.yaml:1: unknown key "address" in defaults`},
		{"lifeline bad port", "/i/inv.yaml", "hosts:\n  h1: {port: 99999}\n", `/i/inv.yaml:2: host h1: port "99999" is not a number`},
		{"lifeline jump with spaces", "/i/inv.yaml", "hosts:\n  h1: {jump: b1 b2}\n", `/i/inv.yaml:2: host h1: jump "b1 b2" has spaces`},
		{"lifeline group lists unknown host", "/i/inv.yaml", "hosts: {h1: {}}\ngroups:\n  g:\n    hosts: [h1, h9]\n", `/i/inv.yaml:4: group g lists host h9, which is not under hosts`},
		{"lifeline group lists unknown child", "/i/inv.yaml", "groups:\n  g: {children: [x]}\n", `group g lists child group x, which is not under groups`},
		{"lifeline cycle", "/i/inv.yaml", "groups:\n  a: {children: [b]}\n  b: {children: [a]}\n", `group a is its own descendant (a -> b -> a)`},
		{"lifeline all is implicit", "/i/inv.yaml", "groups:\n  all: {}\n", `/i/inv.yaml:2: group all is implicit`},
		{"lifeline group named like a host", "/i/inv.yaml", "hosts: {x: {}}\ngroups:\n  x: {}\n", `/i/inv.yaml:3: group x has the name of a host`},
		{"lifeline duplicate host", "/i/inv.yaml", "hosts:\n  h1: {}\n  h1: {}\n", `/i/inv.yaml:3: key "h1" is already defined at line 2`},
		{"lifeline hosts is a list", "/i/inv.yaml", "hosts:\n  - h1\n", `/i/inv.yaml:2: hosts must be a mapping`},
		{"lifeline label is a list", "/i/inv.yaml", "hosts:\n  h1: {labels: {a: [1]}}\n", `/i/inv.yaml:2: host h1 label a must be a single value`},
		{"yaml syntax", "/i/inv.yaml", "hosts:\n  h1: {\n", `/i/inv.yaml:2: did not find expected node content`},
		{"yaml not a mapping", "/i/inv.yaml", "- a\n- b\n", `/i/inv.yaml:1: an inventory must be a mapping`},
		{"ini bad section", "/i/hosts", "[web]\nh1\n[web:hostvars]\n", `/i/hosts:3: unknown section kind "hostvars"`},
		{"ini bad host var", "/i/hosts", "[web]\nh1 ansible_user\n", `/i/hosts:2: expected key=value after host h1, got "ansible_user"`},
		{"ini bad group var", "/i/hosts", "[web:vars]\njust words\n", `/i/hosts:2: expected key=value in [web:vars]`},
		{"ini bad range", "/i/hosts", "[web]\nw[3:1]\n", `/i/hosts:2: host range "w[3:1]": begin 3 is after end 1`},
		{"ini bad port", "/i/hosts", "[web]\nw1 ansible_port=ssh\n", `/i/hosts:2: host w1: port "ssh" is not a number`},
		{"ini unterminated quote", "/i/hosts", "[web]\nw1 a=\"b\n", `/i/hosts:2: unterminated quote in "w1 a=\"b": close it`},
		{"ini cycle", "/i/hosts", "[a:children]\nb\n[b:children]\na\n", `is its own descendant`},
		{"ini self child", "/i/hosts", "[a:children]\na\n", `/i/hosts:2: group a lists itself as a child`},
		{"ini empty host name", "/i/hosts", "[g]\n''\n", `/i/hosts:2: empty host name`},
		{"ini group name with operator", "/i/hosts", "[!g]\n", `/i/hosts:1: group name "!g" cannot be targeted`},
		{"lifeline host name with comma", "/i/inv.yaml", "hosts:\n  \"a,b\": {}\n", `/i/inv.yaml:2: host name "a,b" cannot be targeted`},
		{"ansible yaml unknown key", "/i/inv.yml", "all:\n  children:\n    web:\n      host: {}\n", `/i/inv.yml:4: unknown key "host" in group web (did you mean hosts?)`},
		{"ansible yaml hosts is a list", "/i/inv.yml", "all:\n  hosts:\n    - h1\n", `/i/inv.yml:3: group all hosts must be a mapping`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.file, []byte(tt.text))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSniff(t *testing.T) {
	tests := []struct{ name, file, text, want string }{
		{"ini with section", "/i/x.yaml", "# c\n[web]\nh1\n", "ansible-ini"},
		{"ini without section", "/i/hosts", "h1 ansible_host=1.2.3.4\nh2\n", "ansible-ini"},
		{"ansible yaml with all", "/i/x", "all:\n  hosts: {h1: }\n", "ansible-yaml"},
		{"ansible yaml without all", "/i/x", "web:\n  hosts: {h1: }\ndb:\n", "ansible-yaml"},
		{"lifeline", "/i/x", "hosts: {h1: {}}\n", "lifeline"},
		{"lifeline only groups and a typo", "/i/x", "defaults: {user: x}\n", "lifeline"},
		{"empty", "/i/x", "", "lifeline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := mustParse(t, tt.file, tt.text)
			if inv.Format != tt.want {
				t.Errorf("format = %q, want %q", inv.Format, tt.want)
			}
		})
	}
}

func names(hs []*Host) string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return strings.Join(out, " ")
}

// TestSelectWarnings: as in Ansible, a term matching nothing is a warning
// when the target still selects hosts, in Ansible's words.
func TestSelectWarnings(t *testing.T) {
	inv := parseShared(t, "lifeline.yaml")
	tests := []struct {
		pattern, limit string
		want           []string
	}{
		{"web", "", nil},
		{"web:zzz", "", []string{"Could not match supplied host pattern, ignoring: zzz"}},
		{"web:zzz:db-*", "", []string{"Could not match supplied host pattern, ignoring: zzz", "Could not match supplied host pattern, ignoring: db-*"}},
		{"all", "web01:nope", []string{"Could not match supplied host pattern, ignoring: nope"}},
	}
	for _, tt := range tests {
		hosts, warnings, err := inv.SelectWarn(tt.pattern, tt.limit)
		if err != nil || len(hosts) == 0 || !reflect.DeepEqual(warnings, tt.want) {
			t.Errorf("SelectWarn(%q, %q) = %d hosts, %q, %v; want hosts and %q", tt.pattern, tt.limit, len(hosts), warnings, err, tt.want)
		}
	}
}

func TestSelect(t *testing.T) {
	inv := parseShared(t, "lifeline.yaml") // bastion web01 web02 db01 db02 h02; prod{web,db}
	tests := []struct {
		pattern, limit string
		want           string
		wantErr        string
		unknown        *UnknownError
	}{
		{pattern: "all", want: "bastion web01 web02 db01 db02 h02"},
		{pattern: "*", want: "bastion web01 web02 db01 db02 h02"},
		{pattern: "web", want: "web01 web02"},
		{pattern: "prod", want: "web01 web02 db01 db02"},
		{pattern: "db:web", want: "web01 web02 db01 db02"},
		{pattern: "db,web", want: "web01 web02 db01 db02"},
		{pattern: "db01,web01,db01", want: "web01 db01"},
		{pattern: "prod:&web", want: "web01 web02"},
		{pattern: "&web:prod", want: "web01 web02"},
		{pattern: "prod:!web01", want: "web02 db01 db02"},
		{pattern: "!prod", want: "bastion h02"},
		{pattern: "!web01:prod", want: "web02 db01 db02"},
		{pattern: "web*", want: "web01 web02"},
		{pattern: "*0[!3]", want: "web01 web02 db01 db02 h02"},
		{pattern: "d?", want: "db01 db02"}, // group db
		{pattern: "~db0[12]", want: "db01 db02"},
		{pattern: "~(web|db)01", want: "web01 db01"},
		{pattern: "ungrouped", want: "bastion h02"},
		{pattern: "prod[0]", want: "web01"},
		{pattern: "prod[-1]", want: "db02"},
		{pattern: "prod[1:2]", want: "web02 db01"},
		{pattern: "prod[2:]", want: "db01 db02"},
		{pattern: "prod[:0]", want: "web01"},
		{pattern: "web*[1]:db[0]", want: "web02 db01"},
		{pattern: "prod:!prod[0]", want: "web02 db01 db02"},
		{pattern: "web[2]", wantErr: `web selects 2 hosts, so "web[2]" picks none`},
		{pattern: "web[1:0]", wantErr: "picks none"},
		{pattern: "wbe[0]", unknown: &UnknownError{Name: "wbe", Suggestions: []string{"web"}}},
		{pattern: "web0[12]", unknown: &UnknownError{Name: "web0", Suggestions: []string{"web01", "web02", "web"}}}, // a subscript, as in Ansible
		{pattern: "web0[!3]", want: "web01 web02"},                                                                  // a glob class
		{pattern: "a*", wantErr: `"a*" matches no host or group`},                                                   // not all
		{pattern: "all", limit: "web02,db01", want: "web02 db01"},
		{pattern: "prod", limit: "!db", want: "web01 web02"},
		{pattern: "web", limit: "db", wantErr: `target "web --limit db" selects no hosts`},
		{pattern: "web:!web*", wantErr: `target "web:!web*" selects no hosts`},
		{pattern: "web3", unknown: &UnknownError{Name: "web3", Suggestions: []string{"web", "web01", "web02"}}},
		{pattern: "prd", unknown: &UnknownError{Name: "prd", Suggestions: []string{"prod"}}},
		{pattern: "web:zzz", want: "web01 web02"}, // Ansible: a warning, see TestSelectWarnings
		{pattern: "zzz:yyy*", unknown: &UnknownError{Name: "zzz"}},
		{pattern: "all", limit: "nope", wantErr: `--limit: unknown host or group "nope"`},
		{pattern: "db-*", wantErr: `"db-*" matches no host or group`},
		{pattern: "web:~x(", wantErr: "bad regular expression"},
		{pattern: "web:!", wantErr: "empty term"},
		{pattern: " ", wantErr: "empty target"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" limit "+tt.limit, func(t *testing.T) {
			got, err := inv.Select(tt.pattern, tt.limit)
			switch {
			case tt.unknown != nil:
				var ue *UnknownError
				if !errors.As(err, &ue) {
					t.Fatalf("error = %v, want *UnknownError", err)
				}
				if !reflect.DeepEqual(ue, tt.unknown) {
					t.Errorf("error = %#v, want %#v", ue, tt.unknown)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if names(got) != tt.want {
					t.Errorf("Select(%q, %q) = %s, want %s", tt.pattern, tt.limit, names(got), tt.want)
				}
			}
		})
	}
}

func TestSelectErrorsAreTyped(t *testing.T) {
	inv := parseShared(t, "lifeline.yaml")
	_, err := inv.Select("web3", "")
	if got, want := err.Error(), `unknown host or group "web3" (did you mean web, web01, web02?)`; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	_, err = inv.Select("zz*", "")
	var nm *NoMatchError
	if !errors.As(err, &nm) || nm.Term != "zz*" {
		t.Errorf("error = %#v, want *NoMatchError for zz*", err)
	}
}

func TestFromAliases(t *testing.T) {
	tests := []struct {
		pattern string
		want    []*Host
		wantErr string
	}{
		{pattern: "h1", want: []*Host{{Name: "h1"}}},
		{pattern: "h1,h2,h1", want: []*Host{{Name: "h1"}, {Name: "h2"}}},
		{pattern: "h1:h2", want: []*Host{{Name: "h1"}, {Name: "h2"}}},
		{pattern: "ops@h1", want: []*Host{{Name: "h1", User: "ops", Sources: map[string]string{"user": "target ops@h1"}}}},
		{pattern: "web*", wantErr: `"web*" needs an inventory: give -i FILE`},
		{pattern: "h1:!h2", wantErr: "needs an inventory"},
		{pattern: "all", wantErr: "needs an inventory"},
		{pattern: "@h1", wantErr: "is not user@host"},
		{pattern: " , ", wantErr: "empty target"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			got, err := FromAliases(tt.pattern)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FromAliases(%q) = %+v, want %+v", tt.pattern, got, tt.want)
			}
		})
	}
}

func TestGraphFrom(t *testing.T) {
	inv := parseShared(t, "lifeline.yaml")
	got, err := inv.GraphFrom("prod")
	if err != nil {
		t.Fatal(err)
	}
	want := "@prod:\n  |--@db:\n  |  |--db01\n  |  |--db02\n  |--@web:\n  |  |--web01\n  |  |--web02\n"
	if got != want {
		t.Errorf("GraphFrom(prod) =\n%s\nwant\n%s", got, want)
	}
	var ue *UnknownError
	if _, err := inv.GraphFrom("wbe"); !errors.As(err, &ue) || len(ue.Suggestions) == 0 || ue.Suggestions[0] != "web" {
		t.Errorf("GraphFrom(wbe) error = %v, want unknown with suggestion web", err)
	}
}

func FuzzParseINI(f *testing.F) {
	for _, s := range []string{
		"[web]\nweb[01:20].example.com ansible_user=deploy\n",
		"h ansible_host=1.2.3.4 # c\n[g:vars]\nk = 'v'\n[g:children]\nc\n",
		"[a:children]\nb\n[b:children]\na\n",
		"db-[a:c]:2222 x=\"y z\"\n[x]\n[y:vars]\n",
		"[w]\nw ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p b\"'\n",
		"[\n]\n=\n[:]\nh[:\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := parseINI("/f/hosts", data, nil)
		if err != nil {
			return
		}
		for _, h := range inv.Hosts {
			if h.Name == "" {
				t.Fatalf("host with empty name from %q", data)
			}
		}
		_ = inv.Graph()
	})
}

// BenchmarkLargeINI parses a 10,000-host inventory in 10 groups and selects
// from it, to keep both linear.
func BenchmarkLargeINI(b *testing.B) {
	var sb strings.Builder
	for g := 0; g < 10; g++ {
		sb.WriteString("[g" + strconv.Itoa(g) + "]\n")
		sb.WriteString("h" + strconv.Itoa(g) + "-[0000:0999] ansible_user=u\n")
		sb.WriteString("[prod:children]\ng" + strconv.Itoa(g) + "\n")
	}
	data := []byte(sb.String())
	for b.Loop() {
		inv, err := Parse("/b/hosts", data)
		if err != nil {
			b.Fatal(err)
		}
		hs, err := inv.Select("prod:!g3:&h*", "~h[0-4]")
		if err != nil || len(hs) != 4000 {
			b.Fatalf("selected %d hosts, err %v", len(hs), err)
		}
	}
}
