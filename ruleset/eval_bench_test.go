package ruleset

import (
	"os"
	"testing"
)

// BenchmarkEvaluateKubeProxy: one SSH path through kube-proxy's 20,000
// rules (iptables and nft renderings).
func BenchmarkEvaluateKubeProxy(b *testing.B) {
	for _, c := range []struct {
		name string
		rs   func() *Ruleset
	}{
		{"iptables", func() *Ruleset {
			rs, err := ParseIptablesSave(SourceIptablesNft, readFileB(b, "testdata/kp20-ipt.save"))
			if err != nil {
				b.Fatal(err)
			}
			return rs
		}},
		{"nft", func() *Ruleset {
			rs, err := ParseNftJSON(readFileB(b, "testdata/kp20-nft.json"))
			if err != nil {
				b.Fatal(err)
			}
			return rs
		}},
	} {
		rs := c.rs()
		b.Run(c.name, func(b *testing.B) {
			p := sshIn("192.0.2.5", 22, "new", "eth0")
			d := EvaluateSSH(rs, p)
			b.Logf("%s", d)
			for i := 0; i < b.N; i++ {
				EvaluateSSH(rs, p)
			}
		})
	}
}

func readFileB(b *testing.B, p string) []byte {
	b.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
