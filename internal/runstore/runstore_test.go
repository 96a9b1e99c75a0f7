package runstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func runID(at time.Time, n int) string {
	return at.UTC().Format("20060102T150405Z") + fmt.Sprintf("-%08x", n)
}

func snap(text string, taken time.Time) *wire.Snapshot {
	return &wire.Snapshot{Taken: taken, Parts: []wire.Part{{Backend: "nft", Format: wire.FormatNft, Text: text}}}
}

// makeRun writes a run folder as session's save does: per host a result
// and a snapshot (host -> ruleset text).
func makeRun(t *testing.T, root, id string, hosts map[string]string) string {
	t.Helper()
	dir := filepath.Join(root, id)
	for h, text := range hosts {
		if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts", h+".json"), []byte(`{"host":"`+h+`","outcome":"confirmed"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		st, _ := runTime(id)
		if _, err := PutSnapshot(dir, h, snap(text, st)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func objectNames(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, ObjectsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func TestSelect(t *testing.T) {
	day := 24 * time.Hour
	runs := func(ages ...time.Duration) []Run {
		var out []Run
		for i, a := range ages { // newest first
			out = append(out, Run{ID: runID(t0.Add(-a), i), Start: t0.Add(-a)})
		}
		return out
	}
	tests := []struct {
		name   string
		runs   []Run
		p      Policy
		modify func([]Run)
		want   []bool // removed, per run
		why    map[int]string
	}{
		{"count only", runs(1*day, 2*day, 3*day, 4*day), Policy{Keep: 2}, nil, []bool{false, false, true, true}, map[int]string{2: "not among the newest 2"}},
		{"age only", runs(1*day, 10*day, 40*day), Policy{OlderThan: 30 * day}, nil, []bool{false, false, true}, map[int]string{2: "older than 30d"}},
		{"either limit removes", runs(1*day, 40*day, 41*day), Policy{Keep: 2, OlderThan: 30 * day}, nil, []bool{false, true, true}, map[int]string{1: "older than 30d", 2: "not among the newest 2, older than 30d"}},
		{"no limits: nothing", runs(1*day, 400*day), Policy{}, nil, []bool{false, false}, nil},
		{"the run being written stays", runs(1*day, 2*day), Policy{Keep: 1, Except: runID(t0.Add(-2*day), 1)}, nil, []bool{false, false}, map[int]string{1: "the run being written"}},
		{"open stays", runs(0, 1*day, 2*day), Policy{Keep: 1}, func(r []Run) { r[1].Open = "h01: transaction T armed until X" }, []bool{false, false, true}, map[int]string{1: "open: h01: transaction T armed until X"}},
		{"busy stays", runs(0, 1*day), Policy{Keep: 1}, func(r []Run) { r[1].Busy = true }, []bool{false, false}, map[int]string{1: "in use by another lifeline process"}},
		{"young stays with MinAge", runs(0, 10*time.Minute, 2*time.Hour), Policy{Keep: 1, MinAge: time.Hour}, nil, []bool{false, false, true}, map[int]string{1: "started less than 1h0m0s ago"}},
		{"keep 1 keeps only the newest", runs(0, time.Minute, 2*time.Minute), Policy{Keep: 1}, nil, []bool{false, true, true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Now = t0
			if tc.modify != nil {
				tc.modify(tc.runs)
			}
			got := Select(tc.runs, tc.p)
			var removed []bool
			for _, d := range got {
				removed = append(removed, d.Remove)
			}
			if !reflect.DeepEqual(removed, tc.want) {
				t.Fatalf("removed %v, want %v (%+v)", removed, tc.want, got)
			}
			for i, why := range tc.why {
				if got[i].Why != why {
					t.Errorf("run %d: why %q, want %q", i, got[i].Why, why)
				}
			}
		})
	}
}

// TestDedup: two runs with identical snapshots store one object; each
// reads back with its own time; another content is another object.
func TestDedup(t *testing.T) {
	root := t.TempDir()
	a := makeRun(t, root, runID(t0, 1), map[string]string{"h01": "table inet a {}\n", "h02": "table inet b {}\n"})
	b := makeRun(t, root, runID(t0.Add(time.Hour), 2), map[string]string{"h01": "table inet a {}\n", "h02": "table inet b {}\n"})
	if got := objectNames(t, root); len(got) != 2 {
		t.Fatalf("objects %v, want 2 (one per content)", got)
	}
	for _, dir := range []string{a, b} {
		s, err := Snapshot(dir, "h01")
		if err != nil {
			t.Fatal(err)
		}
		st, _ := runTime(filepath.Base(dir))
		if !s.Taken.Equal(st) || len(s.Parts) != 1 || s.Parts[0].Text != "table inet a {}\n" {
			t.Errorf("%s: read back %+v", dir, s)
		}
	}
	makeRun(t, root, runID(t0.Add(2*time.Hour), 3), map[string]string{"h01": "table inet changed {}\n"})
	if got := objectNames(t, root); len(got) != 3 {
		t.Fatalf("objects %v, want 3", got)
	}
}

// TestSnapshotOldLayout: a run folder written before objects (the snapshot
// in HOST.snapshot.json) reads as before; a damaged object is an error.
func TestSnapshotOldLayout(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, runID(t0, 1))
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(snap("*filter\nCOMMIT\n", t0), "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "hosts", "h01.snapshot.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Snapshot(dir, "h01")
	if err != nil || s.Parts[0].Text != "*filter\nCOMMIT\n" || !s.Taken.Equal(t0) {
		t.Fatalf("old layout: %+v, %v", s, err)
	}
	if _, err := Snapshot(dir, "h02"); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing: %v, want ErrNoSnapshot", err)
	}
	ref, err := PutSnapshot(dir, "h03", snap("table ip x {}\n", t0))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ObjectsDir, ref.SHA+".json"), []byte(`{"parts":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Snapshot(dir, "h03"); err == nil || !strings.Contains(err.Error(), "does not match its sha256") {
		t.Fatalf("damaged object: %v", err)
	}
	runs, _ := ListRuns(root)
	if err := Inspect(&runs[0], t0, false, true); err != nil || runs[0].Snapshots != 2 || runs[0].Hosts != 0 {
		t.Fatalf("inspect: %+v %v", runs[0], err)
	}
}

// TestPrune: the newest run stays readable, the others go, and so do the
// objects only they referred to; open and busy runs stay; a dry run
// reports what the real one frees.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	old := makeRun(t, root, runID(t0.Add(-3*time.Hour), 1), map[string]string{"h01": "old only\n", "h02": "shared\n"})
	openRun := makeRun(t, root, runID(t0.Add(-2*time.Hour), 2), map[string]string{"h01": "open only\n"})
	tx := fmt.Sprintf(`{"host":"h01","tx_id":"T1","token":"x","local_deadline":%q}`, t0.Add(10*time.Minute).Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(openRun, "hosts", "h01.tx.json"), []byte(tx), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := makeRun(t, root, runID(t0.Add(-90*time.Minute), 3), map[string]string{"h01": "stale only\n"})
	staleTx := fmt.Sprintf(`{"host":"h01","tx_id":"T0","token":"x","local_deadline":%q}`, t0.Add(-25*time.Hour).Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(stale, "hosts", "h01.tx.json"), []byte(staleTx), 0o600); err != nil {
		t.Fatal(err)
	}
	busy := makeRun(t, root, runID(t0.Add(-time.Hour), 4), map[string]string{"h01": "busy only\n"})
	l, err := Hold(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	newest := makeRun(t, root, runID(t0, 5), map[string]string{"h01": "new\n", "h02": "shared\n"})
	if err := os.Mkdir(filepath.Join(root, "not-a-run"), 0o700); err != nil {
		t.Fatal(err)
	}

	p := Policy{Keep: 1, Now: t0}
	dry, err := Prune(root, p, true, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := objectNames(t, root); len(got) != 6 {
		t.Fatalf("dry run removed objects: %v", got)
	}
	rep, err := Prune(root, p, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ds []Decision) []string {
		var out []string
		for _, d := range ds {
			out = append(out, filepath.Base(d.Dir))
		}
		sort.Strings(out)
		return out
	}
	if got, want := ids(rep.Removed), []string{filepath.Base(old), filepath.Base(stale)}; !reflect.DeepEqual(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if got, want := ids(rep.Protected), []string{filepath.Base(openRun), filepath.Base(busy)}; !reflect.DeepEqual(got, want) {
		t.Errorf("protected %v, want %v", got, want)
	}
	if rep.Objects != 2 || rep.Freed <= rep.ObjectBytes || rep.Freed != dry.Freed || dry.Objects != 2 {
		t.Errorf("report %+v, dry %+v: want 2 objects (old only, stale only) and the same bytes", rep, dry)
	}
	for _, dir := range []string{newest, openRun, busy} {
		for _, h := range []string{"h01"} {
			if _, err := Snapshot(dir, h); err != nil {
				t.Errorf("kept run: %v", err)
			}
		}
	}
	if _, err := Snapshot(newest, "h02"); err != nil {
		t.Errorf("an object shared with a removed run: %v", err)
	}
	for _, dir := range []string{old, stale} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there", dir)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "not-a-run")); err != nil {
		t.Errorf("a folder that is not a run was touched: %v", err)
	}
}

// TestPruneInterrupted: a prune stopped at any step (as by a crash) never
// leaves a kept run with a missing object, and the next prune finishes
// the job.
func TestPruneInterrupted(t *testing.T) {
	steps := []struct {
		step string
		nth  int
	}{{"renamed", 1}, {"removed", 1}, {"renamed", 2}, {"swept", 1}, {"swept", 2}}
	for _, st := range steps {
		t.Run(fmt.Sprintf("%s#%d", st.step, st.nth), func(t *testing.T) {
			root := t.TempDir()
			var kept []string
			for i := 0; i < 4; i++ {
				dir := makeRun(t, root, runID(t0.Add(time.Duration(i)*time.Hour), i), map[string]string{
					"h01": "shared\n", "h02": fmt.Sprintf("run %d\n", i),
				})
				if i >= 2 {
					kept = append(kept, dir)
				}
			}
			n := 0
			crash := errors.New("crash")
			testHook = func(step, _ string) error {
				if step == st.step {
					if n++; n == st.nth {
						return crash
					}
				}
				return nil
			}
			_, err := Prune(root, Policy{Keep: 2, Now: t0.Add(4 * time.Hour)}, false, time.Second)
			testHook = nil
			if !errors.Is(err, crash) {
				t.Fatalf("prune: %v, want the crash", err)
			}
			check := func() {
				for _, dir := range kept {
					for _, h := range []string{"h01", "h02"} {
						if _, err := Snapshot(dir, h); err != nil {
							t.Fatalf("after the crash: %v", err)
						}
					}
				}
			}
			check()
			// The next explicit prune (lifeline runs prune sweeps always).
			if _, err := Prune(root, Policy{Keep: 2, Now: t0.Add(4 * time.Hour), Sweep: true}, false, time.Second); err != nil {
				t.Fatal(err)
			}
			check()
			if got := objectNames(t, root); len(got) != 3 {
				t.Errorf("objects %v, want 3 (shared, run 2, run 3)", got)
			}
			if trash, _ := filepath.Glob(filepath.Join(root, trashPrefix+"*")); len(trash) != 0 {
				t.Errorf("trash left: %v", trash)
			}
			runs, _ := ListRuns(root)
			if len(runs) != 2 {
				t.Errorf("%d runs left, want 2", len(runs))
			}
		})
	}
}

// TestSweepSkipsWhileWriting: a writer holding the objects lock (storing a
// snapshot) makes the sweep wait, then skip; nothing is removed.
func TestSweepSkipsWhileWriting(t *testing.T) {
	root := t.TempDir()
	makeRun(t, root, runID(t0, 1), map[string]string{"h01": "a\n"})
	makeRun(t, root, runID(t0.Add(time.Hour), 2), map[string]string{"h01": "b\n"})
	l, err := flock(filepath.Join(root, ObjectsDir, lockFile), syscall.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Prune(root, Policy{Keep: 1, Now: t0.Add(2 * time.Hour)}, false, 100*time.Millisecond)
	l.Close()
	if err != nil || rep.SweepSkipped == "" || rep.Objects != 0 || len(rep.Removed) != 1 {
		t.Fatalf("report %+v, %v: want the run removed and the sweep skipped", rep, err)
	}
	if got := objectNames(t, root); len(got) != 2 {
		t.Fatalf("objects %v", got)
	}
	rep, err = Prune(root, Policy{Keep: 1, Now: t0.Add(2 * time.Hour)}, false, time.Second)
	if err != nil || rep.Objects != 0 {
		t.Fatalf("automatic prune with nothing to remove: %+v, %v: want no sweep", rep, err)
	}
	if err := os.WriteFile(filepath.Join(root, ObjectsDir, ".tmp-123"), []byte("half an object"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err = Prune(root, Policy{Keep: 1, Now: t0.Add(2 * time.Hour), Sweep: true}, false, time.Second)
	if err != nil || rep.Objects != 1 {
		t.Fatalf("next prune: %+v, %v: want the orphan swept", rep, err)
	}
	if _, err := os.Stat(filepath.Join(root, ObjectsDir, ".tmp-123")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a crashed writer's temporary file is left: %v", err)
	}
}

// TestSweepStopsAtADamagedRef: a ref that cannot be read stops the sweep
// before it removes anything: the sweep cannot know what it refers to.
func TestSweepStopsAtADamagedRef(t *testing.T) {
	root := t.TempDir()
	makeRun(t, root, runID(t0, 1), map[string]string{"h01": "a\n"})
	keep := makeRun(t, root, runID(t0.Add(time.Hour), 2), map[string]string{"h01": "b\n", "h02": "c\n"})
	if err := os.WriteFile(filepath.Join(keep, "hosts", "h02.snapshot.ref"), []byte("{trunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Prune(root, Policy{Keep: 1, Now: t0.Add(2 * time.Hour)}, false, time.Second)
	if err == nil || !strings.Contains(err.Error(), "nothing swept") {
		t.Fatalf("prune: %v, want the damaged ref named", err)
	}
	if got := objectNames(t, root); len(got) != 3 {
		t.Fatalf("objects %v: want all 3 kept", got)
	}
}

// BenchmarkAutoPrune: the prune after a run, with 50 runs of 200 hosts
// kept, one removed: the mark reads every kept ref.
func BenchmarkAutoPrune(b *testing.B) {
	root := b.TempDir()
	mk := func(i int) {
		dir := filepath.Join(root, runID(t0.Add(time.Duration(i)*time.Minute), i))
		for h := 0; h < 200; h++ {
			if _, err := PutSnapshot(dir, fmt.Sprintf("h%03d", h), snap(fmt.Sprintf("host %d\n", h), t0)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := 0; i < 50; i++ {
		mk(i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		mk(50 + i)
		b.StartTimer()
		rep, err := Prune(root, Policy{Keep: 50, Now: t0.Add(24 * time.Hour)}, false, time.Second)
		if err != nil || len(rep.Removed) != 1 {
			b.Fatalf("%+v %v", rep, err)
		}
	}
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"30d", 30 * 24 * time.Hour, false},
		{"12h", 12 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"0", 0, false},
		{"-1d", 0, true},
		{"1.5d", 0, true},
		{"d", 0, true},
		{"-5h", 0, true},
		{"soon", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseAge(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseAge(%q) = %v, %v", tc.in, got, err)
		}
	}
	for in, want := range map[string]int{"0": 0, "50": 50} {
		if got, err := ParseKeep(in); err != nil || got != want {
			t.Errorf("ParseKeep(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"-1", "x", "5x", ""} {
		if _, err := ParseKeep(in); err == nil {
			t.Errorf("ParseKeep(%q) accepted", in)
		}
	}
}

// TestStable: counters and iptables-save's dates do not make two snapshots
// of one firewall differ; rules do.
func TestStable(t *testing.T) {
	tests := []struct {
		name   string
		format wire.Format
		a, b   string
		same   bool
	}{
		{"iptables dates and chain counters", wire.FormatIPTables,
			"# Generated by iptables-save v1.8.9 (nf_tables) on Fri Dec  4 10:00:00 2026\n*filter\n:INPUT ACCEPT [10:2000]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n# Completed on Fri Dec  4 10:00:00 2026\n",
			"# Generated by iptables-save v1.8.9 (nf_tables) on Fri Dec  4 11:30:00 2026\n*filter\n:INPUT ACCEPT [99:12345]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n# Completed on Fri Dec  4 11:30:00 2026\n", true},
		{"iptables rule counters (-c)", wire.FormatIPTables,
			"*filter\n:INPUT DROP [0:0]\n[5:300] -A INPUT -j ACCEPT\nCOMMIT\n",
			"*filter\n:INPUT DROP [0:0]\n[7:420] -A INPUT -j ACCEPT\nCOMMIT\n", true},
		{"iptables rules differ", wire.FormatIP6Tables,
			"*filter\n:INPUT ACCEPT [1:1]\n-A INPUT -j ACCEPT\nCOMMIT\n",
			"*filter\n:INPUT ACCEPT [1:1]\n-A INPUT -j DROP\nCOMMIT\n", false},
		{"nft counters", wire.FormatNft,
			"table inet f {\n\tchain in {\n\t\ttcp dport 22 counter packets 1 bytes 60 accept\n\t}\n}\n",
			"table inet f {\n\tchain in {\n\t\ttcp dport 22 counter packets 900 bytes 54000 accept\n\t}\n}\n", true},
		{"nft rules differ", wire.FormatNft, "table inet f {\n}\n", "table inet g {\n}\n", false},
		{"a comment of the user's stays", wire.FormatIPTables, "# mine\n*filter\nCOMMIT\n", "*filter\nCOMMIT\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, a, _ := encodeObject(&wire.Snapshot{Parts: []wire.Part{{Format: tc.format, Text: tc.a}}})
			_, b, _ := encodeObject(&wire.Snapshot{Parts: []wire.Part{{Format: tc.format, Text: tc.b}}})
			if (a == b) != tc.same {
				t.Errorf("same object %v, want %v\n%q\n%q", a == b, tc.same, Stable(wire.Part{Format: tc.format, Text: tc.a}).Text, Stable(wire.Part{Format: tc.format, Text: tc.b}).Text)
			}
		})
	}
}

// TestListRunsSameSecond: of two runs started in one second, the one
// started last is the newest, whatever their ids' random parts.
func TestListRunsSameSecond(t *testing.T) {
	root := t.TempDir()
	later, earlier := runID(t0, 0x0000aaaa), runID(t0, 0xffff0000) // the later one sorts first by id
	for i, id := range []string{earlier, later} {
		if id == later {
			l, err := Hold(filepath.Join(root, id))
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
		} else if err := os.MkdirAll(filepath.Join(root, id, "hosts"), 0o700); err != nil { // an older lifeline's: no lock file
			t.Fatal(err)
		}
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		if err := os.Chtimes(filepath.Join(root, id), at, at); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := ListRuns(root)
	if err != nil || len(runs) != 2 || runs[0].ID != later {
		t.Fatalf("ListRuns = %+v, %v: want %s first", runs, err, later)
	}
	// Inspecting (as list and prune do) must not reorder them.
	for i := range runs {
		if err := Inspect(&runs[i], t0, true, true); err != nil {
			t.Fatal(err)
		}
	}
	if again, _ := ListRuns(root); again[0].ID != later {
		t.Fatalf("after Inspect: %s first", again[0].ID)
	}
	d := Select(runs, Policy{Keep: 1, Now: t0})
	if d[0].Remove || !d[1].Remove {
		t.Fatalf("keep 1 removes %+v", d)
	}
}

// TestConcurrentPutAndPrune: runs written while prunes sweep (as parallel
// lifeline processes do; flock locks open files, so goroutines contend as
// processes would) never leave a ref whose object is gone.
func TestConcurrentPutAndPrune(t *testing.T) {
	root := t.TempDir()
	const writers, runsEach = 4, 6
	done := make(chan struct{})
	errs := make(chan error, writers*runsEach*5+1) // never blocks a sender
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < runsEach; i++ {
				dir := filepath.Join(root, runID(t0.Add(time.Duration(w*runsEach+i)*time.Second), w*runsEach+i))
				l, err := Hold(dir)
				if err != nil {
					errs <- err
					return
				}
				for h := 0; h < 5; h++ { // two contents shared by every run, three of this run only
					text := fmt.Sprintf("shared %d\n", h%2)
					if h >= 2 {
						text = fmt.Sprintf("%s host %d\n", filepath.Base(dir), h)
					}
					if _, err := PutSnapshot(dir, fmt.Sprintf("h%d", h), snap(text, t0)); err != nil {
						errs <- err
						l.Close()
						return
					}
				}
				l.Close()
			}
		}(w)
	}
	go func() {
		defer close(done)
		for {
			time.Sleep(time.Millisecond)
			if _, err := Prune(root, Policy{Keep: 3, Now: t0.Add(time.Hour), Sweep: true}, false, 5*time.Second); err != nil {
				errs <- err
				return
			}
			if finished(&wg) {
				return
			}
		}
	}()
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	runs, _ := ListRuns(root)
	for _, r := range runs {
		for h := 0; h < 5; h++ {
			if _, err := Snapshot(r.Dir, fmt.Sprintf("h%d", h)); err != nil {
				t.Errorf("%s: %v", r.ID, err)
			}
		}
	}
}

// finished reports whether wg is done, without blocking.
func finished(wg *sync.WaitGroup) bool {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
		return true
	case <-time.After(time.Millisecond):
		return false
	}
}
