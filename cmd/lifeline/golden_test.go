package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// t0 is the fixed start of every golden run; events and the summary line
// are measured from it.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// golden compares got with testdata/golden/NAME.golden (-update rewrites it).
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", t.Name(), p, got, want)
	}
}

// applyCase is one rollout as apply's printers see it: the events the
// session sent, then the results.
type applyCase struct {
	name    string
	events  []session.Event
	results []*session.Result
}

func hostEvents(host string, start time.Duration, steps ...[3]string) []session.Event {
	var out []session.Event
	for i, s := range steps {
		out = append(out, session.Event{Host: host, Phase: s[0], Status: s[1], Msg: s[2], At: at(start + time.Duration(i)*300*time.Millisecond)})
	}
	return out
}

var deadline = time.Date(2026, 1, 2, 3, 5, 10, 0, time.UTC)

func timings() []session.Timing {
	return []session.Timing{{Phase: session.PhaseConnect, Took: 120 * time.Millisecond}, {Phase: session.PhaseBegin, Took: 340 * time.Millisecond}, {Phase: session.PhaseApply, Took: 56 * time.Millisecond}, {Phase: session.PhaseConfirm, Took: 210 * time.Millisecond}}
}

func confirmed(host, tx string) *session.Result {
	return &session.Result{Host: host, Outcome: session.Confirmed, Phase: session.PhaseConfirm, TxID: tx, Deadline: deadline,
		Backends: []string{"nft"}, Timings: timings(), HostPhases: []wire.Phase{{Name: "begin", Took: 41 * time.Millisecond}, {Name: "apply", Took: 7 * time.Millisecond}},
		Connections: 2, RoundTrips: 5, Uploaded: 4096, Took: 1234567890 * time.Nanosecond,
		GuardChains: []string{"inet filter input"}}
}

