package revert

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// proofFirewall is a firewall in a test namespace with a proof folder,
// and the count of the trial loads it ran (each an unshare there).
func proofFirewall(t *testing.T) (ns, dir string, fw Firewall, trials *atomic.Int32) {
	requireTools(t)
	ns, dir, trials = testNetns(t), t.TempDir(), new(atomic.Int32)
	exec := func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
		if name == "unshare" {
			trials.Add(1)
		}
		return nsExec(ns)(ctx, stdin, name, args...)
	}
	fw = NewFirewall(FirewallOptions{Exec: exec, NetNS: "/run/netns/" + ns, Log: t.Logf, Timeout: 20 * time.Second, ProofDir: dir})
	return ns, dir, fw, trials
}

// TestSnapshotProofs: a snapshot that loaded once is not trial-loaded
// again while nothing that decides its load changed; a corrupt or foreign
// proof counts as none; a changed snapshot is trial-loaded; and a snapshot
// that does not load is refused whatever proofs exist (issue #12: no cache
// lets a broken snapshot through).
func TestSnapshotProofs(t *testing.T) {
	ns, dir, fw, trials := proofFirewall(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsRun(t, ns, "table inet filter {\n chain input {\n type filter hook input priority 0; policy accept;\n tcp dport 22 accept\n }\n}\n", "nft", "-f", "-")
	snap, err := fw.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	validate := func(s *Snapshot) (int32, error) {
		t.Helper()
		before := trials.Load()
		err := fw.ValidateSnapshot(ctx, s)
		return trials.Load() - before, err
	}
	if n, err := validate(snap); err != nil || n == 0 {
		t.Fatalf("first validation: %d trial loads, %v; want at least one, no error", n, err)
	}
	proofs, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(proofs) == 0 {
		t.Fatal("a successful trial load kept no proof")
	}
	if n, err := validate(snap); err != nil || n != 0 {
		t.Fatalf("second validation of the same snapshot: %d trial loads, %v; want none", n, err)
	}
	for _, p := range proofs {
		if err := os.WriteFile(p, []byte("not the key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := validate(snap); err != nil || n == 0 {
		t.Fatalf("validation with corrupt proofs: %d trial loads, %v; want a trial load", n, err)
	}
	changed := *snap
	changed.Parts = append([]Part(nil), snap.Parts...)
	for i, p := range changed.Parts {
		if p.Backend == "nft" {
			changed.Parts[i].Text = strings.Replace(p.Text, "dport 22", "dport 2222", 1)
		}
	}
	if n, err := validate(&changed); err != nil || n == 0 {
		t.Fatalf("validation of a changed snapshot: %d trial loads, %v; want a trial load", n, err)
	}
	// a snapshot that cannot load, with a proof named for it forged by
	// copying every proof's name: still trial-loaded, still refused
	broken := *snap
	broken.Parts = append([]Part(nil), snap.Parts...)
	for i, p := range broken.Parts {
		if p.Backend == "nft" {
			broken.Parts[i].Text = strings.Replace(p.Text, "accept", "jump nowhere", 1)
		}
	}
	if n, err := validate(&broken); err == nil || n == 0 {
		t.Fatalf("validation of a broken snapshot: %d trial loads, err %v; want a trial load and a refusal", n, err)
	}
	if n, err := validate(&broken); err == nil || n == 0 {
		t.Fatalf("second validation of a broken snapshot: %d trial loads, err %v; want a trial load and a refusal again (a failure keeps no proof)", n, err)
	}
}

// TestListingMemo: begin's validation lists what the ruleset leaves, and
// stage's verify (Contains) compares the live ruleset with that listing
// instead of a third trial load; a corrupt memo is no memo, and a verify
// still tells a live ruleset that differs.
func TestListingMemo(t *testing.T) {
	ns, dir, fw, trials := proofFirewall(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rules := "table inet filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 22 accept\n  tcp dport 8080 accept\n }\n}\n"
	// the host as begin finds it: the table the ruleset replaces is live
	nsRun(t, ns, "table inet filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 22 accept\n }\n}\n", "nft", "-f", "-")
	if err := fw.Validate(ctx, FormatNft, rules); err != nil {
		t.Fatal(err)
	}
	// a memo answers for the trial, and for how long it took: begin
	// weighs that against the confirm timeout
	took := fw.(*hostFirewall).TrialTook()
	if took <= 0 {
		t.Fatalf("TrialTook after a trial: %s", took)
	}
	if err := fw.Validate(ctx, FormatNft, rules); err != nil {
		t.Fatal(err)
	}
	if again := fw.(*hostFirewall).TrialTook(); again != took {
		t.Errorf("TrialTook after a memo hit: %s, want the trial's %s", again, took)
	}
	// the guard plan's trial (what Apply leaves) is the validation's when
	// the ruleset replaces every live native table
	before := trials.Load()
	if _, err := fw.GuardPlan(ctx, FormatNft, rules, Operator{Addr: "10.0.0.1", SSHPort: 22}); err != nil {
		t.Fatal(err)
	}
	if n := trials.Load() - before; n != 0 {
		t.Errorf("the guard plan ran %d trial loads, want none (the validation's listing)", n)
	}
	if err := fw.Apply(ctx, FormatNft, rules, nil); err != nil {
		t.Fatal(err)
	}
	before = trials.Load()
	ok, diff, err := fw.Contains(ctx, FormatNft, rules)
	if err != nil || !ok {
		t.Fatalf("verify after apply: %v %v\n%s", ok, err, diff)
	}
	if n := trials.Load() - before; n != 0 {
		t.Errorf("verify ran %d trial loads, want none (the validation's listing)", n)
	}
	memos, _ := filepath.Glob(filepath.Join(dir, "list-*"))
	if len(memos) == 0 {
		t.Fatal("validation kept no listing")
	}
	for _, m := range memos {
		if err := os.WriteFile(m, []byte("garbage\ntable inet filter {\n}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before = trials.Load()
	if ok, diff, err := fw.Contains(ctx, FormatNft, rules); err != nil || !ok {
		t.Fatalf("verify with a corrupt memo: %v %v\n%s", ok, err, diff)
	}
	if n := trials.Load() - before; n == 0 {
		t.Error("verify with a corrupt memo ran no trial load")
	}
	nsRun(t, ns, "", "nft", "add", "rule", "inet", "filter", "input", "tcp", "dport", "9999", "accept")
	time.Sleep(readTTL + 100*time.Millisecond) // the live listing cached within one helper run
	if ok, _, err := fw.Contains(ctx, FormatNft, rules); err != nil || ok {
		t.Fatalf("verify of a live ruleset that differs: ok %v, %v; want a difference", ok, err)
	}
}

// TestProofsUntrusted: a proof or listing memo in a folder (or a file)
// that another user could write is no proof: the trial load runs.
func TestProofsUntrusted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proofs")
	f := &hostFirewall{opts: FirewallOptions{ProofDir: dir, Log: t.Logf}}
	f.prove("abc")
	f.keepMemo("def", "listing\n", time.Second)
	if !f.proven("abc") {
		t.Fatal("a proof the helper wrote is not trusted")
	}
	if out, took, ok := f.memo("def"); !ok || out != "listing\n" || took != time.Second {
		t.Fatalf("memo: %q %s %v", out, took, ok)
	}
	if err := os.Chmod(filepath.Join(dir, "abc"), 0o666); err != nil {
		t.Fatal(err)
	}
	if f.proven("abc") {
		t.Error("a world-writable proof counts")
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.memo("def"); ok {
		t.Error("a memo in a world-writable folder counts")
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "list-def")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "abc"), filepath.Join(dir, "list-def")); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.memo("def"); ok {
		t.Error("a symlinked memo counts")
	}
}
