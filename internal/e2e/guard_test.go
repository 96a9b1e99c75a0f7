package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestGuardCoversEveryHook: a ruleset that locks the operator out at a hook
// other than the filter table's input (netdev ingress on nft; the raw
// table's PREROUTING and a nat REDIRECT of port 22 on iptables) is applied,
// then the revert timer is killed: the kernel guard alone must let the
// operator back in after the deadline, and the result must name the chains
// it covered.
func TestGuardCoversEveryHook(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	var wg sync.WaitGroup
	// the front hosts in parallel, then the one behind the jump host, whose
	// path the jump host's own lockout would cut while it runs
	for _, h := range append(frontHosts(l), jumpedHosts(l)...) {
		if h.Jump != "" {
			wg.Wait()
		}
		cases := []struct{ ruleset, chain string }{{"lockout-raw.v4", "iptables raw PREROUTING"}, {"lockout-nat.v4", "iptables nat PREROUTING"}}
		if h.Backend == "nft" {
			cases = cases[:0]
			cases = append(cases, struct{ ruleset, chain string }{"lockout-netdev.nft", "netdev lockout ing (ingress)"})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tc := range cases {
				t.Run(h.Name+"/"+tc.ruleset, func(t *testing.T) {
					cmd, _ := streamUntil(t, l.SSHConfig, h.Name, tc.ruleset, "apply", "done", "--confirm-timeout=8s", "--force")
					applied := time.Now()
					// the workstation and the host's revert timer both die
					// right after the apply: nothing but the kernel guard is left
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					signalWatchdogs(t, l, h.Name, "KILL")
					if err := sshWorks(t, l.SSHConfig, h.Name); err == nil && time.Since(applied) < 6*time.Second {
						t.Fatalf("ssh works %s after apply, before the deadline: the ruleset does not lock out, so the test proves nothing", time.Since(applied).Round(time.Millisecond))
					}
					if err := waitFor(25*time.Second, func() bool { return sshWorks(t, l.SSHConfig, h.Name) == nil }); err != nil {
						t.Fatalf("the kernel guard did not let the operator in after the deadline (%s after apply): %v", time.Since(applied).Round(time.Second), err)
					}
					st := status(t, l.SSHConfig, h.Name)
					if !strings.Contains(strings.Join(st[0].GuardChains, "\n"), tc.chain) {
						t.Errorf("status guard chains %q do not name %s", st[0].GuardChains, tc.chain)
					}
					status(t, l.SSHConfig, h.Name, "--abort")
					if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
						t.Fatalf("after status --abort: %v", err)
					}
				})
			}
		}()
	}
	wg.Wait()
}

func frontHosts(l *lab.Lab) []*lab.Host {
	var out []*lab.Host
	for _, h := range l.Hosts {
		if h.Jump == "" {
			out = append(out, h)
		}
	}
	return out
}

func jumpedHosts(l *lab.Lab) []*lab.Host {
	var out []*lab.Host
	for _, h := range l.Hosts {
		if h.Jump != "" {
			out = append(out, h)
		}
	}
	return out
}