func applyCases() []applyCase {
	okSteps := [][3]string{
		{session.PhaseConnect, "start", ""}, {session.PhaseConnect, "done", ""},
		{session.PhaseBegin, "start", ""}, {session.PhaseBegin, "done", "tx 20260102T030405-aaaa armed, deadline 03:05:10"},
		{session.PhaseApply, "done", ""}, {session.PhaseConfirm, "info", "fresh connection"},
		{session.PhaseConfirm, "done", ""}, {"", "end", "confirmed"},
	}
	warned := confirmed("h01", "20260102T030405-aaaa")
	warned.Warnings = []string{"the helper on h01 did not match its sha256 (tampered?): kept aside as /var/lib/lifeline/bin/x.bad and uploaded again", "second\nwarning, on two lines"}
	reverted := &session.Result{Host: "h02", Outcome: session.Reverted, Phase: session.PhaseApply, TxID: "20260102T030405-bbbb", Deadline: deadline,
		Error: "load ruleset: nft: /tmp/r.nft:3:1-4: Error: syntax error", Hint: "the ruleset failed to load; the host restored its snapshot at once",
		Backends: []string{"iptables-nft"}, Timings: timings()[:3], Connections: 1, RoundTrips: 3, Took: 870 * time.Millisecond}
	refused := &session.Result{Host: "h03", Outcome: session.Refused, Phase: session.PhaseBegin,
		Error: "lock held: tx 20260102T020000-cccc", Hint: "tx 20260102T020000-cccc by ann@desk run 20260102T020000-dddd holds the host until 2026-01-02T03:10:00Z; wait for it to confirm or revert (if it is stuck past its deadline: lifeline status HOST --abort)",
		Holder:  &wire.Holder{TxID: "20260102T020000-cccc", Origin: "ann@desk run 20260102T020000-dddd", Deadline: time.Date(2026, 1, 2, 3, 10, 0, 0, time.UTC)},
		Timings: timings()[:2], Connections: 1, RoundTrips: 2, Took: 450 * time.Millisecond}
	unknown := &session.Result{Host: "h04", Outcome: session.Unknown, Phase: session.PhaseRevert, TxID: "20260102T030405-eeee", Deadline: deadline,
		Error: "h04 stayed unreachable until 45s after its deadline", Hint: "it restores its snapshot by itself at the deadline; its kernel guard re-opens your address to sshd; check it later with: lifeline status h04",
		Timings: timings(), Connections: 9, RoundTrips: 4, Took: 112 * time.Second}
	authFail := &session.Result{Host: "h05", Outcome: session.Refused, Phase: session.PhaseConnect,
		Error: "h05: authenticate to 198.18.0.5:22: user root: authentication failed (hint: no key to offer: start ssh-agent and ssh-add a key, or set IdentityFile)",
		Hint:  "check the user and key (ssh-add -l, IdentityFile)", Timings: []session.Timing{}, Took: 15 * time.Millisecond}
	planned := &session.Result{Host: "h01", Outcome: session.Planned, Phase: session.PhaseDiff, Backends: []string{"nft"},
		Diff:    "@@ -1,3 +1,4 @@\n table inet filter {\n-\tchain input { type filter hook input priority 0; }\n+\tchain input { type filter hook input priority 0; policy drop;\n+\t\ttcp dport 22 accept }\n }\n",
		Timings: []session.Timing{{Phase: session.PhaseConnect, Took: 100 * time.Millisecond}, {Phase: session.PhaseDiff, Took: 20 * time.Millisecond}}, Connections: 1, RoundTrips: 2, Took: 130 * time.Millisecond}
	plannedSame := &session.Result{Host: "h02", Outcome: session.Planned, Phase: session.PhaseDiff, Backends: []string{"nft"}, Timings: []session.Timing{}, Took: 90 * time.Millisecond}
	reboot := &session.Result{Host: "s01", Outcome: session.Reverted, Phase: session.PhaseRevert, TxID: "20260102T030405-ffff", Deadline: deadline, Reboot: true,
		Error: "the host rebooted before the confirm; it booted its persisted config", Timings: timings(), Connections: 4, RoundTrips: 6, Took: 95 * time.Second}
	skipped := &session.Result{Host: "h09", Outcome: session.Skipped, Error: "rollout stopped: batch 1 of 2 had 1 failed hosts (--max-fail 0)", Timings: []session.Timing{}}
	needs := &session.Result{Host: "h06", Outcome: session.NeedsRecovery, Phase: session.PhaseRevert, TxID: "20260102T030405-gggg",
		Error:   "deadline passed but tx 20260102T030405-gggg is still applied on the host: its revert timer (watchdog) died or hung; the kernel guard let this connection in",
		Hint:    "inspect h06 now (lifeline run h06 -- nft list ruleset / iptables-save); its snapshot is in the tx folder under /var/lib/lifeline/tx",
		Timings: timings(), Took: 70 * time.Second}

	path := session.BlockPath{What: "this connection", Src: "198.18.0.1", SrcPort: 40100, Dst: "198.18.0.3", DstPort: 22}
	blockDone := &session.Result{Host: "h01", Outcome: session.Done, Phase: session.PhaseBlock, Timings: []session.Timing{{Phase: session.PhaseBlock, Took: 40 * time.Millisecond}},
		Connections: 1, RoundTrips: 4, Took: 230 * time.Millisecond,
		Block: &session.BlockResult{Set: "blocked", Mode: wire.BlockModeNft, Added: []string{"203.0.113.0/24", "2001:db8::/32"}, TTL: time.Hour, Paths: []session.BlockPath{path}}}
	blockCreated := confirmed("h02", "20260102T030405-hhhh")
	blockCreated.Block = &session.BlockResult{Set: "blocked", Mode: wire.BlockModeIpset, Guarded: true, Created: true, Added: []string{"203.0.113.0/24", "2001:db8::/32"}, TTL: time.Hour, Paths: []session.BlockPath{path}}
	refusal := session.BlockRefusal{Path: path, CIDR: "198.18.0.0/15", Why: `the block's state drops it at drop by nft inet lifeline chain input rule 1 (handle 4): "ip saddr @blocked drop comment \"lifeline-block blocked\""`}
	blockRefused := &session.Result{Host: "h03", Outcome: session.Refused, Phase: session.PhaseCheck,
		Error:   "h03: refused, nothing changed: " + refusal.String(),
		Hint:    "block a narrower range that leaves these addresses out, or pass --force to block inside a guarded transaction that reverts unless a fresh connection still gets in",
		Timings: []session.Timing{}, Connections: 1, RoundTrips: 4, Took: 280 * time.Millisecond,
		Block: &session.BlockResult{Set: "blocked", Mode: wire.BlockModeNft, Paths: []session.BlockPath{path}, Refusals: []session.BlockRefusal{refusal}}}
	unblocked := &session.Result{Host: "h04", Outcome: session.Done, Phase: session.PhaseBlock, Timings: []session.Timing{}, Took: 200 * time.Millisecond,
		Block: &session.BlockResult{Set: "blocked", Mode: wire.BlockModeIpset, Removed: []string{"203.0.113.0/24"}, Absent: []string{"10.0.0.1"}}}

	var multiEvents []session.Event
	multiEvents = append(multiEvents, hostEvents("h01", 0, okSteps...)...)
	multiEvents = append(multiEvents, hostEvents("h02", 100*time.Millisecond,
		[3]string{session.PhaseConnect, "done", ""}, [3]string{session.PhaseApply, "fail", "load ruleset: nft: syntax error\n  on line 3"}, [3]string{"", "end", "reverted"})...)
	multiEvents = append(multiEvents, hostEvents("h03", 200*time.Millisecond,
		[3]string{session.PhaseBegin, "fail", "lock held"}, [3]string{"", "end", "refused"})...)
	multiEvents = append(multiEvents, session.Event{Host: "h09", Status: "end", Msg: "skipped", At: at(3 * time.Second)})

	return []applyCase{
		{"confirmed", hostEvents("h01", 0, okSteps...), []*session.Result{confirmed("h01", "20260102T030405-aaaa")}},
		{"reverted", hostEvents("h02", 0, [3]string{session.PhaseApply, "fail", reverted.Error}, [3]string{"", "end", "reverted"}), []*session.Result{reverted}},
		{"refused_hint", hostEvents("h03", 0, [3]string{session.PhaseBegin, "fail", refused.Error}, [3]string{"", "end", "refused"}), []*session.Result{refused}},
		{"unknown", hostEvents("h04", 0, [3]string{session.PhaseConfirm, "fail", "dial: i/o timeout"}, [3]string{session.PhaseRevert, "info", "waiting for h04's own revert"}, [3]string{"", "end", "unknown"}), []*session.Result{unknown}},
		{"auth_failure", hostEvents("h05", 0, [3]string{session.PhaseConnect, "fail", authFail.Error}, [3]string{"", "end", "refused"}), []*session.Result{authFail}},
		{"dry_run", hostEvents("h01", 0, [3]string{session.PhaseDiff, "done", ""}, [3]string{"", "end", "planned"}), []*session.Result{planned, plannedSame}},
		{"multi", multiEvents, []*session.Result{confirmed("h01", "20260102T030405-aaaa"), reverted, refused, skipped}},
		{"warnings", hostEvents("h01", 0, okSteps...), []*session.Result{warned}},
		{"reboot", nil, []*session.Result{reboot}},
		{"needs_recovery", nil, []*session.Result{needs}},
		{"block", nil, []*session.Result{blockDone, blockCreated, blockRefused, unblocked}},
	}
}

