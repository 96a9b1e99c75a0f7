package wire

import (
	"encoding/json"
	"testing"
)

// FuzzRequestDecode: the helper's request decoder and the change checks
// never panic on any input, and a request that passes the checks encodes
// and decodes to the same request.
func FuzzRequestDecode(f *testing.F) {
	f.Add([]byte(`{"version":2,"tx_id":"t1","begin":{"confirm_timeout":"60s","operator":{"addr":"192.0.2.1","ssh_port":22},"change":{"kind":"ruleset","ruleset":{"format":"nft","text":"table inet f {}\n"}}}}`))
	f.Add([]byte(`{"version":2,"diff":{"kind":"guarded","protect":["/etc/x","/etc/../y"],"on_revert":[""]}}`))
	f.Add([]byte(`{"extend":{"confirm_timeout":"-1h"},"begin":{"change":{"kind":"restore","restore":{"to":"last-good"}}}}`))
	f.Add([]byte(`{"begin":{"confirm_timeout":"1e400h"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if json.Unmarshal(data, &r) != nil {
			return
		}
		for _, c := range []*Change{r.Diff, beginChange(&r)} {
			if c == nil || c.Check() != nil {
				continue
			}
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("marshal a checked change: %v", err)
			}
			var back Change
			if err := json.Unmarshal(b, &back); err != nil || back.Check() != nil {
				t.Fatalf("a checked change does not survive a round trip: %v %v", err, back.Check())
			}
		}
	})
}

func beginChange(r *Request) *Change {
	if r.Begin == nil {
		return nil
	}
	return &r.Begin.Change
}

// FuzzReportDecode: the workstation's report decoder never panics.
func FuzzReportDecode(f *testing.F) {
	f.Add([]byte(`{"version":2,"verb":"begin","state":"armed","begin":{"token":"ab","detect":{"uid":0}},"status":{"timer_alive":true,"changes":"+x"}}`))
	f.Add([]byte(`{"error":{"code":"lock-held","holder":{"tx_id":"a"}},"phases":[{"name":"x","took_ns":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Report
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if r.Error != nil {
			_ = r.Error.Error()
		}
		_ = r.State.Terminal()
	})
}

// FuzzParseHelperCommand: only command lines HelperCommand built parse.
func FuzzParseHelperCommand(f *testing.F) {
	f.Add(HelperCommand("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", VerbBegin))
	f.Add("f=/var/lib/lifeline/bin/x; exec \"$f\" begin")
	f.Fuzz(func(t *testing.T, cmd string) {
		sha, verb, ok := ParseHelperCommand(cmd)
		if ok && HelperCommand(sha, verb) != cmd {
			t.Fatalf("parsed %q as %s %s, which builds another line", cmd, sha, verb)
		}
	})
}
