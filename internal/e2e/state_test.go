package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// cliState runs lifeline with its own XDG_STATE_HOME, so that a test's
// history is its own (host names repeat across the tests' labs).
func cliState(t *testing.T, stateHome string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return cliEnv(t, ctx, []string{"XDG_STATE_HOME=" + stateHome, "NO_COLOR=1"}, args...)
}

// hostRulesetInventory gives every lab host the good ruleset of its
// backend (good.nft on nft hosts, good.v4 on iptables hosts).
func hostRulesetInventory(t *testing.T, l *lab.Lab) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "ssh_config: %s\nknown_hosts: %s\nhosts:\n", l.SSHConfig, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  %s: {ruleset: %s}\n", h.Name, filepath.Join(repoRoot, "testdata", "rulesets", rulesetFor(h, "good", false)))
	}
	p := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type snapshotLine struct {
	Host      string `json:"host"`
	ID        string `json:"id"`
	SHA       string `json:"sha256"`
	Kind      string `json:"kind"`
	TxID      string `json:"tx_id"`
	NewObject bool   `json:"new_object"`
	NewEntry  bool   `json:"new_entry"`
	Error     string `json:"error"`
}

type diffLine struct {
	Host    string `json:"host"`
	Against string `json:"against"`
	Drift   bool   `json:"drift"`
	Summary string `json:"summary"`
	Error   string `json:"error"`
}

// changedLines are the +/- lines of a text diff.
func changedLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if (strings.HasPrefix(t, "+ ") || strings.HasPrefix(t, "- ")) && !strings.HasPrefix(t, "---") {
			out = append(out, t)
		}
	}
	return out
}

