package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/runstore"
	"github.com/lifeline-dev/lifeline/wire"
)

// runsFixture writes a run store as lifeline versions wrote it: r1 in the
// layout before objects (the snapshot in the host's folder), r2..r4 with
// refs; r3 keeps an armed transaction's token; r2 and r3 saw h01 alike.
func runsFixture(t *testing.T, root string) (r1, r2, r3, r4 string) {
	t.Helper()
	r1, r2, r3, r4 = "20260102T030405Z-00000001", "20260103T030405Z-00000002", "20260104T030405Z-00000003", "20260105T030405Z-00000004"
	taken := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	result := func(run, host, outcome string) {
		dir := filepath.Join(root, run, "hosts")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b := fmt.Sprintf(`{"host":%q,"outcome":%q,"phase":"confirm","tx_id":"%s-tx","timings":[],"ssh_connections":2,"round_trips":4,"bytes_uploaded":0,"took_ns":1}`, host, outcome, run[:16])
		if err := os.WriteFile(filepath.Join(dir, host+".json"), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snap := func(run, host, text string) {
		if _, err := runstore.PutSnapshot(filepath.Join(root, run), host, &wire.Snapshot{Taken: taken, Parts: []wire.Part{{Backend: "nft", Format: wire.FormatNft, Text: text}}}); err != nil {
			t.Fatal(err)
		}
	}
	result(r1, "h01", "confirmed")
	old, _ := json.Marshal(&wire.Snapshot{Taken: taken, Parts: []wire.Part{{Backend: "iptables-nft", Format: wire.FormatIPTables, Text: "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"}}})
	if err := os.WriteFile(filepath.Join(root, r1, "hosts", "h01.snapshot.json"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	result(r2, "h01", "confirmed")
	result(r2, "h02", "reverted")
	snap(r2, "h01", "table inet filter {\n}\n")
	snap(r2, "h02", "table inet only-r2 {\n}\n")
	result(r3, "h01", "armed")
	snap(r3, "h01", "table inet filter {\n}\n")
	tx := `{"host":"h01","tx_id":"T3","token":"secret","local_deadline":"2999-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(root, r3, "hosts", "h01.tx.json"), []byte(tx), 0o600); err != nil {
		t.Fatal(err)
	}
	result(r4, "h01", "confirmed")
	snap(r4, "h01", "table inet filter {\n\tchain input {\n\t}\n}\n")
	return r1, r2, r3, r4
}

// TestRunsCommands walks lifeline runs over a run store with both layouts:
// list, show (old and new layout), report, prune --dry-run, prune --keep 1
// (the open run stays, the object only r2 used goes, shared ones stay),
// then prune with no flag (the default retention: these runs are old).
func TestRunsCommands(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("LIFELINE_INVENTORY", "")
	t.Setenv("LIFELINE_RUNS_KEEP", "")
	t.Setenv("LIFELINE_RUNS_OLDER_THAN", "")
	root := filepath.Join(state, "lifeline", "runs")
	r1, r2, r3, r4 := runsFixture(t, root)
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), args: args}
		c := newRootCmd(g)
		c.SetArgs(args)
		code := exitCode(g, c.Execute())
		return strings.ReplaceAll(out.String(), root, "$RUNS"), strings.ReplaceAll(errb.String(), root, "$RUNS"), code
	}
	exists := func(id string) bool { _, err := os.Stat(filepath.Join(root, id)); return err == nil }

	steps := []struct {
		name   string
		args   []string
		code   int
		golden string   // compare stdout with testdata/golden/NAME.golden
		want   []string // or: stdout contains each
		after  func(t *testing.T)
	}{
		{name: "list", args: []string{"runs"}, golden: "runs_list.text"},
		{name: "list json", args: []string{"--json", "runs", "list"}, want: []string{`"objects": 3`, `"runs": 4`, `"open": "h01: transaction T3 armed until 2999-01-01T00:00:00Z"`}},
		{name: "show new layout", args: []string{"runs", "show", r2}, want: []string{"h01   confirmed", "h02   reverted", "20260103T030405Z-tx"}},
		{name: "show old layout", args: []string{"runs", "show", r1}, want: []string{"(old layout)"}},
		{name: "show old snapshot", args: []string{"runs", "show", r1, "h01"}, golden: "runs_show_old.text"},
		{name: "show snapshot by folder", args: []string{"runs", "show", filepath.Join(root, r2), "h02"}, want: []string{"# nft (nft), taken 2026-01-02T03:04:05Z\ntable inet only-r2 {\n}\n"}},
		{name: "show a host the run lacks", args: []string{"runs", "show", r2, "h09"}, code: 1},
		{name: "show not a run id", args: []string{"runs", "show", "latest"}, code: 2},
		{name: "report reads refs' folders", args: []string{"report", filepath.Join(root, r4)}, want: []string{"h01"}},
		{name: "report of a run with a revert", args: []string{"report", filepath.Join(root, r2)}, code: 1},
		{name: "prune dry run", args: []string{"runs", "prune", "--keep", "1", "--dry-run"}, golden: "runs_prune_dry.text", after: func(t *testing.T) {
			for _, id := range []string{r1, r2, r3, r4} {
				if !exists(id) {
					t.Errorf("--dry-run removed %s", id)
				}
			}
		}},
		{name: "prune keep 1", args: []string{"--json", "runs", "prune", "--keep", "1"}, want: []string{`"objects_removed": 1`, `"keep": 1`, `"older_than": "0"`}, after: func(t *testing.T) {
			for id, want := range map[string]bool{r1: false, r2: false, r3: true, r4: true} {
				if exists(id) != want {
					t.Errorf("%s exists %v, want %v", id, !want, want)
				}
			}
			for _, id := range []string{r3, r4} {
				if _, err := runstore.Snapshot(filepath.Join(root, id), "h01"); err != nil {
					t.Errorf("kept run: %v", err)
				}
			}
		}},
		{name: "prune with no flag: the default retention", args: []string{"runs", "prune"}, want: []string{"policy: keep the newest 50 runs, none older than 30d", "removed  " + r4 + "  285 B  older than 30d", "kept     " + r3 + "  364 B  open: h01: transaction T3"}, after: func(t *testing.T) {
			if exists(r4) || !exists(r3) {
				t.Errorf("r4 exists %v (want false), r3 exists %v (want true)", exists(r4), exists(r3))
			}
		}},
		{name: "bad age", args: []string{"runs", "prune", "--older-than", "soon"}, code: 2},
		{name: "bad count", args: []string{"runs", "prune", "--keep", "-1"}, code: 2},
	}
	for _, st := range steps {
		stdout, stderr, code := run(st.args...)
		if code != st.code {
			t.Fatalf("%s: %v: exit %d, want %d\nstdout: %s\nstderr: %s", st.name, st.args, code, st.code, stdout, stderr)
		}
		if st.golden != "" {
			golden(t, st.golden, stdout)
		}
		for _, w := range st.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: stdout lacks %q:\n%s", st.name, w, stdout)
			}
		}
		if st.after != nil {
			st.after(t)
		}
	}
}
