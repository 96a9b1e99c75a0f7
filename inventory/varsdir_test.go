package inventory

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestVarDirs(t *testing.T) {
	ini := []byte("[web]\nw1 ansible_port=22\nw2\n[web:vars]\nansible_user=ini\n[all:vars]\nenv=ini\n")
	fsys := fstest.MapFS{
		"group_vars/web.yml":        {Data: []byte("ansible_user: fromfile\nlifeline_ruleset: rules/web.nft\n")},
		"group_vars/all":            {Data: []byte("env: all-file\n")},
		"host_vars/w1/10-conn.yaml": {Data: []byte("ansible_port: 2201\nx: first\n")},
		"host_vars/w1/20-more.yml":  {Data: []byte("x: second\n")},
		"host_vars/w1/.hidden.yml":  {Data: []byte("x: hidden\n")},
		"host_vars/w2.json":         {Data: []byte(`{"ansible_host": "10.0.0.2", "tags": ["a", "b"]}`)},
		"host_vars/w2.yml":          {Data: []byte("$ANSIBLE_VAULT;1.1;AES256\n6162\n")},
	}
	inv, err := parse("/inv/hosts", ini, fsys)
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := inv.Lookup("w1"), inv.Lookup("w2")
	checks := []struct{ got, want string }{
		{w1.User, "fromfile"},
		{w1.Sources["user"], "ansible_user in group_vars/web.yml:1"},
		{w1.Ruleset, "/inv/rules/web.nft"},
		{field(w1, "port"), "2201"},
		{w1.Sources["port"], "ansible_port in host_vars/w1/10-conn.yaml:1"},
		{w1.Vars["x"], "second"},
		{w1.Vars["env"], "all-file"},
		{w2.Address, "10.0.0.2"},
		{w2.Vars["tags"], `["a","b"]`},
		{w2.Sources["address"], "ansible_host in host_vars/w2.json:1"},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("check %d: got %q, want %q", i, c.got, c.want)
		}
	}
	// Parse (pure) ignores the folders.
	inv, err = Parse("/inv/hosts", ini)
	if err != nil {
		t.Fatal(err)
	}
	if u := inv.Lookup("w1").User; u != "ini" {
		t.Errorf("Parse: user = %q, want ini", u)
	}
}

func TestVarDirsErrors(t *testing.T) {
	fsys := fstest.MapFS{"group_vars/web.yml": {Data: []byte("ok: 1\nbad: [\n")}}
	_, err := parse("/inv/hosts", []byte("[web]\nw1\n"), fsys)
	if err == nil || !strings.Contains(err.Error(), "/inv/group_vars/web.yml:2:") {
		t.Errorf("error = %v, want one naming /inv/group_vars/web.yml:2", err)
	}
	fsys = fstest.MapFS{"host_vars/w1.yml": {Data: []byte("- a list\n")}}
	_, err = parse("/inv/hosts", []byte("[web]\nw1\n"), fsys)
	if err == nil || !strings.Contains(err.Error(), "/inv/host_vars/w1.yml:1: a vars file must be a mapping") {
		t.Errorf("error = %v, want a mapping error naming the file", err)
	}
}
