package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve feeds arbitrary ssh_config text to the resolver: never a
// panic, never a hang, never a command run (Match exec is stubbed, DNS
// too). Seeds: every config of the ssh -G oracle.
func FuzzResolve(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/ssh_config/*.conf")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(string(b), "web")
		}
	}
	f.Add("Host *\n  ProxyCommand ssh -W %h:%p %r@b\nMatch canonical final host x\n  User %u%%\n", "x")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, config, alias string) {
		if alias == "" || strings.ContainsAny(alias, "\x00\n") || len(config) > 1<<16 {
			return
		}
		p := filepath.Join(dir, "config")
		if err := os.WriteFile(p, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		d := NewDialer(Options{ConfigFiles: []string{p},
			MatchExec: func(string) (bool, error) { return false, nil },
			Lookup:    func(string) (string, bool) { return "", false }})
		hc, err := d.Resolve(Target{Name: alias})
		if err == nil && (hc.HostName == "" || hc.Port <= 0 || hc.Port > 65535) {
			t.Fatalf("resolved without a host name or with port %d: %+v", hc.Port, hc)
		}
	})
}
