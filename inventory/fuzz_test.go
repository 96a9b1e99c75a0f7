package inventory

import "testing"

// FuzzParse: lifeline YAML and Ansible YAML inventories never panic, and
// what loads has named hosts and selects.
func FuzzParse(f *testing.F) {
	f.Add("inventory.yaml", []byte("hosts:\n  web01: {address: 10.0.0.1, port: 22, labels: {a: b}}\ngroups:\n  web: {hosts: [web01], children: [x]}\n"))
	f.Add("hosts.yml", []byte("all:\n  children:\n    web:\n      hosts:\n        web[01:03]:\n          ansible_port: 2222\n      vars: {ansible_user: deploy}\n"))
	f.Add("hosts.yml", []byte("all: {hosts: {a: null}, children: {b: {children: {a: {}}}}}\n"))
	f.Add("inventory.yaml", []byte("defaults: {user: root}\nhosts: {h: {jump: 'a,b', backend: nft}}\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if name != "inventory.yaml" && name != "hosts.yml" {
			name = "inventory.yaml"
		}
		inv, err := Parse("/f/"+name, data)
		if err != nil {
			return
		}
		for _, h := range inv.Hosts {
			if h.Name == "" {
				t.Fatalf("a host without a name from %q", data)
			}
		}
		_, _ = inv.Select("all", "")
		_ = inv.Graph()
	})
}

// FuzzExpandRange: host ranges never panic and stay bounded.
func FuzzExpandRange(f *testing.F) {
	for _, s := range []string{"web[01:20]", "db-[a:c]-[1:3]", "x[1:10:3]", "[", "a[9:1]", "h[001:100]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = expandRange(s)
	})
}

// FuzzSelect: target patterns never panic on a small inventory.
func FuzzSelect(f *testing.F) {
	inv, err := Parse("/f/inventory.yaml", []byte("hosts:\n  web01: {}\n  web02: {}\n  db01: {}\ngroups:\n  web: {hosts: [web01, web02]}\n  prod: {children: [web], hosts: [db01]}\n"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"all", "web:&prod", "web:!web02", "web*", "~db\\d+", "prod[0:1]", ":::", "!", "&"} {
		f.Add(s, "")
	}
	f.Add("all", "web0[12]")
	f.Fuzz(func(t *testing.T, pattern, limit string) {
		_, _ = inv.Select(pattern, limit)
	})
}
