//go:build linux

package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientFilesSystemd pins the client files of a lab with systemd hosts:
// they follow the other hosts on the front network, use nft and root, and
// carry the inventory label init: systemd.
func TestClientFilesSystemd(t *testing.T) {
	for _, tc := range []struct {
		name           string
		hosts, systemd int
	}{
		{"1-nft-systemd2", 1, 2},
		{"3-mixed-systemd1", 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := &Lab{
				ID: "a1b2c3", Dir: dir,
				SSHConfig: filepath.Join(dir, "ssh_config"), KnownHosts: filepath.Join(dir, "known_hosts"),
				Key: filepath.Join(dir, "id_ed25519"), Inventory: filepath.Join(dir, "inventory.yaml"),
			}
			backend := BackendNft
			if tc.hosts == 3 {
				backend = BackendMixed
			}
			l.planHosts(Options{Hosts: tc.hosts, Backend: backend, Systemd: tc.systemd},
				netip.MustParsePrefix("198.18.161.0/24"), netip.MustParsePrefix("198.19.161.0/24"), "fda1:b2c3:0")
			if got := len(l.Hosts); got != tc.hosts+tc.systemd {
				t.Fatalf("planned %d hosts, want %d", got, tc.hosts+tc.systemd)
			}
			addrs := map[string]string{}
			for _, h := range l.Hosts[tc.hosts:] {
				if h.Init != InitSystemd || h.Backend != BackendNft || h.User != "root" || h.Jump != "" || h.Port != 22 {
					t.Errorf("systemd host %+v: want init systemd, nft, root, port 22, no jump", h)
				}
			}
			for _, h := range l.Hosts {
				if h.Address == "" {
					t.Fatalf("%s has no address", h.Name)
				}
				if other, dup := addrs[h.Address]; dup {
					t.Errorf("%s and %s share %s", h.Name, other, h.Address)
				}
				addrs[h.Address] = h.Name
			}
			keys := map[string]hostKeys{}
			for _, h := range l.Hosts {
				keys[h.Name] = hostKeys{"ssh-ed25519 KEY-OF-" + h.Name}
			}
			if err := l.writeClientFiles(keys); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"inventory.yaml", "ssh_config", "known_hosts"} {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				got := strings.ReplaceAll(string(b), dir, "DIR")
				golden := filepath.Join("testdata", tc.name, f)
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (hint: go test -run TestClientFilesSystemd -update)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from %s:\n%s", f, golden, got)
				}
			}
		})
	}
}

// TestRootfsKey: the cache key changes with the package list.
func TestRootfsKey(t *testing.T) {
	k1 := rootfsKey()
	if len(k1) != 12 || rootfsKey() != k1 {
		t.Fatalf("rootfsKey %q: want 12 stable hex digits", k1)
	}
	saved := rootfsPackages
	t.Cleanup(func() { rootfsPackages = saved })
	rootfsPackages = append(append([]string{}, saved...), "curl")
	if rootfsKey() == k1 {
		t.Fatal("rootfsKey ignores the package list")
	}
}