const goldenRunID, goldenRunDir = "20260102T030405-run1", "/home/op/.local/state/lifeline/runs/20260102T030405-run1"

// renderApply prints one case the way apply does: the events as they come,
// then the results; the clock is fixed.
func renderApply(t *testing.T, c applyCase, jsonOut, stream, verbose bool) (stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, jsonOut: jsonOut, verbose: verbose}
	if !jsonOut && !stream {
		tp := newTextPrinter(&out, &errb, verbose)
		tp.start = t0
		g.out = tp
	}
	p := newProgress(g, stream, len(c.results))
	p.start = t0
	p.now = func() time.Time { return t0.Add(4250 * time.Millisecond) }
	for _, e := range c.events {
		p.event(e)
	}
	p.done(goldenRunID, goldenRunDir, c.results)
	return out.String(), errb.String()
}

func streams(stdout, stderr string) string {
	return "-- stdout --\n" + stdout + "-- stderr --\n" + stderr
}

// TestApplyGolden pins apply's output byte for byte: the text table and
// progress lines, --json and --json-stream.
func TestApplyGolden(t *testing.T) {
	for _, c := range applyCases() {
		t.Run(c.name, func(t *testing.T) {
			golden(t, "apply_"+c.name+".text", streams(renderApply(t, c, false, false, false)))
			golden(t, "apply_"+c.name+".json", streams(renderApply(t, c, true, false, false)))
			golden(t, "apply_"+c.name+".stream", streams(renderApply(t, c, false, true, false)))
			if c.name == "confirmed" || c.name == "multi" {
				golden(t, "apply_"+c.name+".verbose", streams(renderApply(t, c, false, false, true)))
			}
		})
	}
}

