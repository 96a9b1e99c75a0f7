package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestRecoverVia: a host locked out by hand (no lifeline transaction: a
// rule that drops new SSH from everyone but its neighbour) is recovered
// through the neighbour as a jump: the last confirmed firewall comes back,
// guarded and confirmed over the same path, and the direct path works
// again. With no path that reaches it, recover is refused, nothing changed.
func TestRecoverVia(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	jump, h := l.Hosts[0], l.Hosts[1]
	r, stderr, code := apply(t, l, l.SSHConfig, h.Name, rulesetFor(h, "good", false))
	if r.Outcome != "confirmed" || code != 0 {
		t.Fatalf("apply: %s exit %d: %s\n%s", r.Outcome, code, r.Error, stderr)
	}
	good := liveRuleset(t, l, h.Name)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lockout := "iptables -I INPUT -p tcp --dport 22 -m conntrack --ctstate NEW ! -s " + jump.Address + " -j DROP"
	if h.Backend == "nft" {
		lockout = "nft insert rule inet filter input ip saddr != " + jump.Address + " tcp dport 22 ct state new drop"
	}
	if out, err := l.Exec(ctx, h.Name, "sh", "-c", lockout); err != nil {
		t.Fatalf("hand-made lockout: %v\n%s", err, out)
	}
	if err := sshWorks(t, l.SSHConfig, h.Name); err == nil {
		t.Fatal("the direct path still works: the test proves nothing")
	}
	locked := liveRuleset(t, l, h.Name)

	// no path reaches it: refused, nothing changed
	doc, _, code := lifelineJSON(t, l.SSHConfig, "recover", h.Name, "--window", "20s")
	if rr := doc.Results[0]; rr.Outcome != "refused" || code != 1 || !strings.Contains(rr.Hint, "--via") {
		t.Fatalf("recover without a path: %s exit %d: %s (hint %s)", rr.Outcome, code, rr.Error, rr.Hint)
	}
	if got := liveRuleset(t, l, h.Name); got != locked {
		t.Fatalf("a refused recover changed the ruleset")
	}

	doc, stderr, code = lifelineJSON(t, l.SSHConfig, "recover", h.Name, "--via", jump.Name, "--window", "20s")
	rr := doc.Results[0]
	if rr.Outcome != "confirmed" || code != 0 {
		t.Fatalf("recover --via %s: %s exit %d: %s\n%s", jump.Name, rr.Outcome, code, rr.Error, stderr)
	}
	if rr.Path != "via "+jump.Name || !strings.Contains(strings.Join(rr.Warnings, " "), "direct") {
		t.Errorf("the report does not say which path worked (%q) and that the direct one failed first: %v", rr.Path, rr.Warnings)
	}
	if got := liveRuleset(t, l, h.Name); got != good {
		t.Fatalf("after recover the ruleset is not the last confirmed one:\nwant:\n%s\ngot:\n%s", good, got)
	}
	if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
		t.Fatalf("direct ssh after recover: %v", err)
	}
}
