package revert

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

// rulesListing is every table, chain and rule of ns with its nft handle,
// and every iptables rule, counters dropped: what an element batch must
// leave alone (set elements carry no handle).
func rulesListing(t *testing.T, ns string) string {
	t.Helper()
	out := nsRun(t, ns, "", "sh", "-c", `nft -a list ruleset | grep '# handle'; for s in iptables-nft-save ip6tables-nft-save iptables-legacy-save ip6tables-legacy-save; do $s 2>/dev/null | grep -v '^#'; done; true`)
	return regexp.MustCompile(`\[\d+:\d+\]|packets \d+ bytes \d+`).ReplaceAllString(out, "")
}

// TestBlockSetsNetns drives the block pieces against the real tools in a
// network namespace per backend: created where missing, elements added and
// removed in one batch without a rule changing, and, for the revert of the
// transaction that created them, removed again so that the ruleset is what
// it was.
func TestBlockSetsNetns(t *testing.T) {
	requireTools(t)
	for _, tc := range []struct {
		name, setup, mode string
	}{
		{"nft, nothing live", "", wire.BlockModeNft},
		{"nft, a filter table", "nft -f - <<'EOF'\ntable inet filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 22 accept\n }\n}\nEOF", wire.BlockModeNft},
		{"iptables-nft", "printf '*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | iptables-nft-restore; printf '*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | ip6tables-nft-restore", wire.BlockModeIpset},
		{"iptables-legacy", "printf '*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | iptables-legacy-restore; printf '*filter\\n:INPUT ACCEPT [0:0]\\nCOMMIT\\n' | ip6tables-legacy-restore", wire.BlockModeIpset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testNetns(t)
			if tc.setup != "" {
				nsRun(t, ns, "", "sh", "-c", tc.setup)
			}
			initial := rulesListing(t, ns)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fw := newTestFirewall(t, ns).(*hostFirewall)
			was, err := fw.blockRead(ctx, "blocked")
			if err != nil {
				t.Fatal(err)
			}
			if was.mode != tc.mode || was.ready() || len(was.elems) != 0 {
				t.Fatalf("before: mode %s ready %v elems %v, want %s, not ready, empty", was.mode, was.ready(), was.elems, tc.mode)
			}
			if err := fw.blockEnsure(ctx, was, "blocked"); err != nil {
				t.Fatal(err)
			}
			// a second ensure on a ready host adds nothing
			now := mustRead(ctx, t, fw)
			if !now.ready() {
				t.Fatalf("not ready after ensure: %+v", now)
			}
			if err := fw.blockEnsure(ctx, now, "blocked"); err != nil {
				t.Fatal(err)
			}
			created := rulesListing(t, ns)
			if err := fw.blockBatch(ctx, mustRead(ctx, t, fw), "blocked", []string{"203.0.113.0/24", "192.0.2.7", "2001:db8::/32"}, 0, false); err != nil {
				t.Fatal(err)
			}
			// again, with a ttl: present ones are refreshed, not refused
			if err := fw.blockBatch(ctx, mustRead(ctx, t, fw), "blocked", []string{"192.0.2.7", "198.51.100.0/24"}, 30*time.Second, false); err != nil {
				t.Fatal(err)
			}
			got := mustRead(ctx, t, fw)
			for _, e := range []string{"203.0.113.0/24", "192.0.2.7", "2001:db8::/32", "198.51.100.0/24"} {
				if !got.elems[e] {
					t.Errorf("element %s missing: %v", e, got.elems)
				}
			}
			if after := rulesListing(t, ns); after != created {
				t.Errorf("element batches changed rules:\nbefore:\n%s\nafter:\n%s", created, after)
			}
			if err := fw.blockBatch(ctx, got, "blocked", []string{"203.0.113.0/24", "10.0.0.1"}, 0, true); err != nil {
				t.Fatal(err)
			}
			if got := mustRead(ctx, t, fw); got.elems["203.0.113.0/24"] || !got.elems["192.0.2.7"] {
				t.Errorf("after remove: %v", got.elems)
			}
			// the revert of the creating transaction
			if err := fw.blockDrop(ctx, was, "blocked"); err != nil {
				t.Fatal(err)
			}
			if after := rulesListing(t, ns); after != initial {
				t.Errorf("after the drop the rules are not the initial ones:\ninitial:\n%s\nafter:\n%s", initial, after)
			}
			if gone := mustRead(ctx, t, fw); gone.table || gone.ipset4 || gone.ipset6 || gone.chain4 || gone.jump4 {
				t.Errorf("pieces left after the drop: %+v", gone)
			}
		})
	}
}

func mustRead(ctx context.Context, t *testing.T, fw *hostFirewall) *blockHost {
	t.Helper()
	h, err := fw.blockRead(ctx, "blocked")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBlockIpsetBatchFailsWhole: ipset restore applies line by line; a
// batch that fails part-way (the set is full) takes out again what it
// added, so the set is as it was, and says so.
func TestBlockIpsetBatchFailsWhole(t *testing.T) {
	requireTools(t)
	ns := testNetns(t)
	nsRun(t, ns, "", "sh", "-c", "printf '*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | iptables-legacy-restore; printf '*filter\\n:INPUT ACCEPT [0:0]\\nCOMMIT\\n' | ip6tables-legacy-restore; ipset create lifeline-blocked hash:net family inet timeout 0 maxelem 2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fw := newTestFirewall(t, ns).(*hostFirewall)
	if err := fw.blockEnsure(ctx, mustRead(ctx, t, fw), "blocked"); err != nil {
		t.Fatal(err)
	}
	if err := fw.blockBatch(ctx, mustRead(ctx, t, fw), "blocked", []string{"10.0.0.0/24"}, 0, false); err != nil {
		t.Fatal(err)
	}
	err := fw.blockBatch(ctx, mustRead(ctx, t, fw), "blocked", []string{"10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"}, 0, false)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeApplyFailed || !strings.Contains(pe.Message, "as it was") {
		t.Fatalf("a batch into a full set: %v, want apply-failed saying the set is as it was", err)
	}
	if got := mustRead(ctx, t, fw).elems; len(got) != 1 || !got["10.0.0.0/24"] {
		t.Fatalf("after the failed batch the set holds %v, want only 10.0.0.0/24", got)
	}
}
