package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// traceDoc is trace's --json document.
type traceDoc struct {
	OK      bool `json:"ok"`
	Results []struct {
		result
		Trace *struct {
			Start *struct {
				Tracer  string `json:"tracer"`
				Monitor string `json:"monitor"`
			} `json:"start"`
			Packets  int            `json:"packets"`
			Verdicts map[string]int `json:"verdicts"`
			Decisive []struct {
				Table, Chain, Kind, Rule, Verdict, Packet string
				Handle                                    int
			} `json:"decisive"`
		} `json:"trace"`
	} `json:"results"`
}

// blockSSHFrom makes host drop new ssh connections from addr (and only
// those: the workstation still gets in), first in the input chain, in the
// host's own backend.
func blockSSHFrom(t *testing.T, l *lab.Lab, h *lab.Host, addr string) {
	t.Helper()
	if h.Backend == "nft" {
		execOn(t, l, h.Name, "sh", "-c", `nft add table inet filter && nft 'add chain inet filter input { type filter hook input priority 0; policy accept; }' && nft insert rule inet filter input ip saddr `+addr+` tcp dport 22 drop comment '"no ssh from b"'`)
		return
	}
	execOn(t, l, h.Name, "iptables", "-I", "INPUT", "1", "-s", addr, "-p", "tcp", "--dport", "22", "-m", "comment", "--comment", "no ssh from b", "-j", "DROP")
}

// trySSH tries a TCP connection from host from to addr:22 a few times.
func trySSH(l *lab.Lab, from, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = l.Exec(ctx, from, "sh", "-c", "for i in 1 2; do timeout 1 bash -c '</dev/tcp/"+addr+"/22'; done; true")
}

// TestTrace: trace names the rule that dropped a blocked ssh attempt from
// one lab host to another (nft and iptables-nft hosts), and leaves the
// ruleset exactly as it was; an iptables-legacy host is refused, restored.
func TestTrace(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	a, b, legacy := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	if a.Backend != "nft" || b.Backend != "iptables-nft" || legacy.Backend != "iptables-legacy" {
		t.Fatalf("lab backends %s %s %s, want nft, iptables-nft, iptables-legacy", a.Backend, b.Backend, legacy.Backend)
	}
	for _, tc := range []struct {
		target, from *lab.Host
		rule         string // what the deciding rule's text holds
	}{
		{a, b, `tcp dport 22 drop comment "no ssh from b"`},
		{b, a, `-p tcp -m tcp --dport 22 -m comment --comment "no ssh from b" -j DROP`},
	} {
		t.Run(tc.target.Name+"-"+tc.target.Backend, func(t *testing.T) {
			t.Parallel()
			blockSSHFrom(t, l, tc.target, tc.from.Address)
			before := liveRuleset(t, l, tc.target.Name)
			done := make(chan struct{})
			go func() { // the attempts start once the trace surely runs
				defer close(done)
				time.Sleep(3 * time.Second)
				trySSH(l, tc.from.Name, tc.target.Address)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stdout, stderr, code := cli(t, ctx, "-F", l.SSHConfig, "--json", "trace", tc.target.Name,
				"--match", "tcp dport 22 saddr "+tc.from.Address, "--duration", "6s")
			<-done
			var doc traceDoc
			if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Results) != 1 {
				t.Fatalf("trace: exit %d: %v\n%s\n%s", code, err, stdout, stderr)
			}
			r := doc.Results[0]
			if code != 0 || !doc.OK || r.Outcome != "restored" || r.Trace == nil || r.Trace.Start == nil {
				t.Fatalf("trace: exit %d outcome %s: %s\n%s\n%s", code, r.Outcome, r.Error, stdout, stderr)
			}
			if r.Trace.Packets == 0 || r.Trace.Verdicts["drop"] != r.Trace.Packets {
				t.Fatalf("trace saw %d packets, verdicts %v, want all dropped\n%s", r.Trace.Packets, r.Trace.Verdicts, stdout)
			}
			for _, d := range r.Trace.Decisive {
				if d.Verdict != "drop" || d.Kind != "rule" || !strings.Contains(d.Rule, tc.rule) || !strings.Contains(d.Packet, tc.from.Address) {
					t.Fatalf("decisive step %+v, want the rule %q dropping a packet from %s", d, tc.rule, tc.from.Address)
				}
			}
			t.Logf("%s: %s, %s: %d packets dropped by %q", tc.target.Name, r.Trace.Start.Tracer, r.Trace.Start.Monitor, r.Trace.Packets, r.Trace.Decisive[0].Rule)
			if got := liveRuleset(t, l, tc.target.Name); got != before {
				t.Fatalf("the ruleset after the trace is not the one before:\nbefore:\n%s\nafter:\n%s", before, got)
			}
		})
	}
	t.Run(legacy.Name+"-refused", func(t *testing.T) {
		t.Parallel()
		blockSSHFrom(t, l, legacy, a.Address)
		before := liveRuleset(t, l, legacy.Name)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stdout, stderr, code := cli(t, ctx, "-F", l.SSHConfig, "--json", "trace", legacy.Name, "--match", "tcp dport 22", "--duration", "2s")
		var doc traceDoc
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Results) != 1 {
			t.Fatalf("trace: exit %d: %v\n%s\n%s", code, err, stdout, stderr)
		}
		r := doc.Results[0]
		if code != 1 || r.Outcome != "reverted" || !strings.Contains(r.Error, "iptables-legacy") {
			t.Fatalf("legacy trace: exit %d outcome %s error %q, want reverted naming iptables-legacy", code, r.Outcome, r.Error)
		}
		if got := liveRuleset(t, l, legacy.Name); got != before {
			t.Fatalf("the ruleset after the refused trace changed:\nbefore:\n%s\nafter:\n%s", before, got)
		}
	})
}

