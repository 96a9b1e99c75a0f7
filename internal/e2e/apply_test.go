package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// confirmTimeout is the deadline of the lockout scenarios (they wait for
// it); goodTimeout leaves a loaded 2-core CI machine room to confirm (the
// deadline counts from begin, so it covers apply and the fresh connection).
const (
	confirmTimeout = 8 * time.Second
	goodTimeout    = "--confirm-timeout=20s"
)

// rulesetFor picks the testdata ruleset of a kind ("good", "dropall",
// "dropnew", "syntax") in the format that fits the host's backend.
func rulesetFor(h *lab.Host, kind string, v6 bool) string {
	if h.Backend == "nft" {
		return kind + ".nft"
	}
	if v6 {
		return kind + ".v6"
	}
	return kind + ".v4"
}

// TestApplyMatrix runs the four basic outcomes on every backend, over IPv4
// and IPv6, and on the host reached only through a jump host.
func TestApplyMatrix(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 4, InitExe: lifelineBin})
	cfg6 := v6Config(t, l)
	scenarios := func(t *testing.T, h *lab.Host) {
		families := []bool{false}
		if h.Address6 != "" && h.Jump == "" {
			families = append(families, true)
		}
		for _, v6 := range families {
			cfg, alias := l.SSHConfig, h.Name
			if v6 {
				cfg, alias = cfg6, h.Name+"-v6"
			}
			applyScenarios(t, l, h, cfg, alias, v6)
		}
	}
	// Front hosts in parallel; then the hosts behind a jump host, whose path
	// the front hosts' lockout scenarios would cut while they run.
	t.Run("front", func(t *testing.T) {
		for _, h := range l.Hosts {
			if h.Jump != "" {
				continue
			}
			t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
				t.Parallel()
				scenarios(t, h)
			})
		}
	})
	for _, h := range l.Hosts {
		if h.Jump != "" {
			t.Run(h.Name+"-"+h.Backend+"-via-"+h.Jump, func(t *testing.T) { scenarios(t, h) })
		}
	}
}

func applyScenarios(t *testing.T, l *lab.Lab, h *lab.Host, cfg, alias string, v6 bool) {
	fam := "v4"
	if v6 {
		fam = "v6"
	}
	timeout := "--confirm-timeout=" + confirmTimeout.String()

	// A syntax error: refused, live ruleset byte-for-byte unchanged, no timer.
	before := liveRuleset(t, l, h.Name)
	r, stderr, code := apply(t, l, cfg, alias, rulesetFor(h, "syntax", v6), timeout)
	if r.Outcome != "refused" || code != 1 {
		t.Fatalf("%s %s syntax: outcome %s exit %d, want refused/1: %s\n%s", h.Name, fam, r.Outcome, code, r.Error, stderr)
	}
	if !strings.Contains(r.Error, "line") {
		t.Errorf("%s %s syntax: error does not point at the line: %s", h.Name, fam, r.Error)
	}
	if after := liveRuleset(t, l, h.Name); after != before {
		t.Fatalf("%s %s syntax: ruleset changed after a refusal:\nbefore:\n%s\nafter:\n%s", h.Name, fam, before, after)
	}
	if a := armed(t, l, h.Name); a != "" {
		t.Fatalf("%s %s syntax: left armed: %s", h.Name, fam, a)
	}

	// A good ruleset: confirmed, live, and a fresh ssh works.
	r, stderr, code = apply(t, l, cfg, alias, rulesetFor(h, "good", v6), goodTimeout)
	if r.Outcome != "confirmed" || code != 0 {
		t.Fatalf("%s %s good: outcome %s exit %d, want confirmed/0: %s\n%s", h.Name, fam, r.Outcome, code, r.Error, stderr)
	}
	if live := liveRuleset(t, l, h.Name); !strings.Contains(live, "8080") {
		t.Fatalf("%s %s good: the live ruleset lacks the new rules:\n%s", h.Name, fam, live)
	}
	if err := sshWorks(t, cfg, alias); err != nil {
		t.Fatalf("%s %s good: %v", h.Name, fam, err)
	}
	if a := armed(t, l, h.Name); a != "" {
		t.Fatalf("%s %s good: still armed after confirm: %s", h.Name, fam, a)
	}

	// Lockouts: everything dropped, and the iptables-apply trap (NEW dropped,
	// ESTABLISHED accepted). Both must end reverted, verified, reachable.
	for _, kind := range []string{"dropall", "dropnew"} {
		before := liveRuleset(t, l, h.Name)
		t0 := time.Now()
		r, stderr, code := apply(t, l, cfg, alias, rulesetFor(h, kind, v6), timeout, "--force")
		took := time.Since(t0)
		if r.Outcome != "reverted" || code != 1 {
			t.Fatalf("%s %s %s: outcome %s exit %d, want reverted/1: %s\n%s", h.Name, fam, kind, r.Outcome, code, r.Error, stderr)
		}
		if took > confirmTimeout+15*time.Second {
			t.Errorf("%s %s %s: took %s, want within the deadline (%s) + connect and report; timings %+v", h.Name, fam, kind, took, confirmTimeout, r.Timings)
		}
		if after := liveRuleset(t, l, h.Name); after != before {
			t.Fatalf("%s %s %s: live ruleset differs from the snapshot after revert:\nbefore:\n%s\nafter:\n%s", h.Name, fam, kind, before, after)
		}
		if err := sshWorks(t, cfg, alias); err != nil {
			t.Fatalf("%s %s %s: after revert: %v", h.Name, fam, kind, err)
		}
		if a := armed(t, l, h.Name); a != "" {
			t.Fatalf("%s %s %s: still armed after revert: %s", h.Name, fam, kind, a)
		}
	}
}

