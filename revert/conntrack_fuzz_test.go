package revert

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseCtLine: the entry parser never panics, what it accepts has a
// family, protocol, state and a valid source, and the summariser counts
// every line exactly once.
func FuzzParseCtLine(f *testing.F) {
	for _, name := range []string{"proc-nf_conntrack", "conntrack-L-extended", "kmsg"} {
		if b, err := os.ReadFile(filepath.Join(ctData, name)); err == nil {
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				f.Add(sc.Text())
			}
		}
	}
	f.Add("ipv4 2 tcp 6 1 X src=::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, line string) {
		e, ok := parseCtLine(line)
		if ok && (e.Family == "" || e.Proto == "" || e.State == "" || !e.Src.IsValid()) {
			t.Fatalf("accepted %q as %+v", line, e)
		}
		s := newCtSummary(0)
		if err := s.read(strings.NewReader(line + "\n" + line)); err != nil {
			t.Fatal(err)
		}
		if s.parsed+s.unparsed != s.listed {
			t.Fatalf("%q: listed %d, parsed %d + unparsed %d", line, s.listed, s.parsed, s.unparsed)
		}
		k := &kmsgScan{monoNow: time.Hour, since: time.Minute}
		if err := k.read(strings.NewReader(line)); err != nil || k.recent > k.full {
			t.Fatalf("%q: kmsg %+v %v", line, k, err)
		}
	})
}
