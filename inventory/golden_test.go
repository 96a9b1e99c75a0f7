package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The shared test inventories, parsed as if they lived in /inv so that the
// absolute paths in the golden files do not depend on the checkout.
var sharedInventories = []string{"ansible.ini", "ansible.yaml", "lifeline.yaml"}

func parseShared(t *testing.T, name string) *Inventory {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "inventories", name))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := Parse("/inv/"+name, data)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return inv
}

func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", golden)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./inventory -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what was parsed (go test ./inventory -update rewrites it after review)\ngot:\n%s", path, got)
	}
}

func TestGolden(t *testing.T) {
	formats := map[string]string{"ansible.ini": "ansible-ini", "ansible.yaml": "ansible-yaml", "lifeline.yaml": "lifeline"}
	for _, name := range sharedInventories {
		t.Run(name, func(t *testing.T) {
			inv := parseShared(t, name)
			if inv.Format != formats[name] {
				t.Errorf("format = %q, want %q", inv.Format, formats[name])
			}
			got, err := json.MarshalIndent(inv, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name+".golden", append(got, '\n'))
			checkGolden(t, name+".graph.golden", []byte(inv.Graph()))
		})
	}
}

// The INI and YAML test inventories describe the same fleet: both parsers
// must resolve it to the same settings.
func TestAnsibleFormatsAgree(t *testing.T) {
	ini := parseShared(t, "ansible.ini")
	yml := parseShared(t, "ansible.yaml")
	strip := func(hs []*Host) []Host {
		var out []Host
		for _, h := range hs {
			c := *h
			c.Sources, c.Vars = nil, nil
			out = append(out, c)
		}
		return out
	}
	a, _ := json.MarshalIndent(strip(ini.Hosts), "", " ")
	b, _ := json.MarshalIndent(strip(yml.Hosts), "", " ")
	if !bytes.Equal(a, b) {
		t.Errorf("ansible.ini and ansible.yaml resolve differently\nini:\n%s\nyaml:\n%s", a, b)
	}
	if len(ini.Hosts) != 12 {
		t.Errorf("ansible.ini has %d hosts, want 12 (ranges expanded)", len(ini.Hosts))
	}
}

func TestLoadResolvesPathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inv.yaml")
	data := []byte("ssh_config: ssh/config\nknown_hosts: /etc/kh\nhosts:\n  h1: {ruleset: r/h1.nft, identity_file: k/id}\n")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// A relative path to Load must still give absolute paths.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := Load(rel)
	if err != nil {
		t.Fatal(err)
	}
	h := inv.Lookup("h1")
	if h == nil {
		t.Fatal("Lookup(h1) = nil")
	}
	checks := map[string][2]string{
		"ssh_config":    {inv.SSHConfig, filepath.Join(dir, "ssh/config")},
		"known_hosts":   {inv.KnownHosts, "/etc/kh"},
		"ruleset":       {h.Ruleset, filepath.Join(dir, "r/h1.nft")},
		"identity_file": {h.IdentityFile, filepath.Join(dir, "k/id")},
		"path":          {inv.Path, path},
	}
	for k, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", k, c[0], c[1])
		}
	}
	if inv.Lookup("nope") != nil {
		t.Error("Lookup(nope) != nil")
	}
	if _, err := Load(dir); err == nil {
		t.Error("Load(folder) succeeded, want an error")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
}
