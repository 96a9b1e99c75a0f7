package inventory

import (
	"io/fs"
	"reflect"
	"testing"
	"testing/fstest"
)

// TestBackendWarnings: a backend setting (backend: in lifeline's YAML,
// lifeline_backend in Ansible's) still loads, whatever its value, is
// dropped, and gives one warning naming the file, the line and the host or
// group that sets it.
func TestBackendWarnings(t *testing.T) {
	const unread = "is not read: lifeline detects each host's firewall backend itself; remove it"
	tests := []struct {
		name, file, text string
		vars             fstest.MapFS // host_vars/ and group_vars/, when set
		want             []string
	}{
		{
			name: "lifeline without backend",
			file: "/i/inv.yaml",
			text: "defaults: {user: root}\nhosts:\n  h1: {}\n",
		},
		{
			name: "lifeline defaults",
			file: "/i/inv.yaml",
			text: "defaults:\n  backend: nft\nhosts:\n  h1: {}\n",
			want: []string{"/i/inv.yaml:2: defaults: backend: " + unread},
		},
		{
			name: "lifeline host with a value that was never valid",
			file: "/i/inv.yaml",
			text: "hosts:\n  h1: {backend: pf}\n",
			want: []string{"/i/inv.yaml:2: host h1: backend: " + unread},
		},
		{
			name: "lifeline group with a list",
			file: "/i/inv.yaml",
			text: "hosts:\n  h1: {}\ngroups:\n  web:\n    hosts: [h1]\n    backend: [nft, iptables-nft]\n",
			want: []string{"/i/inv.yaml:6: group web: backend: " + unread},
		},
		{
			name: "lifeline defaults, then groups, then hosts",
			file: "/i/inv.yaml",
			text: "hosts:\n  h2: {backend: nft}\n  h1: {backend: \"\"}\ngroups:\n  web: {hosts: [h1], backend: nft}\ndefaults: {backend: iptables-legacy}\n",
			want: []string{
				"/i/inv.yaml:6: defaults: backend: " + unread,
				"/i/inv.yaml:5: group web: backend: " + unread,
				"/i/inv.yaml:2: host h2: backend: " + unread,
				"/i/inv.yaml:3: host h1: backend: " + unread,
			},
		},
		{
			name: "lifeline vars lifeline_backend is only a var",
			file: "/i/inv.yaml",
			text: "hosts:\n  h1: {vars: {lifeline_backend: nft}}\n",
		},
		{
			name: "ini all vars",
			file: "/i/hosts",
			text: "[web]\nw1\n[all:vars]\nlifeline_backend=nft\n",
			want: []string{"/i/hosts:4: group all: lifeline_backend " + unread},
		},
		{
			name: "ini host range",
			file: "/i/hosts",
			text: "[db]\ndb-[a:b] lifeline_backend=iptables-legacy ansible_user=dba\n",
			want: []string{
				"/i/hosts:2: host db-a: lifeline_backend " + unread,
				"/i/hosts:2: host db-b: lifeline_backend " + unread,
			},
		},
		{
			name: "ansible yaml group and host",
			file: "/i/inv.yml",
			text: "all:\n  children:\n    web:\n      vars: {lifeline_backend: nft}\n      hosts:\n        w1: {lifeline_backend: ipfw}\n",
			want: []string{
				"/i/inv.yml:4: group web: lifeline_backend " + unread,
				"/i/inv.yml:6: host w1: lifeline_backend " + unread,
			},
		},
		{
			name: "host_vars file",
			file: "/i/hosts",
			text: "[web]\nw1\n",
			vars: fstest.MapFS{"host_vars/w1.yml": {Data: []byte("ansible_user: u\nlifeline_backend: nft\n")}},
			want: []string{"/i/host_vars/w1.yml:2: host w1: lifeline_backend " + unread},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vars fs.FS // nil: no vars folders
			if tt.vars != nil {
				vars = tt.vars
			}
			inv, err := parse(tt.file, []byte(tt.text), vars)
			if err != nil {
				t.Fatalf("parse: %v, want it to load with warnings", err)
			}
			if !reflect.DeepEqual(inv.Warnings, tt.want) {
				t.Errorf("Warnings = %q\nwant %q", inv.Warnings, tt.want)
			}
			// Nothing of the setting is left: not as a setting or its source,
			// nor, from an Ansible inventory, as a var.
			ansible := inv.Format != "lifeline"
			for _, h := range inv.Hosts {
				if _, ok := h.Sources["backend"]; ok {
					t.Errorf("host %s keeps the backend setting: %+v", h.Name, h)
				}
				if _, ok := h.Vars["lifeline_backend"]; ok && ansible {
					t.Errorf("host %s keeps lifeline_backend in Vars", h.Name)
				}
			}
			for _, g := range inv.Groups {
				if _, ok := g.Vars["lifeline_backend"]; ok && ansible {
					t.Errorf("group %s keeps lifeline_backend in Vars", g.Name)
				}
			}
		})
	}
}