// TestKilledWorkstation: lifeline dies (SIGKILL) right after the apply; the
// host restores its snapshot by itself by the deadline.
func TestKilledWorkstation(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 2, InitExe: lifelineBin})
	var wg sync.WaitGroup
	for _, h := range l.Hosts {
		h := h
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(h.Name, func(t *testing.T) {
				before := liveRuleset(t, l, h.Name)
				cmd, _ := streamUntil(t, l.SSHConfig, h.Name, rulesetFor(h, "dropall", false), "apply", "done", "--confirm-timeout=8s", "--force")
				killed := time.Now()
				_ = cmd.Process.Signal(syscall.SIGKILL)
				_ = cmd.Wait()
				if err := waitFor(20*time.Second, func() bool { return liveRuleset(t, l, h.Name) == before }); err != nil {
					t.Fatalf("%s: not reverted %s after lifeline was killed: %v\nlive:\n%s", h.Name, time.Since(killed).Round(time.Second), err, liveRuleset(t, l, h.Name))
				}
				if d := time.Since(killed); d > 8*time.Second+5*time.Second {
					t.Errorf("%s: reverted only after %s", h.Name, d)
				}
				if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
					t.Fatal(err)
				}
			})
		}()
	}
	wg.Wait()
}

// TestWatchdogKilled: the host's revert timer dies after the apply; the
// kernel guard re-opens the operator's path after the deadline, and lifeline
// reports the host as needing recovery.
func TestWatchdogKilled(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "nft", InitExe: lifelineBin})
	h := l.Hosts[0]
	cmd, sc := streamUntil(t, l.SSHConfig, h.Name, "dropall.nft", "apply", "done", "--confirm-timeout=8s", "--force")
	signalWatchdogs(t, l, h.Name, "KILL")
	r := finalResult(t, sc)
	_ = cmd.Wait()
	if r.Outcome != "needs-recovery" {
		t.Fatalf("outcome %s, want needs-recovery: %s", r.Outcome, r.Error)
	}
	if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
		t.Fatalf("the kernel guard did not let the operator in after the deadline: %v", err)
	}
}

// TestConcurrentApply: a second apply while the first is armed is refused
// and names the holder; the first still ends as it should.
func TestConcurrentApply(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 1, Backend: "iptables-legacy", InitExe: lifelineBin})
	h := l.Hosts[0]
	// The first apply holds the host's lock: it is armed (begin done) and
	// its lifeline is killed before it confirms, so the host keeps the
	// transaction until its deadline.
	cmd, _ := streamUntil(t, l.SSHConfig, h.Name, "good.v4", "begin", "done", "--confirm-timeout=15s")
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	r2, _, code := apply(t, l, l.SSHConfig, h.Name, "good.v4", "--confirm-timeout=8s")
	if r2.Outcome != "refused" || code != 1 {
		t.Fatalf("second apply: outcome %s exit %d, want refused: %s", r2.Outcome, code, r2.Error)
	}
	if r2.Holder == nil || r2.Holder.TxID == "" || !strings.Contains(r2.Error+r2.Hint, r2.Holder.TxID) {
		t.Fatalf("second apply: refusal does not name the holder: %+v %s %s", r2.Holder, r2.Error, r2.Hint)
	}
	// The first transaction reverts by itself at its deadline.
	if err := waitFor(30*time.Second, func() bool { return armed(t, l, h.Name) == "" }); err != nil {
		t.Fatalf("first transaction still armed: %s", armed(t, l, h.Name))
	}
}

