//go:build linux

package lab

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestClientFiles pins the inventory, ssh_config and known_hosts a lab of
// each shape writes (1 host, 2 hosts, 3 with a jump-only host, 4 mixed).
func TestClientFiles(t *testing.T) {
	for _, tc := range []struct {
		hosts   int
		backend string
	}{
		{1, BackendNft},
		{2, BackendIptablesLegacy},
		{3, BackendMixed},
		{4, BackendMixed},
	} {
		name := fmt.Sprintf("%d-%s", tc.hosts, tc.backend)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := &Lab{
				ID: "a1b2c3", Dir: dir,
				SSHConfig: filepath.Join(dir, "ssh_config"), KnownHosts: filepath.Join(dir, "known_hosts"),
				Key: filepath.Join(dir, "id_ed25519"), Inventory: filepath.Join(dir, "inventory.yaml"),
			}
			l.planHosts(Options{Hosts: tc.hosts, Backend: tc.backend},
				netip.MustParsePrefix("198.18.161.0/24"), netip.MustParsePrefix("198.19.161.0/24"), "fda1:b2c3:0")
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
				golden := filepath.Join("testdata", name, f)
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
					t.Fatalf("%v (hint: go test -run TestClientFiles -update)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from %s:\n%s", f, golden, got)
				}
			}
		})
	}
}

func TestPlanHosts(t *testing.T) {
	front, back := netip.MustParsePrefix("198.18.7.0/24"), netip.MustParsePrefix("198.19.7.0/24")
	for _, tc := range []struct {
		hosts                  int
		last, lastUser, jump   string
		lastPort, backAttached int
	}{
		{1, "h01", "root", "", 22, 0},
		{2, "h02", "ops", "", 22, 0},
		{3, "h03", "root", "h01", 2222, 3},
		{100, "h100", "root", "h001", 2222, 3},
		{MaxHosts, "h250", "root", "h001", 2222, 3},
	} {
		t.Run(fmt.Sprint(tc.hosts), func(t *testing.T) {
			l := &Lab{ID: "abcdef", Dir: "/x"}
			l.planHosts(Options{Hosts: tc.hosts, Backend: BackendMixed}, front, back, "fdab:cdef:0")
			if len(l.Hosts) != tc.hosts {
				t.Fatalf("%d hosts, want %d", len(l.Hosts), tc.hosts)
			}
			last := l.Hosts[len(l.Hosts)-1]
			if last.Name != tc.last || last.User != tc.lastUser || last.Jump != tc.jump || last.Port != tc.lastPort {
				t.Errorf("last host %+v", last)
			}
			if tc.jump != "" && l.Host(tc.jump) == nil {
				t.Errorf("jump host %s not in lab", tc.jump)
			}
			attached, seen := 0, map[string]bool{}
			for i, h := range l.Hosts {
				if h.BackAddress != "" {
					attached++
				}
				if want := []string{BackendNft, BackendIptablesNft, BackendIptablesLegacy}[i%3]; h.Backend != want {
					t.Errorf("%s backend %s, want %s", h.Name, h.Backend, want)
				}
				if seen[h.Address] || !netip.MustParseAddr(h.Address).IsValid() {
					t.Errorf("%s address %s duplicate or invalid", h.Name, h.Address)
				}
				seen[h.Address] = true
				if len(vethName("abcdef", i+1)) > 15 || len(h.Netns) > 64 {
					t.Errorf("%s: interface or netns name too long", h.Name)
				}
			}
			if attached != tc.backAttached {
				t.Errorf("%d hosts on the back network, want %d", attached, tc.backAttached)
			}
		})
	}
}

func TestLabID(t *testing.T) {
	a, _ := LabID("/tmp/lab")
	b, _ := LabID("/tmp/lab/")
	c, _ := LabID("/tmp/lab2")
	if a != b || a == c || len(a) != 6 {
		t.Errorf("LabID: %q %q %q", a, b, c)
	}
}
