package revert

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestFakeGuardOps: the fake's state shows the guard installed, moved and
// removed, shared through its state file, and the live rulesets untouched.
func TestFakeGuardOps(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fw.json")
	live := map[Format]string{FormatNft: "table inet filter {\n}\n"}
	fw := NewFakeFirewall(live)
	fw.Path = path
	other := OpenFakeFirewall(path) // another helper process
	g := &Guard{TxID: "t1", Addr: "192.0.2.7", Port: 22, Deadline: time.Now().Add(time.Minute), Remaining: time.Minute}
	plan, err := fw.LiveGuardPlan(ctx, Operator{Addr: g.Addr, SSHPort: g.Port})
	if err != nil || len(plan.Covered) == 0 {
		t.Fatalf("live guard plan: %+v, %v", plan, err)
	}
	g.Chains = plan.Covered

	g2 := *g
	g2.Deadline, g2.Remaining = g.Deadline.Add(time.Minute), 2*time.Minute
	steps := []struct {
		name string
		do   func() error
		want *Guard // S.Guard after, as the other process reads it
	}{
		{"install", func() error { return fw.InstallGuard(ctx, g) }, g},
		{"refresh", func() error { return fw.RefreshGuard(ctx, &g2) }, &g2},
		{"remove", func() error { return fw.RemoveGuard(ctx, "t1") }, nil},
		{"remove again", func() error { return fw.RemoveGuard(ctx, "t1") }, nil},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if _, err := other.Detect(ctx); err != nil { // reads the state file
			t.Fatal(err)
		}
		got, want := other.S.Guard, st.want
		switch {
		case want == nil && got != nil:
			t.Errorf("%s: guard %+v, want none", st.name, got)
		case want != nil && (got == nil || got.TxID != want.TxID || got.Remaining != want.Remaining):
			t.Errorf("%s: guard %+v, want %+v", st.name, got, want)
		}
		if other.S.Live[FormatNft] != live[FormatNft] {
			t.Errorf("%s: live ruleset changed: %q", st.name, other.S.Live[FormatNft])
		}
	}

	fw.S.FailGuards = 1
	if err := fw.SaveState(); err != nil {
		t.Fatal(err)
	}
	if err := fw.InstallGuard(ctx, g); err == nil || fw.S.Guard != nil {
		t.Errorf("install with FailGuards: %v, guard %+v; want an error and no guard", err, fw.S.Guard)
	}
}
