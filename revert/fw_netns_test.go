package revert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests run the real tools against the real kernel, each inside a
// network namespace created for it and deleted afterwards. They need root,
// iproute2, nftables, iptables (nft + legacy) and util-linux (unshare).

func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("firewall tests need root: run go test as root (CI runs as root)")
	}
	for _, tool := range []string{"ip", "nft", "unshare", "iptables-nft-restore", "iptables-legacy-restore", "ip6tables-nft-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install iproute2 nftables iptables util-linux", tool)
		}
	}
}

// testNetns creates a network namespace for the test and deletes it at
// cleanup, also on failure.
func testNetns(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "llfw-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// nsExec runs every tool inside netns ns (never the root namespace).
func nsExec(ns string) FirewallExec {
	return func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
		return localExec(ctx, stdin, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	}
}

func nsRun(t *testing.T, ns, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _, err := nsExec(ns)(ctx, []byte(stdin), args[0], args[1:]...)
	if err != nil {
		t.Fatalf("in %s: %s: %v", ns, strings.Join(args, " "), err)
	}
	return string(out)
}

func newTestFirewall(t *testing.T, ns string) Firewall {
	return NewFirewall(FirewallOptions{Exec: nsExec(ns), NetNS: "/run/netns/" + ns, Log: t.Logf, Timeout: 20 * time.Second})
}

// saveText is a tool's save output without its timestamped comments.
func saveText(t *testing.T, ns string, tool ...string) string {
	var keep []string
	for _, l := range strings.Split(nsRun(t, ns, "", tool...), "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// foreignLines are the save lines that mention a foreign chain.
func foreignLines(t *testing.T, ns, tool string) string {
	var keep []string
	for _, l := range strings.Split(saveText(t, ns, tool), "\n") {
		if strings.Contains(l, "DOCKER") || strings.Contains(l, "KUBE-") {
			keep = append(keep, strings.TrimSuffix(l, " [0:0]"))
		}
	}
	return strings.Join(keep, "\n")
}

func TestFirewallRoundTrip(t *testing.T) {
	requireTools(t)
	cases := []struct {
		name    string
		format  Format
		setup   [][]string // run in the namespace first
		save    []string   // byte-compare tool
		ruleset string
		bad     string // does not load
		badLine int
		foreign bool
	}{
		{
			name:   "nft",
			format: FormatNft,
			setup:  [][]string{{"nft", "add table inet old"}, {"nft", "add chain inet old input { type filter hook input priority 0; policy accept; }"}, {"nft", "add rule inet old input tcp dport 9999 drop"}},
			save:   []string{"nft", "list", "ruleset"},
			ruleset: "flush ruleset\ntable inet new {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n" +
				"\t\ttcp dport 22 accept\n\t\tcounter drop\n\t}\n}\n",
			bad:     "flush ruleset\ntable inet new {\n\tchain input {\n\t\ttcp dport 22 acept\n\t}\n}\n",
			badLine: 4,
		},
		{
			name:    "iptables-nft",
			format:  FormatIPTables,
			setup:   dockerKubeSetup("iptables-nft"),
			save:    []string{"iptables-nft-save"},
			ruleset: "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:SSH - [0:0]\n-A INPUT -j SSH\n-A SSH -p tcp --dport 22 -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
			bad:     "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOPE\nCOMMIT\n",
			badLine: 3,
			foreign: true,
		},
		{
			name:    "iptables-legacy",
			format:  FormatIPTables,
			setup:   dockerKubeSetup("iptables-legacy"),
			save:    []string{"iptables-legacy-save"},
			ruleset: "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
			bad:     "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j NOPE\nCOMMIT\n",
			badLine: 3,
			foreign: true,
		},
		{
			name:    "ip6tables-nft",
			format:  FormatIP6Tables,
			setup:   [][]string{{"ip6tables-nft", "-A", "INPUT", "-s", "2001:db8::1/128", "-j", "DROP"}},
			save:    []string{"ip6tables-nft-save"},
			ruleset: "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p ipv6-icmp -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
			bad:     "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -s 10.0.0.1 -j ACCEPT\nCOMMIT\n",
			badLine: 4,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := testNetns(t)
			for _, c := range tc.setup {
				nsRun(t, ns, "", c...)
			}
			ctx := context.Background()
			fw := newTestFirewall(t, ns)
			d, err := fw.Detect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("detect: backends %v active %v", d.Backends, d.Active)
			snap, err := fw.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := fw.ValidateSnapshot(ctx, snap); err != nil {
				t.Fatalf("validate snapshot: %v", err)
			}
			before := saveText(t, ns, tc.save...)
			foreignBefore := ""
			if tc.foreign {
				foreignBefore = foreignLines(t, ns, tc.save[0])
				natBefore := foreignLines(t, ns, strings.Replace(tc.save[0], "-save", "-save", 1))
				if !strings.Contains(natBefore, "KUBE-SERVICES") || !strings.Contains(natBefore, "DOCKER-USER") {
					t.Fatalf("setup did not create the foreign chains:\n%s", natBefore)
				}
			}

			// A refused ruleset names its line and changes nothing.
			err = fw.Validate(ctx, tc.format, tc.bad)
			var fe *Error
			if !errors.As(err, &fe) || fe.Code != CodeInvalidRuleset {
				t.Fatalf("validate bad ruleset: got %v, want an *Error with code %s", err, CodeInvalidRuleset)
			}
			if fe.Line != tc.badLine {
				t.Errorf("validate bad ruleset: line %d (%q), want %d; error %v", fe.Line, fe.Text, tc.badLine, fe)
			}
			if after := saveText(t, ns, tc.save...); after != before {
				t.Fatalf("live ruleset changed by a refused validation:\n%s", unifiedDiff("before", "after", before, after))
			}

			if err := fw.Validate(ctx, tc.format, tc.ruleset); err != nil {
				t.Fatalf("validate: %v", err)
			}
			diff, err := fw.Diff(ctx, tc.format, tc.ruleset)
			if err != nil || diff == "" {
				t.Fatalf("diff before apply: %q, %v; want a non-empty diff", diff, err)
			}
			guard := &Guard{TxID: "t1", Addr: "192.0.2.7", Port: 22, Deadline: time.Now().Add(time.Hour), Remaining: time.Hour}
			if tc.format == FormatIP6Tables {
				guard.Addr = "2001:db8::7"
			}
			plan, err := fw.GuardPlan(ctx, tc.format, tc.ruleset, Operator{Addr: guard.Addr, SSHPort: guard.Port})
			if err != nil || len(plan.Covered) == 0 || len(plan.Uncovered) > 0 {
				t.Fatalf("guard plan: %+v, %v; want covered chains and none uncovered", plan, err)
			}
			guard.Chains = plan.Covered
			if err := fw.Apply(ctx, tc.format, tc.ruleset, guard); err != nil {
				t.Fatalf("apply: %v", err)
			}
			live := saveText(t, ns, tc.save...)
			if !strings.Contains(live, "lifeline-guard t1") {
				t.Errorf("guard missing after apply:\n%s", live)
			}
			if ok, d, err := fw.Contains(ctx, tc.format, tc.ruleset); err != nil || !ok {
				t.Errorf("contains after apply: %v, %v\n%s", ok, err, d)
			}
			// the confirm drops the guard Apply merged in, and only it
			if err := fw.RemoveGuard(ctx, guard.TxID); err != nil {
				t.Fatalf("remove guard after apply: %v", err)
			}
			if live := saveText(t, ns, tc.save...); strings.Contains(live, "lifeline-guard") {
				t.Errorf("guard left after RemoveGuard:\n%s", live)
			}
			if ok, d, err := fw.Contains(ctx, tc.format, tc.ruleset); err != nil || !ok {
				t.Errorf("contains after remove guard: %v, %v\n%s", ok, err, d)
			}
			if diff, err := fw.Diff(ctx, tc.format, tc.ruleset); err != nil || diff != "" {
				t.Errorf("diff after apply: %v\n%s", err, diff)
			}
			if ok, _, err := fw.Equal(ctx, snap); err != nil || ok {
				t.Fatalf("equal after apply: %v, %v; want false", ok, err)
			}
			if tc.foreign {
				if got := foreignLines(t, ns, tc.save[0]); got != foreignBefore {
					t.Errorf("foreign chains changed by apply:\n%s", unifiedDiff("before", "after", foreignBefore, got))
				}
			}
			if err := fw.Restore(ctx, snap); err != nil {
				t.Fatalf("restore: %v", err)
			}
			if ok, d, err := fw.Equal(ctx, snap); err != nil || !ok {
				t.Fatalf("equal after restore: %v, %v\n%s", ok, err, d)
			}
			if after := saveText(t, ns, tc.save...); after != before {
				t.Errorf("live ruleset after restore differs from before:\n%s", unifiedDiff("before", "after", before, after))
			}
		})
	}
}

// dockerKubeSetup creates Docker's and kube-proxy's chains the way they do:
// DOCKER-USER with a rule and a jump from FORWARD, KUBE-SERVICES in nat.
func dockerKubeSetup(ipt string) [][]string {
	return [][]string{
		{ipt, "-A", "INPUT", "-s", "198.51.100.1/32", "-j", "DROP"},
		{ipt, "-N", "DOCKER-USER"},
		{ipt, "-A", "DOCKER-USER", "-s", "10.9.9.9/32", "-j", "DROP"},
		{ipt, "-A", "DOCKER-USER", "-j", "RETURN"},
		{ipt, "-A", "FORWARD", "-j", "DOCKER-USER"},
		{ipt, "-t", "nat", "-N", "KUBE-SERVICES"},
		{ipt, "-t", "nat", "-A", "KUBE-SERVICES", "-d", "10.96.0.1/32", "-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", "10.0.0.1:6443"},
		{ipt, "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-SERVICES"},
	}
}

func TestFirewallPartialApply(t *testing.T) {
	requireTools(t)
	ns := testNetns(t)
	fw := newTestFirewall(t, ns)
	ruleset := "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MISSING\nCOMMIT\n"
	err := fw.Apply(context.Background(), FormatIPTables, ruleset, nil)
	if !errors.Is(err, ErrPartialApply) {
		t.Fatalf("apply failing in its second block: got %v, want ErrPartialApply", err)
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Code != CodeApplyFailed {
		t.Fatalf("apply failing in its second block: got %v, want an *Error with code %s", err, CodeApplyFailed)
	}
	// A failure in the first block is not partial.
	err = fw.Apply(context.Background(), FormatIPTables, "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j MISSING\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", nil)
	if err == nil || errors.Is(err, ErrPartialApply) {
		t.Fatalf("apply failing in its first block: got %v, want a non-partial error", err)
	}
}

// TestFirewallFlushKeepsForeign applies a file that flushes every table
// (nft flush ruleset, iptables filter+nat blocks) and checks that the
// foreign and iptables-nft tables survive.
func TestFirewallNftFlushKeepsOthers(t *testing.T) {
	requireTools(t)
	ns := testNetns(t)
	for _, c := range dockerKubeSetup("iptables-nft") {
		nsRun(t, ns, "", c...)
	}
	nsRun(t, ns, "table ip kube-proxy {\n\tchain services {\n\t}\n}\ntable inet mine {\n}\n", "nft", "-f", "-")
	fw := newTestFirewall(t, ns)
	ctx := context.Background()
	xtBefore := saveText(t, ns, "iptables-nft-save")
	snap, err := fw.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Apply(ctx, FormatNft, "flush ruleset\ntable inet fresh {\n}\n", nil); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tables := nsRun(t, ns, "", "nft", "list", "tables")
	for _, want := range []string{"table ip kube-proxy", "table ip filter", "table ip nat", "table inet fresh"} {
		if !strings.Contains(tables, want) {
			t.Errorf("after flush ruleset: %q missing from\n%s", want, tables)
		}
	}
	if strings.Contains(tables, "inet mine") {
		t.Errorf("after flush ruleset: native table inet mine should be gone:\n%s", tables)
	}
	if got := saveText(t, ns, "iptables-nft-save"); got != xtBefore {
		t.Errorf("iptables-nft tables changed by an nft flush ruleset:\n%s", unifiedDiff("before", "after", xtBefore, got))
	}
	if err := fw.Restore(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if ok, d, err := fw.Equal(ctx, snap); err != nil || !ok {
		t.Fatalf("equal after restore: %v %v\n%s", ok, err, d)
	}
}

// withNetns runs fn on a thread switched into netns ns.
func withNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("cannot return to the original netns: %v", err)) // thread must not be reused
		}
	}()
	fn()
}

