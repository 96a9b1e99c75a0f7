//go:build linux

package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/revert"
	"github.com/lifeline-dev/lifeline/wire"
)

// blockTestHost is the fake host's transport and engine over the real nft
// tools in a network namespace of its own (never the root one): the block
// verb and the block transaction change a real kernel ruleset.
func blockTestHost(t *testing.T) (*fakeHost, func(args ...string) string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the block session tests load nft rules in a network namespace: run go test as root (CI runs as root)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "llblk-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	in := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		return string(out)
	}
	in("nft", "add table inet filter; add chain inet filter input { type filter hook input priority 0; policy accept; }; add rule inet filter input tcp dport 22 accept")
	h := newFakeHost(t)
	h.env.Firewall = revert.NewFirewall(revert.FirewallOptions{NetNS: "/run/netns/" + ns, Timeout: 20 * time.Second,
		Exec: func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
			cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
			cmd.Stdin = strings.NewReader(string(stdin))
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok {
				err = &revert.ToolError{Tool: name, Args: args, ExitCode: ee.ExitCode(), Stderr: errb.String()}
			}
			return []byte(out.String()), []byte(errb.String()), err
		}})
	h.env.BootID = revert.ReadBootID // the real firewall's Detect reports the real one
	h.commands = map[string]func(stdout, stderr io.Writer) int{
		`printf '%s\n' "$SSH_CONNECTION"`: func(stdout, _ io.Writer) int {
			fmt.Fprint(stdout, "192.0.2.1 50000 192.0.2.9 22\n")
			return 0
		},
	}
	return h, in
}

// refuseHolding is a preflight that refuses a CIDR holding the path's
// source (the session's handling of refusals, not the evaluator, is under
// test here; internal/blockcheck tests that).
func refuseHolding(host string, live []wire.StatePart, mode string, spec BlockSpec, paths []BlockPath) ([]BlockRefusal, error) {
	if len(live) == 0 || mode != wire.BlockModeNft {
		return nil, fmt.Errorf("the preflight got no state (%d parts) or mode %q", len(live), mode)
	}
	var out []BlockRefusal
	for _, p := range paths {
		a := netip.MustParseAddr(p.Src)
		for _, c := range spec.CIDRs {
			if pf, _, _ := wire.NormalizeCIDR(c); pf.Contains(a) {
				out = append(out, BlockRefusal{Path: p, CIDR: c, Why: "test"})
			}
		}
	}
	return out, nil
}

// TestBlockSession: the first block creates the set in a guarded
// transaction; the next is one batch with no transaction; a refused block
// changes nothing and begins nothing; a forced one that the fresh
// connection cannot confirm is reverted, its element gone; unblock is a
// batch.
func TestBlockSession(t *testing.T) {
	h, in := blockTestHost(t)
	var verbs []string
	h.onVerb = func(verb string, rep *wire.Report) { verbs = append(verbs, verb) }
	s := newTestSession(h, 5*time.Second)
	run := func(spec BlockSpec) *Result {
		t.Helper()
		verbs = nil
		spec.Set, spec.Check = "blocked", refuseHolding
		return s.Block(context.Background(), Target{Name: "fake"}, spec)
	}
	expires := regexp.MustCompile(` expires [0-9hms.]+`)
	set := func() string {
		return expires.ReplaceAllString(in("nft", "list", "set", "inet", "lifeline", "blocked"), "")
	}

	r := run(BlockSpec{CIDRs: []string{"203.0.113.0/24"}})
	if r.Outcome != Confirmed || !r.Block.Guarded || !r.Block.Created {
		t.Fatalf("first block: %s guarded %v created %v: %s", r.Outcome, r.Block.Guarded, r.Block.Created, r.Error)
	}
	if want := []string{wire.VerbBlock, wire.VerbState, wire.VerbBegin, wire.VerbStage, wire.VerbConfirm}; strings.Join(verbs, ",") != strings.Join(want, ",") {
		t.Errorf("first block verbs %v, want %v", verbs, want)
	}
	if !strings.Contains(set(), "203.0.113.0/24") {
		t.Fatalf("set after the first block:\n%s", set())
	}

	r = run(BlockSpec{CIDRs: []string{"198.51.100.0/24"}, TTL: time.Hour})
	if r.Outcome != Done || r.Block.Guarded || strings.Join(r.Block.Added, ",") != "198.51.100.0/24" {
		t.Fatalf("second block: %s guarded %v added %v: %s", r.Outcome, r.Block.Guarded, r.Block.Added, r.Error)
	}
	if want := []string{wire.VerbBlock, wire.VerbState, wire.VerbBlock}; strings.Join(verbs, ",") != strings.Join(want, ",") {
		t.Errorf("second block verbs %v, want %v (no transaction)", verbs, want)
	}
	if !strings.Contains(set(), "198.51.100.0/24 timeout 1h") {
		t.Fatalf("set after the second block:\n%s", set())
	}

	before := set()
	r = run(BlockSpec{CIDRs: []string{"192.0.2.0/24"}})
	if r.Outcome != Refused || len(r.Block.Refusals) != 1 || !strings.Contains(r.Error, "192.0.2.0/24") || !strings.Contains(r.Error, "192.0.2.1") {
		t.Fatalf("refused block: %s %v: %s", r.Outcome, r.Block.Refusals, r.Error)
	}
	if strings.Contains(strings.Join(verbs, ","), wire.VerbBegin) || set() != before {
		t.Fatalf("a refused block began a transaction (%v) or changed the set:\n%s", verbs, set())
	}

	h.refuse = func(int) error { // every connection after the stage: the block dropped us
		for _, v := range verbs {
			if v == wire.VerbStage {
				return errConnDropped
			}
		}
		return nil
	}
	r = run(BlockSpec{CIDRs: []string{"192.0.2.1"}, Force: true})
	h.refuse = nil
	if r.Outcome != Reverted || !r.Block.Guarded || len(r.Block.Refusals) != 1 {
		t.Fatalf("forced block with no fresh connection: %s guarded %v refusals %v: %s", r.Outcome, r.Block.Guarded, r.Block.Refusals, r.Error)
	}
	if strings.Contains(set(), "192.0.2.1") || !strings.Contains(set(), "203.0.113.0/24") {
		t.Fatalf("after the revert of the forced block:\n%s", set())
	}

	r = run(BlockSpec{CIDRs: []string{"203.0.113.0/24", "10.0.0.1"}, Remove: true})
	if r.Outcome != Done || strings.Join(r.Block.Removed, ",") != "203.0.113.0/24" || strings.Join(r.Block.Absent, ",") != "10.0.0.1" {
		t.Fatalf("unblock: %s removed %v absent %v: %s", r.Outcome, r.Block.Removed, r.Block.Absent, r.Error)
	}
	if strings.Contains(set(), "203.0.113.0/24") {
		t.Fatalf("after unblock:\n%s", set())
	}
}