func statusCases() map[string][]*session.HostStatus {
	yes, no := true, false
	now := time.Date(2026, 1, 2, 3, 4, 30, 0, time.UTC)
	return map[string][]*session.HostStatus{
		"fleet": {
			{Host: "h01", TxID: "20260102T030405-aaaa", State: wire.StateArmed, Deadline: deadline, Timer: "systemd", TimerAlive: &yes, Origin: "op@desk run 20260102T030405-run1", GuardChains: []string{"inet filter input", "ip nat prerouting"}, Now: now},
			{Host: "h02", TxID: "20260102T010000-bbbb", State: wire.StateReverted, Deadline: deadline, Timer: "watchdog", Verified: &yes, Origin: "ann@desk run x", Now: now},
			{Host: "h03", TxID: "20260102T010000-cccc", State: wire.StateApplied, Deadline: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), Timer: "watchdog", TimerAlive: &no, NeedsRecovery: true, Now: now, Unguarded: []string{"ip raw prerouting: a live table changed by add rule"}},
			{Host: "h04", TxID: "20260102T010000-dddd", State: wire.StateApplied, Deadline: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), Timer: "systemd", TimerAlive: &yes, Overdue: true, NeedsRecovery: true, Now: now},
			{Host: "s01", TxID: "20260102T010000-eeee", State: wire.StateReverted, Reboot: true, Verified: &no, Now: now},
			{Host: "h05", TxID: "20260102T010000-ffff", State: wire.StateReverted, Aborted: true, Verified: &yes, Warnings: []string{"aborted ann@desk's transaction"}, Now: now},
			{Host: "h06", State: wire.StateNone, Error: "h06: connect to 198.18.0.6:22: host unreachable"},
		},
	}
}

// TestStatusGolden pins status's table and --json document.
func TestStatusGolden(t *testing.T) {
	for name, sts := range statusCases() {
		for _, jsonOut := range []bool{false, true} {
			var out, errb bytes.Buffer
			printStatus(&globals{stdout: &out, stderr: &errb, jsonOut: jsonOut}, sts)
			ext := "text"
			if jsonOut {
				ext = "json"
			}
			golden(t, "status_"+name+"."+ext, streams(out.String(), errb.String()))
		}
	}
}

// TestRunGolden pins run's --json document and its failure lines.
func TestRunGolden(t *testing.T) {
	results := func() []runResult {
		return []runResult{
			{Host: "h01", Status: 0, Stdout: "h01\n", DurationMS: 120},
			{Host: "h02", Status: 4, Stdout: "out\n", Stderr: "err\n", Error: "exit status 4", DurationMS: 80, err: errors.New("exit status 4")},
			{Host: "h03", Status: -1, Error: "h03: connect to 198.18.0.3:22: host unreachable", DurationMS: 5000, err: errors.New("h03: connect to 198.18.0.3:22: host unreachable")},
		}
	}
	for _, jsonOut := range []bool{false, true} {
		var out, errb bytes.Buffer
		if err := printRunResults(&globals{stdout: &out, stderr: &errb, jsonOut: jsonOut}, results()); err != nil {
			t.Fatal(err)
		}
		ext := "text"
		if jsonOut {
			ext = "json"
		}
		golden(t, "run."+ext, streams(out.String(), errb.String()))
	}
}

// TestLiveGolden pins the live view apply draws on a terminal: every
// redraw, with the clock fixed and no ticker.
func TestLiveGolden(t *testing.T) {
	for _, c := range applyCases() {
		if c.name != "multi" && c.name != "confirmed" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var errb bytes.Buffer
			clock := t0
			v := &liveView{w: &errb, total: len(c.results), start: t0, now: func() time.Time { return clock }, width: 60,
				hosts: map[string]*liveHost{}, counts: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
			close(v.done) // no ticker: only events redraw
			for _, e := range c.events {
				clock = e.At.Add(50 * time.Millisecond)
				v.event(e)
			}
			v.close()
			golden(t, "apply_"+c.name+".live", errb.String())
		})
	}
}
