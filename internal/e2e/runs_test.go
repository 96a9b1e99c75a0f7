package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

type runsList struct {
	Dir  string `json:"dir"`
	Runs []struct {
		ID        string         `json:"id"`
		Hosts     int            `json:"hosts"`
		Snapshots int            `json:"snapshots"`
		Open      string         `json:"open"`
		Outcomes  map[string]int `json:"outcomes"`
	} `json:"runs"`
	Usage struct {
		Runs    int   `json:"runs"`
		Objects int   `json:"objects"`
		Bytes   int64 `json:"bytes"`
	} `json:"usage"`
}

type snapshotRef struct {
	SHA string `json:"sha256"`
}

// refs reads each host's snapshot ref of a run folder.
func refs(t *testing.T, runDir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(runDir, "hosts", "*.snapshot.ref"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		var r snapshotRef
		if err != nil || json.Unmarshal(b, &r) != nil || len(r.SHA) != 64 {
			t.Fatalf("%s: %s (%v)", f, b, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".snapshot.ref")] = r.SHA
	}
	return out
}

// TestRunsRetention: three applies of the same rulesets on a small lab.
// The second and the third find each host as the first left it, so they
// share its snapshot object: one object per host content. The automatic
// retention removed the planted run folders older than 30 days, but not
// the one that keeps an armed transaction's token. runs prune --keep 1
// then leaves the newest run, which report and runs show still read.
func TestRunsRetention(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	inv := hostRulesetInventory(t, l)
	state := t.TempDir()
	runsDir := filepath.Join(state, "lifeline", "runs")

	// Two runs from 40 days ago, one still holding a kept token.
	old := time.Now().Add(-40 * 24 * time.Hour).UTC().Format("20060102T150405Z")
	gone, open := filepath.Join(runsDir, old+"-00000001"), filepath.Join(runsDir, old+"-00000002")
	for _, d := range []string{gone, open} {
		if err := os.MkdirAll(filepath.Join(d, "hosts"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "hosts", "h01.json"), []byte(`{"host":"h01","outcome":"confirmed"}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tx := fmt.Sprintf(`{"host":"h01","tx_id":"T","token":"x","local_deadline":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(open, "hosts", "h01.tx.json"), []byte(tx), 0o600); err != nil {
		t.Fatal(err)
	}

	var runDirs []string
	for i := 0; i < 3; i++ {
		stdout, stderr, code := cliState(t, state, "-i", inv, "--json", "apply", "all")
		var doc struct {
			applyDoc
			RunDir string `json:"run_dir"`
		}
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 || doc.Counts["confirmed"] != len(l.Hosts) {
			t.Fatalf("apply %d: exit %d (%v)\n%s\n%s", i+1, code, err, stdout, stderr)
		}
		runDirs = append(runDirs, doc.RunDir)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the 40-day-old run %s is still there after three runs (%v)", gone, err)
	}
	if _, err := os.Stat(open); err != nil {
		t.Errorf("the old run keeping an armed token was removed: %v", err)
	}

	// Dedup: runs 2 and 3 refer to the same object per host; the store
	// holds exactly one object per distinct content.
	contents := map[string]bool{}
	per := make([]map[string]string, len(runDirs))
	for i, d := range runDirs {
		per[i] = refs(t, d)
		if len(per[i]) != len(l.Hosts) {
			t.Fatalf("run %d: %d snapshot refs, want %d: %v", i+1, len(per[i]), len(l.Hosts), per[i])
		}
		for _, sha := range per[i] {
			contents[sha] = true
		}
		if old, _ := filepath.Glob(filepath.Join(d, "hosts", "*.snapshot.json")); len(old) != 0 {
			t.Errorf("run %d wrote whole snapshots into its folder: %v", i+1, old)
		}
	}
	for h, sha := range per[1] {
		if per[2][h] != sha {
			t.Errorf("%s: runs 2 and 3 saw the same firewall but refer to %s and %s", h, sha[:12], per[2][h][:12])
		}
	}
	stdout, stderr, code := cliState(t, state, "--json", "runs")
	var list runsList
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || code != 0 {
		t.Fatalf("runs: exit %d (%v)\n%s\n%s", code, err, stdout, stderr)
	}
	if list.Usage.Objects != len(contents) || list.Usage.Runs != 4 || list.Usage.Bytes <= 0 {
		t.Errorf("runs: %d objects, %d runs, %d bytes; want %d objects (one per content), 4 runs", list.Usage.Objects, list.Usage.Runs, list.Usage.Bytes, len(contents))
	}
	if len(list.Runs) != 4 || list.Runs[0].ID != filepath.Base(runDirs[2]) || list.Runs[0].Outcomes["confirmed"] != len(l.Hosts) || list.Runs[3].Open == "" {
		t.Errorf("runs list: %+v", list.Runs)
	}
	text, _, _ := cliState(t, state, "runs")
	if !strings.Contains(text, "4 runs, ") || !strings.Contains(text, fmt.Sprintf("%d snapshot objects", len(contents))) {
		t.Errorf("runs text:\n%s", text)
	}

	// A dry run removes nothing; --keep 1 keeps the newest and the open one.
	if _, _, code := cliState(t, state, "runs", "prune", "--keep", "1", "--dry-run"); code != 0 {
		t.Fatalf("prune --dry-run: exit %d", code)
	}
	for _, d := range runDirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("--dry-run removed %s", d)
		}
	}
	stdout, stderr, code = cliState(t, state, "--json", "runs", "prune", "--keep", "1")
	var rep struct {
		Removed []struct {
			ID string `json:"id"`
		} `json:"removed"`
		Protected []struct {
			ID  string `json:"id"`
			Why string `json:"why"`
		} `json:"protected"`
		Objects int   `json:"objects_removed"`
		Freed   int64 `json:"bytes_freed"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 {
		t.Fatalf("prune: exit %d (%v)\n%s\n%s", code, err, stdout, stderr)
	}
	var removed []string
	for _, r := range rep.Removed {
		removed = append(removed, r.ID)
	}
	sort.Strings(removed)
	if want := []string{filepath.Base(runDirs[0]), filepath.Base(runDirs[1])}; strings.Join(removed, " ") != strings.Join(want, " ") || rep.Freed <= 0 {
		t.Errorf("prune removed %v (freed %d), want %v", removed, rep.Freed, want)
	}
	if len(rep.Protected) != 1 || rep.Protected[0].ID != filepath.Base(open) || !strings.Contains(rep.Protected[0].Why, "armed until") {
		t.Errorf("prune protected %+v, want the run with the armed token", rep.Protected)
	}
	// Objects only run 1 referred to (the lab's first state) are gone;
	// everything the newest run refers to is there.
	left, _ := filepath.Glob(filepath.Join(runsDir, "objects", "*.json"))
	newest := map[string]bool{}
	for _, sha := range per[2] {
		newest[sha] = true
	}
	if len(left) != len(newest) {
		t.Errorf("%d objects left, want %d (the newest run's)", len(left), len(newest))
	}
	stdout, stderr, code = cliState(t, state, "--json", "report", runDirs[2])
	var merged applyDoc
	if err := json.Unmarshal([]byte(stdout), &merged); err != nil || code != 0 || merged.Counts["confirmed"] != len(l.Hosts) {
		t.Fatalf("report of the newest run: exit %d (%v)\n%s\n%s", code, err, stdout, stderr)
	}
	// Its snapshots read back: what the host had before the third apply,
	// the ruleset the first one applied.
	for _, h := range l.Hosts {
		stdout, stderr, code := cliState(t, state, "runs", "show", filepath.Base(runDirs[2]), h.Name)
		if code != 0 || !strings.Contains(stdout, "# "+h.Backend) {
			t.Fatalf("runs show %s: exit %d\n%s\n%s", h.Name, code, stdout, stderr)
		}
		rules, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "rulesets", rulesetFor(h, "good", false)))
		if err != nil {
			t.Fatal(err)
		}
		if line := firstRule(string(rules)); !strings.Contains(stdout, line) {
			t.Errorf("%s: the snapshot lacks %q of the ruleset applied before:\n%s", h.Name, line, stdout)
		}
	}
}

// TestRunsKeepArmedToken: a run whose host was left armed (apply
// --no-confirm) keeps its token through a prune that removes every other
// old run, so lifeline confirm still finds it; once confirmed, the next
// prune removes it.
func TestRunsKeepArmedToken(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	inv := hostRulesetInventory(t, l)
	state := t.TempDir()
	h1, h2 := l.Hosts[0].Name, l.Hosts[1].Name
	applyRun := func(args ...string) (string, result) {
		t.Helper()
		stdout, stderr, code := cliState(t, state, append([]string{"-i", inv, "--json", "apply"}, args...)...)
		var doc struct {
			applyDoc
			RunDir string `json:"run_dir"`
		}
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 || len(doc.Results) != 1 {
			t.Fatalf("apply %v: exit %d (%v)\n%s\n%s", args, code, err, stdout, stderr)
		}
		return doc.RunDir, doc.Results[0]
	}
	first, _ := applyRun(h2)
	armed, r := applyRun(h1, "--no-confirm", "--confirm-timeout", "2m")
	if r.Outcome != "armed" {
		t.Fatalf("--no-confirm: %s: %s", r.Outcome, r.Error)
	}
	if _, err := os.Stat(filepath.Join(armed, "hosts", h1+".tx.json")); err != nil {
		t.Fatalf("the armed run keeps no token: %v", err)
	}
	newest, _ := applyRun(h2)

	stdout, stderr, code := cliState(t, state, "runs", "prune", "--keep", "1")
	if code != 0 || !strings.Contains(stdout, "kept     "+filepath.Base(armed)) || !strings.Contains(stdout, "transaction "+r.TxID+" armed until") {
		t.Fatalf("prune --keep 1: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for dir, want := range map[string]bool{first: false, armed: true, newest: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(dir), err == nil, want)
		}
	}
	stdout, stderr, code = cliState(t, state, "-i", inv, "--json", "confirm", h1)
	var doc applyDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 || doc.Results[0].Outcome != "confirmed" {
		t.Fatalf("confirm %s after the prune: exit %d (%v)\n%s\n%s", h1, code, err, stdout, stderr)
	}
	if _, _, code := cliState(t, state, "runs", "prune", "--keep", "1"); code != 0 {
		t.Fatalf("second prune: exit %d", code)
	}
	if _, err := os.Stat(armed); !os.IsNotExist(err) {
		t.Errorf("the confirmed run %s is still there (%v)", filepath.Base(armed), err)
	}
	if _, _, code := cliState(t, state, "report", newest); code != 0 {
		t.Errorf("report of the newest run: exit %d", code)
	}
}

// firstRule is a line of a ruleset file that its backend prints back as
// written: iptables' first -A line, nft's first "table" line.
func firstRule(text string) string {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, "table ") {
			return strings.TrimSuffix(l, " {")
		}
	}
	return text
}
