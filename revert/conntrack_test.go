package revert

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const ctData = "testdata/conntrack"

func TestParseCtLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       ctEntry
		ok         bool
	}{
		{"proc tcp established", "ipv4     2 tcp      6 431998 ESTABLISHED src=10.254.77.1 dst=10.254.77.2 sport=50908 dport=8443 src=10.254.77.2 dst=10.254.77.1 sport=8443 dport=50908 [ASSURED] mark=0 zone=0 use=2",
			ctEntry{"ipv4", "tcp", "ESTABLISHED", netip.MustParseAddr("10.254.77.1")}, true},
		{"tool udp unreplied", "ipv4     2 udp      17 28 src=10.254.77.1 dst=10.254.77.2 sport=56880 dport=9999 [UNREPLIED] src=10.254.77.2 dst=10.254.77.1 sport=9999 dport=56880 mark=0 use=1",
			ctEntry{"ipv4", "udp", "UNREPLIED", netip.MustParseAddr("10.254.77.1")}, true},
		{"udp replied", "ipv4     2 udp      17 28 src=10.254.77.1 dst=10.254.77.2 sport=34724 dport=5353 src=10.254.77.2 dst=10.254.77.1 sport=5353 dport=34724 mark=0 use=1",
			ctEntry{"ipv4", "udp", "REPLIED", netip.MustParseAddr("10.254.77.1")}, true},
		{"udp assured", "ipv4     2 udp      17 118 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 [ASSURED] mark=0 use=1",
			ctEntry{"ipv4", "udp", "ASSURED", netip.MustParseAddr("10.0.0.1")}, true},
		{"unreplied wins over assured", "ipv4     2 udp      17 81 src=10.254.77.5 dst=10.254.77.2 sport=1000 dport=2000 [UNREPLIED] src=10.254.77.2 dst=10.254.77.5 sport=2000 dport=1000 [ASSURED] mark=7 use=1",
			ctEntry{"ipv4", "udp", "UNREPLIED", netip.MustParseAddr("10.254.77.5")}, true},
		{"proc ipv6 full form", "ipv6     10 icmpv6   58 29 src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=2001:0db8:0000:0000:0000:0000:0000:0002 type=128 code=0 id=5 [UNREPLIED] src=2001:0db8:0000:0000:0000:0000:0000:0002 dst=2001:0db8:0000:0000:0000:0000:0000:0001 type=129 code=0 id=5 mark=0 zone=0 use=2",
			ctEntry{"ipv6", "icmpv6", "UNREPLIED", netip.MustParseAddr("2001:db8::1")}, true},
		{"icmp replied", "ipv4     2 icmp     1 28 src=10.254.77.1 dst=10.254.77.2 type=8 code=0 id=42 src=10.254.77.2 dst=10.254.77.1 type=0 code=0 id=42 mark=0 use=1",
			ctEntry{"ipv4", "icmp", "REPLIED", netip.MustParseAddr("10.254.77.1")}, true},
		{"time wait", "ipv4     2 tcp      6 119 TIME_WAIT src=10.254.77.1 dst=10.254.77.2 sport=58936 dport=8080 src=10.254.77.2 dst=10.254.77.1 sport=8080 dport=58936 [ASSURED] mark=0 use=1",
			ctEntry{"ipv4", "tcp", "TIME_WAIT", netip.MustParseAddr("10.254.77.1")}, true},
		{"conntrack's summary line", "conntrack v1.4.7 (conntrack-tools): 21 flow entries have been shown.", ctEntry{}, false},
		{"empty", "", ctEntry{}, false},
		{"no source", "ipv4     2 tcp      6 119 TIME_WAIT dst=10.0.0.2 sport=1 dport=2 mark=0", ctEntry{}, false},
		{"bad source", "ipv4     2 tcp      6 119 TIME_WAIT src=10.0.0.300 dst=10.0.0.2", ctEntry{}, false},
		{"bad timeout", "ipv4     2 tcp      6 x119 TIME_WAIT src=10.0.0.1 dst=10.0.0.2", ctEntry{}, false},
		{"unknown family", "ipx     2 tcp      6 119 TIME_WAIT src=10.0.0.1 dst=10.0.0.2", ctEntry{}, false},
		{"odd state", "ipv4     2 tcp      6 119 TIME;WAIT src=10.0.0.1 dst=10.0.0.2", ctEntry{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseCtLine(tc.line)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("parseCtLine = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func summarise(t *testing.T, file string, max int64, top int) *ConntrackEntries {
	t.Helper()
	f, err := os.Open(filepath.Join(ctData, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := newCtSummary(max)
	if err := s.read(f); err != nil {
		t.Fatal(err)
	}
	return s.entries(file, top)
}

// The two listings of one moment summarise alike, and as pinned.
func TestConntrackGolden(t *testing.T) {
	proc := summarise(t, "proc-nf_conntrack", 0, 5)
	tool := summarise(t, "conntrack-L-extended", 0, 5)
	if proc.Listed != 21 || proc.Parsed != 21 || tool.Listed != 21 || tool.Parsed != 21 || tool.Unparsed != 0 {
		t.Errorf("proc listed %d parsed %d; tool listed %d parsed %d unparsed %d", proc.Listed, proc.Parsed, tool.Listed, tool.Parsed, tool.Unparsed)
	}
	if !reflect.DeepEqual(proc.States, tool.States) || !reflect.DeepEqual(proc.TopSources, tool.TopSources) {
		t.Errorf("the two sources differ:\n%+v\n%+v", proc, tool)
	}
	b, _ := json.MarshalIndent(proc, "", "  ")
	golden := filepath.Join(ctData, "proc-nf_conntrack.summary.json")
	if *updateFW {
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(b)+"\n" {
		t.Errorf("summary differs from %s (-update rewrites it):\n%s", golden, b)
	}
}

func TestConntrackSummaryOrderAndCap(t *testing.T) {
	// ties: most first, then by address (IPv4 before IPv6), then protocol/state by name
	var lines []string
	add := func(n int, src, proto, state string) {
		for range n {
			lines = append(lines, fmt.Sprintf("ipv4 2 %s 17 30 %s src=%s dst=10.0.0.100 sport=1 dport=2 mark=0 use=1", proto, state, src))
		}
	}
	add(3, "10.0.0.9", "tcp", "SYN_SENT")
	add(3, "10.0.0.10", "tcp", "ESTABLISHED")
	add(5, "10.0.0.2", "udp", "[UNREPLIED]")
	add(1, "::ffff:10.0.0.3", "tcp", "CLOSE")
	for _, order := range [][]string{lines, reversed(lines)} {
		s := newCtSummary(0)
		for _, l := range order {
			s.add(l)
		}
		e := s.entries("x", 3)
		wantSrc := []ConntrackSource{{Addr: "10.0.0.2", Count: 5}, {Addr: "10.0.0.9", Count: 3}, {Addr: "10.0.0.10", Count: 3}}
		wantStates := []ConntrackState{{Proto: "udp", State: "UNREPLIED", Count: 5}, {Proto: "tcp", State: "ESTABLISHED", Count: 3}, {Proto: "tcp", State: "SYN_SENT", Count: 3}, {Proto: "tcp", State: "CLOSE", Count: 1}}
		if !reflect.DeepEqual(e.TopSources, wantSrc) || !reflect.DeepEqual(e.States, wantStates) || e.Sources != 4 {
			t.Errorf("sources %v (of %d), states %v", e.TopSources, e.Sources, e.States)
		}
	}
	capped := summarise(t, "proc-nf_conntrack", 5, 5)
	if capped.Listed != 21 || capped.Parsed != 5 || !capped.Truncated {
		t.Errorf("capped at 5: %+v", capped)
	}
	var n int64
	for _, st := range capped.States {
		n += st.Count
	}
	if n != 5 {
		t.Errorf("capped states count %d entries, want 5", n)
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestConntrackStats(t *testing.T) {
	f, _ := os.Open(filepath.Join(ctData, "proc-stat-nf_conntrack"))
	defer f.Close()
	st, err := parseProcStat(f)
	if err != nil || st.Source != "/proc/net/stat/nf_conntrack" || st.Drop != 0 || st.InsertFailed != 0 {
		t.Errorf("proc stat: %+v, %v", st, err)
	}
	g, _ := os.Open(filepath.Join(ctData, "conntrack-S"))
	defer g.Close()
	st, err = parseConntrackS(g)
	if err != nil || st.Source != "conntrack -S" {
		t.Errorf("conntrack -S: %+v, %v", st, err)
	}
	sum, err := parseConntrackS(strings.NewReader("cpu=0   \tfound=1 invalid=2 insert=0 insert_failed=3 drop=4 early_drop=5 error=0 search_restart=0 clash_resolve=0 chaintoolong=6 \ncpu=1   \tfound=0 invalid=2 insert=0 insert_failed=3 drop=4 early_drop=5 error=0 chaintoolong=0\n"))
	if err != nil || *sum != (ConntrackStats{Source: "conntrack -S", Drop: 8, EarlyDrop: 10, InsertFailed: 6, Invalid: 4, ChainTooLong: 6}) {
		t.Errorf("sum: %+v, %v", sum, err)
	}
	hdr := "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
	sum, err = parseProcStat(strings.NewReader(hdr +
		"00000015  00000000 00000000 00000000 00000001 00000000 00000000 00000002 00000000 0000000a 00000010 00000003 00000000  00000000 00000000 00000000 00000000\n" +
		"00000015  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000001 00000001 00000003 00000000  00000000 00000000 00000000 00000000\n"))
	if err != nil || *sum != (ConntrackStats{Source: "/proc/net/stat/nf_conntrack", Drop: 17, EarlyDrop: 6, InsertFailed: 11, Invalid: 2, ChainTooLong: 2}) {
		t.Errorf("proc sum: %+v, %v", sum, err)
	}
	for _, bad := range []string{"", "cpu=0 found=x\n", "cpu=0 found\n", "something else\n"} {
		if _, err := parseConntrackS(strings.NewReader(bad)); err == nil {
			t.Errorf("parseConntrackS(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", hdr, hdr + "0000 zz\n", "bogus header\n00\n", hdr + strings.Repeat("0000000g ", 17) + "\n"} {
		if _, err := parseProcStat(strings.NewReader(bad)); err == nil {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
}

func TestKmsgScan(t *testing.T) {
	last := 83873792826 * time.Microsecond // the newest table-full record of the sample
	for _, tc := range []struct {
		name         string
		since        time.Duration
		full, recent int
	}{
		{"last hour", time.Hour, 3, 1},
		{"three hours", 3 * time.Hour, 3, 3},
		{"whole log", 0, 3, 3},
		{"last second", time.Second, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := os.Open(filepath.Join(ctData, "kmsg"))
			defer f.Close()
			k := &kmsgScan{monoNow: last + 10*time.Second, since: tc.since}
			if err := k.read(&chunked{f, 37}); err != nil {
				t.Fatal(err)
			}
			if k.full != tc.full || k.recent != tc.recent || k.newest != last {
				t.Errorf("full %d recent %d newest %v; want %d %d %v", k.full, k.recent, k.newest, tc.full, tc.recent, last)
			}
		})
	}
}

// chunked reads at most n bytes at a time: lines split across reads.
type chunked struct {
	f *os.File
	n int
}

func (c *chunked) Read(b []byte) (int, error) { return c.f.Read(b[:min(len(b), c.n)]) }

// fakeProc lays out the files the probe reads under a temporary folder.
func fakeProc(t *testing.T, files map[string]string, maxMode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "nf_conntrack_max") {
			mode = maxMode
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ctSample(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join(ctData, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConntrackProbe(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)}
	kmsg, _ := filepath.Abs(filepath.Join(ctData, "kmsg"))
	sysctls := map[string]string{
		"sys/net/netfilter/nf_conntrack_count":   "21\n",
		"sys/net/netfilter/nf_conntrack_max":     "25\n",
		"sys/net/netfilter/nf_conntrack_buckets": "1024\n",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range sysctls {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	// a stand-in for the conntrack tool that prints the captured listing
	tool := filepath.Join(t.TempDir(), "conntrack")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in -L) cat %q; echo 'conntrack v1.4.7 (conntrack-tools): 21 flow entries have been shown.' >&2;; -S) cat %q;; *) exit 2;; esac\n",
		mustAbs(t, filepath.Join(ctData, "conntrack-L-extended")), mustAbs(t, filepath.Join(ctData, "conntrack-S")))
	if err := os.WriteFile(tool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(t.TempDir(), "conntrack")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'conntrack v1.4.7 (conntrack-tools): Operation not permitted' >&2; exit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name       string
		files      map[string]string
		maxMode    os.FileMode
		tool       string
		kmsg       string
		check      func(t *testing.T, r *ConntrackReport)
		wantNote   string
		namespaced bool
	}{
		{name: "not loaded", files: map[string]string{"net/dev": ""}, tool: "-", kmsg: kmsg,
			wantNote: "not loaded", check: func(t *testing.T, r *ConntrackReport) {
				if r.Loaded || r.Count != 0 || r.Entries != nil || r.NearFull(0.01) || r.KernelLog == nil || r.KernelLog.TableFull != 3 {
					t.Errorf("%+v", r)
				}
			}},
		{name: "procfs, namespaced", files: with(map[string]string{"net/nf_conntrack": ctSample(t, "proc-nf_conntrack"), "net/stat/nf_conntrack": ctSample(t, "proc-stat-nf_conntrack")}),
			maxMode: 0o444, tool: "-", kmsg: kmsg, namespaced: true, wantNote: "read-only here",
			check: func(t *testing.T, r *ConntrackReport) {
				if !r.Loaded || r.Count != 21 || r.Max != 25 || r.Buckets != 1024 || r.Entries.Source != "/proc/net/nf_conntrack" || r.Stats.Source != "/proc/net/stat/nf_conntrack" {
					t.Errorf("%+v", r)
				}
				if !r.NearFull(0.8) || r.NearFull(0.85) || r.Use() != 21.0/25 {
					t.Errorf("use %v: near full at 0.8 %v, at 0.85 %v", r.Use(), r.NearFull(0.8), r.NearFull(0.85))
				}
			}},
		{name: "tool", files: sysctls, maxMode: 0o644, tool: tool, kmsg: kmsg,
			check: func(t *testing.T, r *ConntrackReport) {
				if r.Entries == nil || r.Entries.Source != "conntrack -L -o extended" || r.Entries.Parsed != 21 || r.Stats == nil || r.Stats.Source != "conntrack -S" || r.Namespaced {
					t.Errorf("%+v %+v", r, r.Entries)
				}
			}},
		{name: "tool fails", files: sysctls, maxMode: 0o644, tool: failing, kmsg: kmsg, wantNote: "Operation not permitted",
			check: func(t *testing.T, r *ConntrackReport) {
				if r.Entries != nil || r.Stats != nil || !r.Loaded {
					t.Errorf("%+v", r)
				}
			}},
		{name: "no procfs, no tool", files: sysctls, maxMode: 0o644, tool: "-", kmsg: "/nonexistent/kmsg", wantNote: "install conntrack",
			check: func(t *testing.T, r *ConntrackReport) {
				if r.Entries != nil || r.KernelLog.Error == "" || r.Dropping() {
					t.Errorf("%+v %+v", r, r.KernelLog)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ConntrackProbe{Proc: fakeProc(t, tc.files, tc.maxMode), Tool: tc.tool, Kmsg: tc.kmsg}
			r := p.Read(context.Background(), ConntrackArgs{}, clock)
			if tc.wantNote != "" && !strings.Contains(strings.Join(r.Notes, "\n"), tc.wantNote) {
				t.Errorf("notes %q lack %q", r.Notes, tc.wantNote)
			}
			if r.Namespaced != tc.namespaced {
				t.Errorf("namespaced %v, want %v", r.Namespaced, tc.namespaced)
			}
			tc.check(t, r)
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The verb answers without a firewall or a timer, takes no lock, writes
// nothing, and refuses bad arguments.
func TestConntrackVerb(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	probe := ConntrackProbe{Proc: fakeProc(t, map[string]string{"sys/net/netfilter/nf_conntrack_count": "0\n", "sys/net/netfilter/nf_conntrack_max": "100\n"}, 0o644), Tool: "-", Kmsg: "/nonexistent"}
	env := Env{StateDir: state, Conntrack: probe, Clock: &fakeClock{t: time.Unix(1e9, 0)}}
	rep := Handle(context.Background(), VerbConntrack, &Request{Version: ProtocolVersion}, env)
	if rep.Error != nil || rep.Conntrack == nil || !rep.Conntrack.Loaded || rep.Conntrack.Max != 100 || rep.State != StateNone {
		t.Fatalf("report %+v, error %v", rep, rep.Error)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the state folder was created (%v): conntrack must write nothing", err)
	}
	for _, bad := range []ConntrackArgs{{Top: -1}, {Top: MaxConntrackTop + 1}, {Since: -1}, {MaxEntries: -1}} {
		rep := Handle(context.Background(), VerbConntrack, &Request{Conntrack: &bad}, env)
		if rep.Error == nil || rep.Error.Code != CodeBadRequest || rep.Conntrack != nil {
			t.Errorf("%+v: %+v", bad, rep.Error)
		}
	}
}