// TestSnapshotHistoryDiffDrift: apply feeds the history; snapshot stores an
// unchanged state once; drift over 5 hosts finds exactly the hand edits
// (iptables -I on an iptables host, nft add rule on an nft host); diff
// against the first snapshot, the last confirmed state and another host
// shows exactly the change.
func TestSnapshotHistoryDiffDrift(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 5, InitExe: lifelineBin})
	home := t.TempDir()
	inv := hostRulesetInventory(t, l)
	run := func(args ...string) (string, string, int) {
		return cliState(t, home, append([]string{"-i", inv}, args...)...)
	}

	if out, errs, code := run("--json", "apply", "all", "--forks", "5"); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	out, errs, code := run("--json", "drift", "all", "--against-group-files")
	if code != 0 {
		t.Fatalf("drift right after apply: exit %d, want 0\n%s\n%s", code, out, errs)
	}
	if out, errs, code = run("drift", "all", "--against-last-confirmed"); code != 0 {
		t.Fatalf("drift --against-last-confirmed after apply: exit %d, want 0\n%s\n%s", code, out, errs)
	}

	snap := func() map[string]snapshotLine {
		t.Helper()
		out, errs, code := run("--json", "snapshot", "all")
		var doc []snapshotLine
		if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc) != len(l.Hosts) {
			t.Fatalf("snapshot: exit %d (%v)\n%s\n%s", code, err, out, errs)
		}
		m := map[string]snapshotLine{}
		for _, s := range doc {
			m[s.Host] = s
		}
		return m
	}
	first := snap()
	second := snap()
	for _, h := range l.Hosts {
		a, b := first[h.Name], second[h.Name]
		if b.NewObject || b.NewEntry || a.SHA != b.SHA || a.NewObject {
			t.Fatalf("%s: snapshots of an unchanged host (after its confirmed apply) stored anew: %+v then %+v", h.Name, a, b)
		}
		objs, _ := filepath.Glob(filepath.Join(home, "lifeline", "history", h.Name, "objects", "*.json"))
		if len(objs) != 1 {
			t.Fatalf("%s: %d objects after apply + two snapshots of one state, want 1: %v", h.Name, len(objs), objs)
		}
	}

	// hand edits, the way an operator would make them
	var iptHost, nftHost *lab.Host
	for _, h := range l.Hosts {
		switch {
		case h.Backend == lab.BackendIptablesNft && iptHost == nil:
			iptHost = h
		case h.Backend == lab.BackendNft && nftHost == nil:
			nftHost = h
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b, err := l.Exec(ctx, iptHost.Name, "iptables", "-I", "INPUT", "2", "-s", "203.0.113.9/32", "-j", "DROP"); err != nil {
		t.Fatalf("%s: iptables -I: %v\n%s", iptHost.Name, err, b)
	}
	if b, err := l.Exec(ctx, nftHost.Name, "nft", "add", "rule", "inet", "filter", "input", "tcp", "dport", "9999", "drop"); err != nil {
		t.Fatalf("%s: nft add rule: %v\n%s", nftHost.Name, err, b)
	}
	edited := map[string]string{iptHost.Name: "203.0.113.9", nftHost.Name: "9999"}

	for _, mode := range [][]string{{"--against-group-files"}, {"--against-last-confirmed"}} {
		out, errs, code = run(append([]string{"--json", "drift", "all"}, mode...)...)
		var doc []diffLine
		if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 {
			t.Fatalf("drift %v after the edits: exit %d, want 1 (%v)\n%s\n%s", mode, code, err, out, errs)
		}
		for _, d := range doc {
			if _, want := edited[d.Host]; d.Drift != want || d.Error != "" {
				t.Fatalf("drift %v: %s drift=%v error=%q, want drift=%v", mode, d.Host, d.Drift, d.Error, want)
			}
		}
		text, _, _ := run(append([]string{"-v", "drift", "all"}, mode...)...)
		ch := changedLines(text)
		if len(ch) != 2 || !strings.Contains(strings.Join(ch, "\n"), "203.0.113.9") || !strings.Contains(strings.Join(ch, "\n"), "9999") {
			t.Fatalf("drift -v %v: want exactly the two added rules, got %q\n%s", mode, ch, text)
		}
	}

	third := snap()
	for _, h := range l.Hosts {
		_, isEdited := edited[h.Name]
		if third[h.Name].NewEntry != isEdited {
			t.Fatalf("%s: snapshot after the edits: new entry %v, want %v", h.Name, third[h.Name].NewEntry, isEdited)
		}
	}
	out, _, code = run("--json", "history", iptHost.Name)
	var hist []snapshotLine
	if err := json.Unmarshal([]byte(out), &hist); err != nil || code != 0 || len(hist) != 2 || hist[0].Kind != "confirmed" || hist[0].TxID == "" || hist[1].Kind != "snapshot" {
		t.Fatalf("history %s: exit %d, want the apply's confirmed entry then one snapshot (%v):\n%s", iptHost.Name, code, err, out)
	}

	// diff against the first snapshot: exactly the change
	text, errs, code := run("diff", iptHost.Name, first[iptHost.Name].ID)
	if ch := changedLines(text); code != 1 || len(ch) != 1 || !strings.HasPrefix(ch[0], "+") || !strings.Contains(ch[0], "203.0.113.9") {
		t.Fatalf("diff %s vs its first snapshot: exit %d, changed lines %q\n%s\n%s", iptHost.Name, code, ch, text, errs)
	}
	if text, errs, code = run("diff", iptHost.Name, hist[1].ID); code != 0 {
		t.Fatalf("diff %s vs the snapshot of now: exit %d, want 0\n%s\n%s", iptHost.Name, code, text, errs)
	}
	// default: the last confirmed state
	if text, errs, code = run("diff", nftHost.Name); code != 1 || len(changedLines(text)) != 1 {
		t.Fatalf("diff %s (vs last confirmed): exit %d\n%s\n%s", nftHost.Name, code, text, errs)
	}
	// another host with the same ruleset, without the edit
	var twin *lab.Host
	for _, h := range l.Hosts {
		if h.Backend == lab.BackendNft && h != nftHost {
			twin = h
		}
	}
	if twin != nil {
		text, errs, code = run("diff", nftHost.Name, twin.Name)
		if ch := changedLines(text); code != 1 || len(ch) != 1 || !strings.Contains(ch[0], "9999") {
			t.Fatalf("diff %s %s: exit %d, changed %q\n%s\n%s", nftHost.Name, twin.Name, code, ch, text, errs)
		}
	}
	// a ruleset file, as the kernel would hold it
	text, errs, code = run("diff", iptHost.Name, filepath.Join(repoRoot, "testdata", "rulesets", "good.v4"))
	if ch := changedLines(text); code != 1 || len(ch) != 1 || !strings.Contains(ch[0], "203.0.113.9") {
		t.Fatalf("diff %s good.v4: exit %d, changed %q\n%s\n%s", iptHost.Name, code, ch, text, errs)
	}
	// show prints the state recorded
	if text, errs, code = run("show", iptHost.Name); code != 0 || !strings.Contains(text, "203.0.113.9") {
		t.Fatalf("show %s: exit %d\n%s\n%s", iptHost.Name, code, text, errs)
	}
	// an unknown snapshot is an error (2), naming the host
	if text, errs, code = run("diff", iptHost.Name, "abcdef12"); code != 2 || !strings.Contains(text+errs, iptHost.Name) {
		t.Fatalf("diff against a missing snapshot: exit %d, want 2\n%s\n%s", code, text, errs)
	}
}

// countedRuleset is good.* plus a counted drop of udp/7777.
func countedRuleset(t *testing.T, h *lab.Host) string {
	t.Helper()
	base, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "rulesets", rulesetFor(h, "good", false)))
	if err != nil {
		t.Fatal(err)
	}
	text := string(base)
	if h.Backend == lab.BackendNft {
		text = strings.Replace(text, "\t\tiif \"lo\" accept\n", "\t\tudp dport 7777 counter drop comment \"udp7777\"\n\t\tiif \"lo\" accept\n", 1)
	} else {
		text = strings.Replace(text, "-A INPUT -i lo -j ACCEPT\n", "-A INPUT -p udp -m udp --dport 7777 -m comment --comment \"udp7777\" -j DROP\n-A INPUT -i lo -j ACCEPT\n", 1)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(rulesetFor(h, "counted", false)))
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type countersReading struct {
	Interval time.Duration `json:"interval_ns"`
	Counters []struct {
		Host         string `json:"host"`
		Table        string `json:"table"`
		Chain        string `json:"chain"`
		Text         string `json:"text"`
		Comment      string `json:"comment"`
		Policy       bool   `json:"policy"`
		Packets      uint64 `json:"packets"`
		DeltaPackets uint64 `json:"delta_packets"`
	} `json:"counters"`
	Errors map[string]string `json:"errors"`
}

