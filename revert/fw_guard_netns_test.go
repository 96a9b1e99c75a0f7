package revert

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestFirewallGuardOps installs, refreshes and removes the kernel guard as
// its own step on a live ruleset, in a network namespace per backend: the
// guard is present where the live plan says, ignored by Equal and
// Contains, and after RemoveGuard the live ruleset is what it was.
func TestFirewallGuardOps(t *testing.T) {
	requireTools(t)
	cases := []struct {
		name   string
		format Format
		setup  [][]string
		nftIn  string // nft -f input run first
		save   []string
		addr   string
		// min is the fewest covered chains the live plan must find
		min int
	}{
		{
			name: "nft", format: FormatNft,
			nftIn: "table inet f {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 9999 drop\n\t}\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n\t}\n\tchain forw {\n\t\ttype filter hook forward priority 0; policy drop;\n\t}\n}\n" +
				"table netdev n {\n\tchain ing {\n\t\ttype filter hook ingress device lo priority 0; policy accept;\n\t}\n}\n",
			save: []string{"nft", "list", "ruleset"}, addr: "192.0.2.7", min: 2,
		},
		{
			name: "nft-v6", format: FormatNft,
			nftIn: "table ip6 f6 {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n",
			save:  []string{"nft", "list", "ruleset"}, addr: "2001:db8::7", min: 1,
		},
		{
			name: "iptables-nft", format: FormatIPTables, setup: dockerKubeSetup("iptables-nft"),
			save: []string{"iptables-nft-save"}, addr: "192.0.2.7", min: 6,
		},
		{
			name: "iptables-legacy", format: FormatIPTables, setup: dockerKubeSetup("iptables-legacy"),
			save: []string{"iptables-legacy-save"}, addr: "192.0.2.7", min: 6,
		},
		{
			name: "ip6tables-nft", format: FormatIP6Tables,
			setup: [][]string{{"ip6tables-nft", "-A", "INPUT", "-s", "2001:db8::1/128", "-j", "DROP"}},
			save:  []string{"ip6tables-nft-save"}, addr: "2001:db8::7", min: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := testNetns(t)
			for _, c := range tc.setup {
				nsRun(t, ns, "", c...)
			}
			if tc.nftIn != "" {
				nsRun(t, ns, tc.nftIn, "nft", "-f", "-")
			}
			ctx := context.Background()
			fw := newTestFirewall(t, ns)
			snap, err := fw.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var part *Part
			for i, p := range snap.Parts {
				if p.Backend == tc.name || p.Backend == "nft" && tc.format == FormatNft {
					part = &snap.Parts[i]
				}
			}
			if part == nil {
				t.Fatalf("snapshot has no %s part: %+v", tc.name, snap.Parts)
			}
			before := saveText(t, ns, tc.save...)

			plan, err := fw.LiveGuardPlan(ctx, Operator{Addr: tc.addr, SSHPort: 22})
			if err != nil {
				t.Fatalf("live guard plan: %v", err)
			}
			if len(plan.Covered) < tc.min || len(plan.Uncovered) > 0 {
				t.Fatalf("live guard plan: covered %q uncovered %q skipped %q; want at least %d covered and none uncovered",
					chainNames(plan.Covered, false), chainNames(plan.Uncovered, true), chainNames(plan.Skipped, true), tc.min)
			}
			t.Logf("covered %q skipped %q", chainNames(plan.Covered, false), chainNames(plan.Skipped, true))
			g := &Guard{TxID: "lg1", Addr: tc.addr, Port: 22, Deadline: time.Now().Add(time.Hour).Truncate(time.Second), Remaining: time.Hour, Chains: plan.Covered}

			guardLines := func(s string) (n int) {
				for _, l := range strings.Split(s, "\n") {
					if strings.Contains(l, "lifeline-guard lg1") {
						n++
					}
				}
				return n
			}
			withoutGuard := func(s string) string {
				if tc.format == FormatNft {
					return normNft(splitNftTables(s))
				}
				var keep []string
				for _, l := range strings.Split(s, "\n") {
					if !strings.Contains(l, guardPrefix) {
						keep = append(keep, l)
					}
				}
				return strings.Join(keep, "\n")
			}
			ignored := func(when string) {
				t.Helper()
				if ok, d, err := fw.Equal(ctx, snap); err != nil || !ok {
					t.Errorf("%s: Equal(snapshot) = %v, %v; want true (the guard is ignored)\n%s", when, ok, err, d)
				}
				if ok, d, err := fw.Contains(ctx, part.Format, part.Text); err != nil || !ok {
					t.Errorf("%s: Contains(snapshot's %s part) = %v, %v; want true (the guard is ignored)\n%s", when, part.Backend, ok, err, d)
				}
			}

			if err := fw.InstallGuard(ctx, g); err != nil {
				t.Fatalf("install guard: %v", err)
			}
			live := saveText(t, ns, tc.save...)
			if n := guardLines(live); n < len(plan.Covered) {
				t.Fatalf("after install: %d guard rules for %d covered chains:\n%s", n, len(plan.Covered), live)
			}
			installed := guardLines(live)
			if a, b := withoutGuard(before), withoutGuard(live); a != b {
				t.Errorf("install changed more than the guard:\n%s", unifiedDiff("before", "after install", a, b))
			}
			ignored("after install")

			g2 := *g
			g2.Deadline, g2.Remaining = g.Deadline.Add(time.Hour), 2*time.Hour
			if err := fw.RefreshGuard(ctx, &g2); err != nil {
				t.Fatalf("refresh guard: %v", err)
			}
			live = saveText(t, ns, tc.save...)
			if n := guardLines(live); n != installed {
				t.Errorf("after refresh: %d guard rules, want %d as after install:\n%s", n, installed, live)
			}
			if tc.format == FormatNft {
				if !strings.Contains(live, "timeout 2h") || strings.Contains(live, "timeout 1h") {
					t.Errorf("after refresh: set timeouts are not 2h:\n%s", live)
				}
			} else {
				stamp := func(d time.Time) string { return d.UTC().Format("2006-01-02T15:04:05") }
				if !strings.Contains(live, stamp(g2.Deadline)) || strings.Contains(live, stamp(g.Deadline)) {
					t.Errorf("after refresh: want datestart %s and not %s:\n%s", stamp(g2.Deadline), stamp(g.Deadline), live)
				}
			}
			if a, b := withoutGuard(before), withoutGuard(live); a != b {
				t.Errorf("refresh changed more than the guard:\n%s", unifiedDiff("before", "after refresh", a, b))
			}
			ignored("after refresh")

			for i := range 2 {
				if err := fw.RemoveGuard(ctx, g.TxID); err != nil {
					t.Fatalf("remove guard (%d): %v", i+1, err)
				}
				if after := saveText(t, ns, tc.save...); after != before {
					t.Fatalf("after remove (%d): live ruleset is not as before install:\n%s", i+1, unifiedDiff("before", "after", before, after))
				}
			}
			ignored("after remove")
		})
	}
}
