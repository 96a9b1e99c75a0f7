package remote_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/remote"
)

// connHash is a %C value (sha1 hex).
var connHash = regexp.MustCompile(`[0-9a-f]{40}`)

var update = flag.Bool("update", false, "rewrite golden files")

// TestResolveGolden resolves the hosts named on each config's first line
// ("# hosts: a b") and compares the HostConfigs with the .golden JSON.
// TESTDATA in a config stands for the testdata folder, HOMEDIR for $HOME
// (a fresh folder); the passwd home, $HOME, the user and the machine's
// name are written as $HOME, $TMPHOME, $USER, $HOSTNAME and $SHORTHOST in the golden
// files, %C hashes as $HASH. The resolver hook reads testdata/ssh_config/hosts.
func TestResolveGolden(t *testing.T) {
	confs, err := filepath.Glob("testdata/ssh_config/*.conf")
	if err != nil || len(confs) == 0 {
		t.Fatalf("no configs in testdata/ssh_config: %v", err)
	}
	hostsFile, _ := filepath.Abs("testdata/ssh_config/hosts")
	lookup := hostsLookup(t, hostsFile)
	pw, _ := user.Current()
	t.Setenv("LIFELINE_TEST_KEYS", "/srv/keys")
	t.Setenv("SSH_AUTH_SOCK", "")
	for _, conf := range confs {
		name := strings.TrimSuffix(filepath.Base(conf), ".conf")
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			copyTree(t, "testdata/ssh_config/home", home)
			abs, _ := filepath.Abs("testdata/ssh_config")
			p, hosts, fails := writeConf(t, conf, home)
			d := remote.NewDialer(remote.Options{ConfigFiles: []string{p}, Lookup: lookup})
			got := map[string]any{}
			for _, h := range hosts {
				hc, err := d.Resolve(remote.Target{Name: h})
				if err != nil {
					t.Fatalf("Resolve(%s): %v", h, err)
				}
				got[h] = hc
			}
			for _, h := range fails {
				_, err := d.Resolve(remote.Target{Name: h})
				if err == nil {
					t.Fatalf("Resolve(%s) succeeded, want an error", h)
				}
				got[h] = map[string]string{"error": strings.ReplaceAll(err.Error(), p, "CONFIG")}
			}
			host, _ := os.Hostname()
			b, _ := json.MarshalIndent(got, "", "  ")
			b = bytes.ReplaceAll(b, []byte(abs), []byte("TESTDATA"))
			b = bytes.ReplaceAll(b, []byte(home), []byte("$TMPHOME"))
			b = bytes.ReplaceAll(b, []byte(pw.HomeDir+"/"), []byte("$HOME/"))
			b = bytes.ReplaceAll(b, []byte(`"`+pw.Username+`"`), []byte(`"$USER"`))
			b = bytes.ReplaceAll(b, []byte("_"+pw.Username+"_"), []byte("_$USER_"))
			// %l and %L, where the configs use them (tokens_all, agents)
			short, _, _ := strings.Cut(host, ".")
			b = bytes.ReplaceAll(b, []byte("_"+host+"_"+short+"_"), []byte("_$HOSTNAME_$SHORTHOST_"))
			b = bytes.ReplaceAll(b, []byte("-"+short+`"`), []byte(`-$SHORTHOST"`))
			b = connHash.ReplaceAllLiteral(b, []byte("$HASH")) // %C depends on the machine; TestPreviewMatchesSSHG checks it
			b = append(b, '\n')
			golden := strings.TrimSuffix(conf, ".conf") + ".golden"
			if *update {
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestResolveGolden -update)", err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("Resolve differs from %s (rerun with -update if intended):\n%s", golden, lineDiff(string(want), string(b)))
			}
		})
	}
}

func lineDiff(want, got string) string {
	var out strings.Builder
	ws := bufio.NewScanner(strings.NewReader(want))
	gs := bufio.NewScanner(strings.NewReader(got))
	for {
		wok, gok := ws.Scan(), gs.Scan()
		if !wok && !gok {
			break
		}
		if ws.Text() != gs.Text() {
			out.WriteString("- " + ws.Text() + "\n+ " + gs.Text() + "\n")
		}
	}
	return out.String()
}

func TestTargetOverrides(t *testing.T) {
	p := writeConfig(t, "Host h1\n  HostName 10.0.0.1\n  User a\n  Port 2222\n  ProxyJump j1\n")
	d := remote.NewDialer(remote.Options{ConfigFiles: []string{p}, KnownHosts: []string{"/kh"}, AcceptNew: true})
	hc, err := d.Resolve(remote.Target{Name: "h1", Address: "10.9.9.9", User: "b", Port: 22, Jump: "none", IdentityFile: "/k"})
	if err != nil {
		t.Fatal(err)
	}
	if hc.HostName != "10.9.9.9" || hc.User != "b" || hc.Port != 22 || len(hc.ProxyJump) != 0 || hc.IdentityFiles[0] != "/k" ||
		hc.UserKnownHostsFiles[0] != "/kh" || hc.StrictHostKeyChecking != "accept-new" {
		t.Fatalf("overrides not applied: %+v", hc)
	}
}