// TestForeignChains: Docker's and kube-proxy's chains survive confirm and
// revert exactly, even though the ruleset file flushes their tables.
func TestForeignChains(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	for _, h := range l.Hosts {
		if h.Backend == "nft" || h.Address == "" {
			continue
		}
		t.Run(h.Name, func(t *testing.T) {
			// Plant the chains the way Docker and kube-proxy do: through
			// go-iptables, in the host's own netns and backend.
			err := l.IPTables(h.Name, false, func(ipt *iptables.IPTables) error {
				steps := []func() error{
					func() error { return ipt.NewChain("filter", "DOCKER-USER") },
					func() error { return ipt.Append("filter", "DOCKER-USER", "-s", "203.0.113.0/24", "-j", "DROP") },
					func() error { return ipt.Append("filter", "DOCKER-USER", "-j", "RETURN") },
					func() error { return ipt.Insert("filter", "FORWARD", 1, "-j", "DOCKER-USER") },
					func() error { return ipt.NewChain("nat", "DOCKER") },
					func() error { return ipt.Append("nat", "DOCKER", "-i", "docker0", "-j", "RETURN") },
					func() error {
						return ipt.Append("nat", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER")
					},
					func() error { return ipt.NewChain("nat", "KUBE-SERVICES") },
					func() error {
						return ipt.Append("nat", "KUBE-SERVICES", "-d", "10.96.0.1/32", "-p", "tcp", "--dport", "443", "-j", "RETURN")
					},
					func() error { return ipt.Insert("nat", "PREROUTING", 1, "-j", "KUBE-SERVICES") },
				}
				for _, step := range steps {
					if err := step(); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("create foreign chains: %v", err)
			}
			foreign := func() string {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				out, err := l.Exec(ctx, h.Name, "sh", "-c", "iptables-save | grep -E 'DOCKER|KUBE' | sed 's/\\[[0-9]*:[0-9]*\\]//'")
				if err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				return string(out)
			}
			want := foreign()
			if r, stderr, _ := apply(t, l, l.SSHConfig, h.Name, "good.v4", goodTimeout); r.Outcome != "confirmed" {
				t.Fatalf("apply good: %s: %s\n%s", r.Outcome, r.Error, stderr)
			}
			if got := foreign(); got != want {
				t.Fatalf("foreign chains changed by confirm:\nwant:\n%s\ngot:\n%s", want, got)
			}
			if r, stderr, _ := apply(t, l, l.SSHConfig, h.Name, "dropall.v4", "--confirm-timeout=8s", "--force"); r.Outcome != "reverted" {
				t.Fatalf("apply dropall: %s: %s\n%s", r.Outcome, r.Error, stderr)
			}
			if got := foreign(); got != want {
				t.Fatalf("foreign chains changed by revert:\nwant:\n%s\ngot:\n%s", want, got)
			}
		})
	}
}

func finalResult(t *testing.T, sc *bufio.Scanner) result {
	t.Helper()
	for sc.Scan() {
		var doc struct {
			Type string `json:"type"`
			applyDoc
		}
		if json.Unmarshal(sc.Bytes(), &doc) == nil && doc.Type == "result" {
			if len(doc.Results) != 1 {
				t.Fatalf("want 1 result, got %d", len(doc.Results))
			}
			return doc.Results[0]
		}
	}
	t.Fatal("apply stream ended without a result")
	return result{}
}

func waitFor(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	if cond() {
		return nil
	}
	return fmt.Errorf("gave up after %s", limit)
}

// TestApplyCost (#12): a warm guarded apply of a small ruleset makes four
// round trips (probe, begin, stage; confirm on the fresh connection),
// uploads nothing, and starts at most 20 processes on the host, as its
// JSON says; every backend reports its count.
func TestApplyCost(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 4, InitExe: lifelineBin})
	for _, h := range l.Hosts {
		if h.Jump != "" {
			continue
		}
		h := h
		t.Run(h.Name+"-"+h.Backend, func(t *testing.T) {
			t.Parallel()
			good := rulesetFor(h, "good", false)
			// cold (uploads), then warm twice: the second warm one finds
			// its trial loads proven by the first
			var r result
			for i := 0; i < 3; i++ {
				var stderr string
				var code int
				r, stderr, code = apply(t, l, l.SSHConfig, h.Name, good)
				if r.Outcome != "confirmed" || code != 0 {
					t.Fatalf("apply %d: %s exit %d: %s\n%s", i, r.Outcome, code, r.Error, stderr)
				}
				t.Logf("apply %d: %d processes on the host, %d round trips, %d bytes uploaded", i, r.HostProcesses, r.RoundTrips, r.Uploaded)
			}
			if r.Uploaded != 0 || r.RoundTrips != 4 {
				t.Errorf("warm apply: %d round trips, %d bytes uploaded; want 4 and none", r.RoundTrips, r.Uploaded)
			}
			if r.HostProcesses <= 0 || h.Backend == lab.BackendNft && r.HostProcesses > 20 {
				t.Errorf("warm apply started %d processes on the host, want 1..20 on nft", r.HostProcesses)
			}
		})
	}
}
