package main

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

func conntrackHosts() []*session.HostConntrack {
	entries := func(states []wire.ConntrackState, srcs []wire.ConntrackSource) *wire.ConntrackEntries {
		var n int64
		for _, s := range states {
			n += s.Count
		}
		return &wire.ConntrackEntries{Source: "/proc/net/nf_conntrack", Listed: n, Parsed: n, States: states, TopSources: srcs, Sources: len(srcs)}
	}
	stats := &wire.ConntrackStats{Source: "/proc/net/stat/nf_conntrack", EarlyDrop: 12}
	quiet := &wire.ConntrackKernelLog{Source: "/dev/kmsg", Since: wire.Duration(time.Hour)}
	full := &wire.ConntrackReport{Loaded: true, Count: 215031, Max: 262144, Buckets: 262144, Namespaced: true,
		Entries: entries([]wire.ConntrackState{{Proto: "udp", State: "UNREPLIED", Count: 215000}, {Proto: "tcp", State: "ESTABLISHED", Count: 29}, {Proto: "tcp", State: "TIME_WAIT", Count: 1}, {Proto: "icmp", State: "REPLIED", Count: 1}},
			[]wire.ConntrackSource{{Addr: "198.18.7.11", Count: 170000}, {Addr: "198.18.7.13", Count: 45000}, {Addr: "198.18.7.1", Count: 30}, {Addr: "198.18.7.12", Count: 1}}),
		Stats: stats, KernelLog: quiet, Notes: []string{"nf_conntrack_max is read-only here: this is not the machine's first network namespace (a container?); the limit and the kernel log are the whole machine's"}}
	ok := &wire.ConntrackReport{Loaded: true, Count: 3, Max: 262144, Buckets: 262144,
		Entries:   entries([]wire.ConntrackState{{Proto: "tcp", State: "ESTABLISHED", Count: 3}}, []wire.ConntrackSource{{Addr: "198.18.7.1", Count: 3}}),
		Stats:     &wire.ConntrackStats{Source: "conntrack -S"},
		KernelLog: &wire.ConntrackKernelLog{Source: "/dev/kmsg", Error: "open /dev/kmsg: permission denied", Since: wire.Duration(time.Hour)}}
	dropping := &wire.ConntrackReport{Loaded: true, Count: 65536, Max: 65536, Entries: nil,
		KernelLog: &wire.ConntrackKernelLog{Source: "/dev/kmsg", TableFull: 40, Recent: 7, Last: time.Date(2026, 12, 3, 15, 59, 1, 0, time.UTC), Since: wire.Duration(time.Hour)},
		Notes:     []string{"no /proc/net/nf_conntrack (kernel without CONFIG_NF_CONNTRACK_PROCFS) and no conntrack tool: install conntrack (conntrack-tools) to see states and sources"}}
	off := &wire.ConntrackReport{KernelLog: quiet, Notes: []string{"nf_conntrack is not loaded: no connection is tracked here, so there is no table to fill"}}
	err := errors.New("h05: dial 198.18.7.15:22: connect: connection refused")
	return []*session.HostConntrack{
		{Host: "h01", Conntrack: ok, Use: ok.Use(), NearFull: false},
		{Host: "h02", Conntrack: full, Use: full.Use(), NearFull: true},
		{Host: "h03", Conntrack: dropping, Use: 1, NearFull: true, Dropping: true},
		{Host: "h04", Conntrack: off},
		{Host: "h05", Error: err.Error(), Err: err},
	}
}

func TestConntrackOutput(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var b bytes.Buffer
		if err := writeConntrack(&b, conntrackHosts(), 0.8, time.Hour, verbose); err != nil {
			t.Fatal(err)
		}
		name := "conntrack"
		if verbose {
			name += "-v"
		}
		golden(t, name, b.String())
	}
}

func TestConntrackExit(t *testing.T) {
	hosts := conntrackHosts()
	for _, tc := range []struct {
		name  string
		hosts []*session.HostConntrack
		want  int
	}{
		{"all below", hosts[:1], exitOK},
		{"not loaded is fine", []*session.HostConntrack{hosts[0], hosts[3]}, exitOK},
		{"near full", hosts[:2], exitFailure},
		{"dropping", []*session.HostConntrack{hosts[0], hosts[2]}, exitFailure},
		{"unreachable wins", hosts, exitUsage},
		{"unreachable alone", hosts[4:], exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			g := &globals{stdout: &out, stderr: &errb}
			if got := exitCode(g, conntrackExit(tc.hosts, "80%")); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
			if errb.Len() > 0 || out.Len() > 0 {
				t.Errorf("printed again: %q %q", out.String(), errb.String())
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "1h", 90 * time.Minute: "1h30m", 30 * time.Second: "30s", 24 * time.Hour: "24h", 5 * time.Minute: "5m", 0: "0s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