// TestCountersWatch: while another lab host sends 40 datagrams at a
// counted DROP rule of one host, counters --watch lists that rule first
// with a delta of exactly those packets; --zero resets an iptables host.
func TestCountersWatch(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	home := t.TempDir()
	for _, h := range l.Hosts {
		if out, errs, code := cliState(t, home, "-F", l.SSHConfig, "--json", "apply", h.Name, countedRuleset(t, h)); code != 0 {
			t.Fatalf("%s: apply: exit %d\n%s\n%s", h.Name, code, out, errs)
		}
	}
	for i, target := range l.Hosts {
		sender := l.Hosts[(i+1)%len(l.Hosts)]
		t.Run(target.Backend, func(t *testing.T) {
			const sent = 40
			go func() {
				time.Sleep(2 * time.Second) // inside the first interval
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				script := fmt.Sprintf("for i in $(seq %d); do echo x > /dev/udp/%s/7777; done", sent, target.Address)
				if out, err := l.Exec(ctx, sender.Name, "bash", "-c", script); err != nil {
					t.Errorf("send from %s: %v\n%s", sender.Name, err, out)
				}
			}()
			out, errs, code := cliState(t, home, "-F", l.SSHConfig, "--json", "counters", target.Name+","+sender.Name, "--watch", "6s", "--count", "1", "--top", "5", "--drops")
			if code != 0 {
				t.Fatalf("counters --watch: exit %d\n%s\n%s", code, out, errs)
			}
			// one document per interval
			var interval countersReading
			if err := json.Unmarshal([]byte(out), &interval); err != nil || interval.Interval != 6*time.Second {
				t.Fatalf("interval reading: %v\n%s", err, out)
			}
			if len(interval.Counters) == 0 {
				t.Fatalf("nothing counted in the interval:\n%s", out)
			}
			top := interval.Counters[0]
			if top.Host != target.Name || top.Comment != "udp7777" && !strings.Contains(top.Text, "udp7777") || top.DeltaPackets != sent {
				t.Fatalf("top of the interval: %+v, want %s's udp7777 drop with %d packets\n%s", top, target.Name, sent, out)
			}
		})
	}
	for _, h := range l.Hosts {
		if h.Backend == lab.BackendNft {
			continue
		}
		out, errs, code := cliState(t, home, "-F", l.SSHConfig, "--json", "counters", h.Name, "--zero", "--yes", "--top", "0")
		if code != 0 || !strings.Contains(out, `"zeroed"`) {
			t.Fatalf("%s: counters --zero: exit %d\n%s\n%s", h.Name, code, out, errs)
		}
		out, _, _ = cliState(t, home, "-F", l.SSHConfig, "--json", "counters", h.Name, "--top", "0")
		var after countersReading
		if err := json.Unmarshal([]byte(out), &after); err != nil {
			t.Fatal(err)
		}
		for _, c := range after.Counters {
			if c.Comment == "udp7777" && c.Packets != 0 {
				t.Fatalf("%s: after --zero the udp7777 rule still counts %d", h.Name, c.Packets)
			}
		}
	}
}