// TestTraceWorkstationKilled: a lifeline killed mid-trace leaves nothing
// behind: the host drops the trace rules and its revert timer restores the
// snapshot by the deadline; the next transaction on the host works.
func TestTraceWorkstationKilled(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	before := liveRuleset(t, l, h.Name)
	cmd, sc := startStream(t, "-F", l.SSHConfig, "trace", h.Name, "--json-stream", "--match", "tcp dport 2222", "--duration", "10s")
	var deadline time.Time
	started := false
	for !started && sc.Scan() {
		var line struct {
			Type, Phase, Msg string
		}
		_ = json.Unmarshal(sc.Bytes(), &line)
		switch {
		case line.Type == "event" && line.Phase == "begin" && strings.HasPrefix(line.Msg, "armed tx "):
			// armed tx ID, deadline 2026-12-03T16:40:00Z (timer)
			f := strings.Fields(strings.TrimPrefix(line.Msg, "armed tx "))
			if len(f) >= 3 {
				deadline, _ = time.Parse(time.RFC3339, strings.TrimSuffix(f[2], ")"))
			}
		case line.Type == "trace-start":
			started = true
		}
	}
	if !started || deadline.IsZero() {
		t.Fatalf("the trace never started (deadline %v)", deadline)
	}
	if !strings.Contains(liveRuleset(t, l, h.Name), "lifeline_trace") {
		t.Fatalf("the trace table is not live mid-trace:\n%s", liveRuleset(t, l, h.Name))
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	var got string
	for time.Now().Before(deadline.Add(5 * time.Second)) {
		if got = liveRuleset(t, l, h.Name); got == before {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got != before {
		t.Fatalf("5s past the deadline the ruleset is not the one before:\nbefore:\n%s\nnow:\n%s", before, got)
	}
	doc, stderr, code := lifelineJSON(t, l.SSHConfig, "exec", h.Name, "--window", "10s", "--", "true")
	if code != 0 || doc.Results[0].Outcome != "confirmed" {
		t.Fatalf("the next transaction after the killed trace: exit %d %s: %s\n%s", code, doc.Results[0].Outcome, doc.Results[0].Error, stderr)
	}
}