// TestFirewallGuard applies a drop-all ruleset with a 2 s guard on a host
// namespace and dials its listener from a client namespace over a veth:
// refused before the deadline, accepted after it.
func TestFirewallGuard(t *testing.T) {
	requireTools(t)
	cases := []guardCase{
		{"nft", FormatNft, nil, "flush ruleset\ntable inet f {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n\t}\n}\n"},
		{"iptables-nft", FormatIPTables, nil, "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n"},
		{"iptables-legacy", FormatIPTables, [][]string{{"iptables-legacy", "-A", "INPUT", "-s", "198.51.100.1/32", "-j", "DROP"}}, "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n"},
	}
	// apply: Apply(ruleset, guard); install: Apply(ruleset, nil), then
	// InstallGuard on the live ruleset (and RemoveGuard shuts it again).
	modes := []string{"apply", "install"}
	for i, tc := range cases {
		for j, mode := range modes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				guardOpens(t, tc, mode, i*len(modes)+j)
			})
		}
	}
}

type guardCase struct {
	name    string
	format  Format
	setup   [][]string
	ruleset string
}

// guardOpens runs one case of TestFirewallGuard; n numbers its subnet.
func guardOpens(t *testing.T, tc guardCase, mode string, n int) {
	t.Parallel()
	host, client := testNetns(t), testNetns(t)
	hostIP, clientIP := fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)
	nsRun(t, host, "", "ip", "link", "add", "llh", "type", "veth", "peer", "name", "llc", "netns", client)
	nsRun(t, host, "", "ip", "addr", "add", hostIP+"/24", "dev", "llh")
	nsRun(t, host, "", "ip", "link", "set", "llh", "up")
	nsRun(t, client, "", "ip", "addr", "add", clientIP+"/24", "dev", "llc")
	nsRun(t, client, "", "ip", "link", "set", "llc", "up")
	for _, c := range tc.setup {
		nsRun(t, host, "", c...)
	}
	var ln net.Listener
	withNetns(t, host, func() {
		var err error
		ln, err = net.Listen("tcp4", hostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dial := func() error {
		var err error
		withNetns(t, client, func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp4", ln.Addr().String(), 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
		})
		return err
	}
	// the setup itself (neighbour resolution on a loaded machine can take
	// longer than one short dial): a few tries before any ruleset
	err := dial()
	for i := 0; err != nil && i < 5; i++ {
		err = dial()
	}
	if err != nil {
		t.Fatalf("dial before any ruleset: %v", err)
	}
	fw := newTestFirewall(t, host)
	const wait = 2 * time.Second
	// -m time has 1 s resolution: start the countdown on a whole second.
	deadline := time.Now().Add(wait).Truncate(time.Second).Add(time.Second)
	g := &Guard{TxID: "g1", Addr: clientIP, Port: port, Deadline: deadline, Remaining: time.Until(deadline).Round(time.Second)}
	ctx := context.Background()
	op := Operator{Addr: g.Addr, SSHPort: g.Port}
	var applied time.Time
	if mode == "apply" {
		plan, err := fw.GuardPlan(ctx, tc.format, tc.ruleset, op)
		if err != nil || len(plan.Uncovered) > 0 {
			t.Fatalf("guard plan: %+v, %v", plan, err)
		}
		g.Chains = plan.Covered
		if err := fw.Apply(ctx, tc.format, tc.ruleset, g); err != nil {
			t.Fatalf("apply: %v", err)
		}
		applied = time.Now()
	} else {
		if err := fw.Apply(ctx, tc.format, tc.ruleset, nil); err != nil {
			t.Fatalf("apply: %v", err)
		}
		plan, err := fw.LiveGuardPlan(ctx, op)
		if err != nil || len(plan.Uncovered) > 0 || len(plan.Covered) == 0 {
			t.Fatalf("live guard plan: %+v, %v", plan, err)
		}
		g.Chains = plan.Covered
		if err := fw.InstallGuard(ctx, g); err != nil {
			t.Fatalf("install guard: %v", err)
		}
		applied = time.Now()
	}
	if err := dial(); err == nil {
		t.Fatal("dial right after apply succeeded: the drop-all ruleset or the guard does not work")
	}
	var okAt time.Time
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		if dial() == nil {
			okAt = time.Now()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if okAt.IsZero() {
		t.Fatalf("guard never opened (deadline %s, now %s):\n%s", deadline.Format(time.TimeOnly), time.Now().Format(time.TimeOnly),
			nsRun(t, host, "", "nft", "list", "ruleset"))
	}
	if okAt.Before(deadline.Add(-500*time.Millisecond)) && okAt.Sub(applied) < g.Remaining-500*time.Millisecond {
		t.Fatalf("guard opened at %s, before its deadline %s", okAt.Format(time.StampMilli), deadline.Format(time.StampMilli))
	}
	t.Logf("guard opened %s after %s (remaining %s)", okAt.Sub(applied).Round(10*time.Millisecond), mode, g.Remaining)
	if mode == "install" {
		if err := fw.RemoveGuard(ctx, g.TxID); err != nil {
			t.Fatalf("remove guard: %v", err)
		}
		if err := dial(); err == nil {
			t.Fatal("dial after RemoveGuard succeeded: the guard is still there")
		}
	}
}
