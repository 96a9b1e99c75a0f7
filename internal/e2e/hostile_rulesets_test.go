package e2e

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestHostileRulesets (issue #14, part 3): a ruleset that is empty, binary,
// 50 MB, both formats in one file, the wrong format for the host's backend,
// or valid syntax that refers to a chain or set that does not exist is
// refused before anything changes — on every backend — with an error that
// names the host (when a host refused it) and the line (when there is
// one). Checked on the host: the live ruleset is byte-for-byte the same and
// nothing is left armed.
func TestHostileRulesets(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bin := make([]byte, 4096)
	if _, err := rand.Read(bin); err != nil {
		t.Fatal(err)
	}
	bin[10] = 0
	big := make([]byte, 50<<20)
	for i := range big {
		big[i] = '#'
		if i%64 == 63 {
			big[i] = '\n'
		}
	}
	nftGood, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "rulesets", "good.nft"))
	if err != nil {
		t.Fatal(err)
	}
	iptGood, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "rulesets", "good.v4"))
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name, file string
		// want: all of these in the error (host side: the host's name is
		// added by the check below); line: the error points at a line
		want []string
		line bool
		host bool // refused by the host (else by the workstation, before any connection)
	}
	common := []tc{
		{name: "empty", file: write("empty.nft", []byte("\n# nothing here\n\n")), want: []string{"empty"}},
		{name: "binary", file: write("binary.rules", bin), want: []string{"binary"}},
		{name: "50MB", file: write("big.v4", big), want: []string{"limit"}},
		{name: "mixed", file: write("mixed.rules", append(append([]byte{}, nftGood...), iptGood...)), want: []string{"format"}},
	}
	nftCases := []tc{
		{name: "wrong-format", file: filepath.Join(repoRoot, "testdata", "rulesets", "good.v4"), want: []string{"iptables"}, host: true},
		{name: "missing-chain", file: write("nochain.nft", []byte("table inet filter\ndelete table inet filter\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t\tjump no_such_chain\n\t}\n}\n")), want: []string{"no_such_chain"}, line: true, host: true},
		{name: "missing-set", file: write("noset.nft", []byte("table inet filter\ndelete table inet filter\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t\tip saddr @no_such_set drop\n\t}\n}\n")), want: []string{"no_such_set"}, line: true, host: true},
	}
	iptCases := []tc{
		{name: "wrong-format", file: filepath.Join(repoRoot, "testdata", "rulesets", "good.nft"), want: []string{"nft"}, host: true},
		{name: "missing-chain", file: write("nochain.v4", []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -j NO_SUCH_CHAIN\nCOMMIT\n")), want: []string{"NO_SUCH_CHAIN"}, line: true, host: true},
		{name: "missing-set", file: write("noset.v4", []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -m set --match-set no_such_set src -j DROP\nCOMMIT\n")), want: []string{"no_such_set"}, line: true, host: true},
	}
	for _, h := range l.Hosts {
		if h.Jump != "" {
			continue
		}
		h := h
		cases := append(append([]tc{}, common...), iptCases...)
		if h.Backend == lab.BackendNft {
			cases = append(append([]tc{}, common...), nftCases...)
		}
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				before := liveRuleset(t, l, h.Name)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				out, stderr, code := cli(t, ctx, "-F", l.SSHConfig, "apply", h.Name, c.file, "--confirm-timeout=20s")
				cancel()
				msg := out + stderr
				if code == 0 {
					t.Fatalf("%s %s: exit 0, want a refusal:\n%s", h.Name, c.name, msg)
				}
				for _, w := range c.want {
					if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
						t.Errorf("%s %s: the error does not say %q:\n%s", h.Name, c.name, w, msg)
					}
				}
				if c.host && !strings.Contains(msg, h.Name) {
					t.Errorf("%s %s: the error does not name the host:\n%s", h.Name, c.name, msg)
				}
				if c.line && !strings.Contains(msg, "line") {
					t.Errorf("%s %s: the error does not point at a line:\n%s", h.Name, c.name, msg)
				}
				if after := liveRuleset(t, l, h.Name); after != before {
					t.Fatalf("%s %s: the live ruleset changed after a refusal:\nbefore:\n%s\nafter:\n%s", h.Name, c.name, before, after)
				}
				if a := armed(t, l, h.Name); a != "" {
					t.Fatalf("%s %s: left armed after a refusal: %s", h.Name, c.name, a)
				}
			}
		})
	}
}
