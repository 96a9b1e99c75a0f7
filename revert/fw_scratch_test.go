package revert

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestScratchThread: the helper's own trial namespace (a thread that
// unshared its network namespace; links over rtnetlink; the tools started
// from that thread) holds what the load put there, mirrors the interface
// names, reports a refused load as the tool's error, and never touches the
// namespace the test runs in (only read here).
func TestScratchThread(t *testing.T) {
	requireTools(t)
	f := NewFirewall(FirewallOptions{Log: t.Logf}).(*hostFirewall)
	if !f.local {
		t.Fatal("a firewall without Exec or NetNS is not local")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rootBefore, _ := exec.Command("nft", "list", "tables").Output()
	ifaces := []string{"eth0", "wan-uplink"}
	rules := "table inet lltrial {\n chain input {\n  type filter hook input priority 0; policy accept;\n  iif \"eth0\" accept\n  iifname \"wan-uplink\" drop\n }\n}\n"
	out, err := f.scratchThread(ctx, ifaces, []byte(rules), []string{"nft", "-f", "-"}, []string{"nft", "list", "ruleset"})
	if err != nil {
		t.Fatalf("trial load: %v", err)
	}
	if !strings.Contains(out, "table inet lltrial") || !strings.Contains(out, `iif "eth0" accept`) {
		t.Fatalf("the trial namespace lists:\n%s\nwant the loaded table with iif eth0 (the link must exist there)", out)
	}
	links, err := f.scratchThread(ctx, ifaces, nil, []string{"true"}, []string{"ip", "-o", "link", "show"})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if !strings.Contains(links, ": "+i+"@") {
			t.Errorf("link %s missing in the trial namespace:\n%s", i, links)
		}
	}
	_, err = f.scratchThread(ctx, nil, []byte("table inet lltrial {\n chain c {\n  jump nowhere\n }\n}\n"), []string{"nft", "-f", "-"}, []string{"nft", "list", "ruleset"})
	var te *ToolError
	if err == nil || !errors.As(err, &te) || !strings.Contains(te.Stderr, "nowhere") {
		t.Fatalf("a refused load: %v, want the tool's error naming the bad jump", err)
	}
	if rootAfter, _ := exec.Command("nft", "list", "tables").Output(); string(rootAfter) != string(rootBefore) || strings.Contains(string(rootAfter), "lltrial") {
		t.Fatalf("the test's own namespace changed: %s", rootAfter)
	}
}

// TestNSThreadsLeaveTheProcessNamespace: however many trial threads the
// helper starts and ends, the process's own network namespace (what
// /proc/self/net shows every reader) stays the one it started in; a
// thread that ended in the main thread would leave it in a sandbox.
func TestNSThreadsLeaveTheProcessNamespace(t *testing.T) {
	requireTools(t)
	self := func() string {
		t.Helper()
		l, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	before := self()
	for i := 0; i < 64; i++ {
		th, err := newNSThread()
		if err != nil {
			t.Fatal(err)
		}
		var inside string
		if err := th.do(func() error {
			var err error
			inside, err = os.Readlink("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		th.close()
		if inside == before {
			t.Fatalf("thread %d runs in the process's namespace %s, want its own", i, inside)
		}
		if now := self(); now != before {
			t.Fatalf("after thread %d the process's namespace is %s, was %s", i, now, before)
		}
	}
}
