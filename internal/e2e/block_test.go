package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// blockResult is one host's result of block/unblock --json.
type blockResult struct {
	result
	Block struct {
		Set      string   `json:"set"`
		Mode     string   `json:"mode"`
		Guarded  bool     `json:"guarded"`
		Created  bool     `json:"created"`
		Added    []string `json:"added"`
		Removed  []string `json:"removed"`
		Absent   []string `json:"absent"`
		Refusals []struct {
			Path struct{ What, Src string }
			CIDR string `json:"cidr"`
			Why  string `json:"why"`
		} `json:"refusals"`
	} `json:"block"`
}

// blockCLI runs block/unblock with --json and decodes the per-host results.
func blockCLI(t *testing.T, l *lab.Lab, args ...string) (map[string]blockResult, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, append([]string{"-i", l.Inventory, "-F", l.SSHConfig, "--json"}, args...)...)
	var doc struct {
		Results []blockResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v: exit %d, unreadable JSON (%v)\nstdout: %s\nstderr: %s", args, code, err, stdout, stderr)
	}
	out := map[string]blockResult{}
	for _, r := range doc.Results {
		out[r.Host] = r
	}
	return out, stdout + stderr, code
}

// setElems is `lifeline sets` --json: host -> set -> element -> ttl (s).
func setElems(t *testing.T, l *lab.Lab, target string) map[string]map[string]map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, "-i", l.Inventory, "-F", l.SSHConfig, "--json", "sets", target)
	var doc struct {
		Sets []struct {
			Host, Set, Owner string
			Elements         []struct {
				Element string `json:"element"`
				TTL     int64  `json:"ttl_s"`
			}
		}
		Errors map[string]string
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 {
		t.Fatalf("sets %s: exit %d (%v)\n%s\n%s", target, code, err, stdout, stderr)
	}
	out := map[string]map[string]map[string]int64{}
	for _, s := range doc.Sets {
		if out[s.Host] == nil {
			out[s.Host] = map[string]map[string]int64{}
		}
		if out[s.Host][s.Set] == nil {
			out[s.Host][s.Set] = map[string]int64{}
		}
		for _, e := range s.Elements {
			out[s.Host][s.Set][e.Element] = e.TTL
		}
	}
	return out
}

// blockedOn: the elements of block set "blocked" on a host, whatever its mode.
func blockedOn(sets map[string]map[string]map[string]int64, host string) map[string]int64 {
	out := map[string]int64{}
	for _, name := range []string{"inet lifeline blocked", "inet lifeline blocked6", "lifeline-blocked", "lifeline-blocked-v6"} {
		for e, ttl := range sets[host][name] {
			out[e] = ttl
		}
	}
	return out
}

var saveCounters = regexp.MustCompile(`^\[\d+:\d+\] `)

// rulesOf lists every rule, chain and table of a host with its nft handle
// (nft -a: set elements carry none) and every iptables rule (counters
// dropped): what an element batch must leave byte for byte alone.
func rulesOf(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	out := execOn(t, l, host, "sh", "-c", `nft -a list ruleset | grep '# handle'; for s in iptables-nft-save ip6tables-nft-save iptables-legacy-save ip6tables-legacy-save; do $s 2>/dev/null | grep -v '^#'; done; true`)
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		line = saveCounters.ReplaceAllString(line, "")
		b.WriteString(nftCounters.ReplaceAllString(counters.ReplaceAllString(line, "[0:0]"), "packets 0 bytes 0") + "\n")
	}
	return b.String()
}

// TestBlockFleet: on a 10-host lab of every backend (one behind a jump
// host), the first block creates the set and rule in a guarded transaction
// on each host; the next adds one element per host in one batch and
// changes no rule (handles and rule lists compared); --ttl elements expire
// by themselves; blocking the operator's own address, or the jump host's
// address on the jumped host, is refused by the preflight and changes
// nothing; unblock removes elements.
func TestBlockFleet(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 10, InitExe: lifelineBin})

	// first creation: a guarded transaction per host, confirmed
	start := time.Now()
	res, out, code := blockCLI(t, l, "block", "all", "203.0.113.0/24", "--forks", "10")
	t.Logf("first block on 10 hosts (guarded, creates the set): %s", time.Since(start).Round(time.Millisecond))
	if code != 0 || len(res) != 10 {
		t.Fatalf("first block: exit %d, %d results\n%s", code, len(res), out)
	}
	for h, r := range res {
		if r.Outcome != "confirmed" || !r.Block.Guarded || !r.Block.Created {
			t.Fatalf("%s: first block: outcome %s guarded %v created %v: %s", h, r.Outcome, r.Block.Guarded, r.Block.Created, r.Error)
		}
	}
	before := map[string]string{}
	for _, h := range l.Hosts {
		before[h.Name] = rulesOf(t, l, h.Name)
	}

	// the set exists: one batch per host, no rule changes
	start = time.Now()
	res, out, code = blockCLI(t, l, "block", "all", "198.51.100.0/24", "--ttl", "5s", "--forks", "10")
	added := time.Now()
	t.Logf("second block on 10 hosts (one batch each): %s", added.Sub(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("second block: exit %d\n%s", code, out)
	}
	for h, r := range res {
		if r.Outcome != "done" || r.Block.Guarded || len(r.Block.Added) != 1 || r.Block.Added[0] != "198.51.100.0/24" {
			t.Fatalf("%s: second block: outcome %s guarded %v added %v: %s", h, r.Outcome, r.Block.Guarded, r.Block.Added, r.Error)
		}
	}
	sets := setElems(t, l, "all")
	for _, h := range l.Hosts {
		if after := rulesOf(t, l, h.Name); after != before[h.Name] {
			t.Errorf("%s (%s): an element batch changed rules:\nbefore:\n%s\nafter:\n%s", h.Name, h.Backend, before[h.Name], after)
		}
		got := blockedOn(sets, h.Name)
		if len(got) != 2 {
			t.Errorf("%s (%s): want the 2 blocked elements, got %v (all sets: %v)", h.Name, h.Backend, got, sets[h.Name])
		}
		if ttl, ok := got["198.51.100.0/24"]; !ok || ttl < 1 || ttl > 5 {
			t.Errorf("%s: 198.51.100.0/24 ttl %d (present %v), want 1..5", h.Name, ttl, ok)
		}
		if ttl := got["203.0.113.0/24"]; ttl != 0 {
			t.Errorf("%s: 203.0.113.0/24 has a ttl %d, want none", h.Name, ttl)
		}
	}

	// refusals: the operator's address as the front hosts see it, and the
	// jump host's address as the jumped host sees it
	var jumped *lab.Host
	for _, h := range l.Hosts {
		if h.Jump != "" {
			jumped = h
		}
	}
	opAddr := strings.Fields(execSSH(t, l, l.Hosts[0].Name, `printf '%s' "$SSH_CONNECTION"`))[0]
	jumpAddr := strings.Fields(execSSH(t, l, jumped.Name, `printf '%s' "$SSH_CONNECTION"`))[0]
	for _, tc := range []struct {
		target, cidr, addr string
	}{
		{"all", opAddr[:strings.LastIndex(opAddr, ".")] + ".0/24", opAddr},
		{jumped.Name, jumpAddr, jumpAddr},
	} {
		res, out, code = blockCLI(t, l, "block", tc.target, tc.cidr)
		if code != 1 {
			t.Fatalf("block %s %s: exit %d, want 1 (refused)\n%s", tc.target, tc.cidr, code, out)
		}
		for h, r := range res {
			if r.Outcome != "refused" || len(r.Block.Refusals) == 0 || !strings.Contains(r.Error, tc.cidr) || !strings.Contains(r.Error, h) {
				t.Errorf("block %s on %s: outcome %s refusals %v error %q: want refused naming the host and the CIDR", tc.cidr, h, r.Outcome, r.Block.Refusals, r.Error)
			}
			if tc.target == "all" && h != jumped.Name && r.Block.Refusals[0].Path.Src != tc.addr {
				t.Errorf("%s: refused path %+v, want source %s", h, r.Block.Refusals, tc.addr)
			}
		}
	}
	sets = setElems(t, l, "all")
	for _, h := range l.Hosts {
		if after := rulesOf(t, l, h.Name); after != before[h.Name] {
			t.Errorf("%s: a refused block changed rules", h.Name)
		}
		if got := blockedOn(sets, h.Name); len(got) > 2 {
			t.Errorf("%s: a refused block added elements: %v", h.Name, got)
		}
		if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
	}

	// --ttl 5s: gone by itself
	time.Sleep(time.Until(added.Add(7 * time.Second)))
	sets = setElems(t, l, "all")
	for _, h := range l.Hosts {
		got := blockedOn(sets, h.Name)
		if _, ok := got["198.51.100.0/24"]; ok {
			t.Errorf("%s (%s): the 5s element is still there after 7s: %v", h.Name, h.Backend, got)
		}
		if _, ok := got["203.0.113.0/24"]; !ok {
			t.Errorf("%s: the permanent element is gone: %v", h.Name, got)
		}
	}

	// unblock: one batch, no rule change
	res, out, code = blockCLI(t, l, "unblock", "all", "203.0.113.0/24", "192.0.2.1")
	if code != 0 {
		t.Fatalf("unblock: exit %d\n%s", code, out)
	}
	sets = setElems(t, l, "all")
	for _, h := range l.Hosts {
		r := res[h.Name]
		if r.Outcome != "done" || len(r.Block.Removed) != 1 || len(r.Block.Absent) != 1 {
			t.Errorf("%s: unblock: outcome %s removed %v absent %v: %s", h.Name, r.Outcome, r.Block.Removed, r.Block.Absent, r.Error)
		}
		if got := blockedOn(sets, h.Name); len(got) != 0 {
			t.Errorf("%s: after unblock: %v", h.Name, got)
		}
		if after := rulesOf(t, l, h.Name); after != before[h.Name] {
			t.Errorf("%s: unblock changed rules", h.Name)
		}
	}
}

// execSSH runs a command over the lab's ssh_config (as the operator
// connects, unlike execOn's console).
func execSSH(t *testing.T, l *lab.Lab, host, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, "-F", l.SSHConfig, "-i", l.Inventory, "--json", "run", host, "--", cmd)
	var doc []struct{ Stdout string }
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 || len(doc) != 1 {
		t.Fatalf("run %s %q: exit %d (%v)\n%s\n%s", host, cmd, code, err, stdout, stderr)
	}
	return doc[0].Stdout
}

// TestBlockForceRevertedAndBansSurviveRevert: a forced block of the
// operator's own address locks the fresh connection out, so the host
// reverts it (the element is gone, ssh works), also when the block created
// the set (behind a jump host: then the set and rule go too); and a block made while an
// apply is armed survives that apply's revert, which otherwise restores
// the snapshot, as does a ban fail2ban adds to its own nft table meanwhile.
func TestBlockForceRevertedAndBansSurviveRevert(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 3, InitExe: lifelineBin})
	h1, h2 := l.Hosts[0], l.Hosts[1] // nft, iptables-nft
	opAddr := strings.Fields(execSSH(t, l, h1.Name, `printf '%s' "$SSH_CONNECTION"`))[0]

	// create the set on both (guarded, confirmed)
	if res, out, code := blockCLI(t, l, "block", h1.Name+","+h2.Name, "192.0.2.0/24"); code != 0 || res[h1.Name].Outcome != "confirmed" || res[h2.Name].Outcome != "confirmed" {
		t.Fatalf("first block: exit %d\n%s", code, out)
	}

	// --force past the refusal: the block drops the fresh connection, so
	// the host reverts it by itself
	for _, h := range []*lab.Host{h1, h2} {
		res, out, code := blockCLI(t, l, "block", h.Name, opAddr, "--force", "--window", "8s", "--revert-grace", "30s")
		r := res[h.Name]
		if code != 1 || r.Outcome != "reverted" || len(r.Block.Refusals) == 0 {
			t.Fatalf("%s (%s): forced block of %s: exit %d outcome %s refusals %v\n%s", h.Name, h.Backend, opAddr, code, r.Outcome, r.Block.Refusals, out)
		}
		if err := sshWorks(t, l.SSHConfig, h.Name); err != nil {
			t.Fatalf("%s: after the revert: %v", h.Name, err)
		}
		got := blockedOn(setElems(t, l, h.Name), h.Name)
		if _, ok := got[opAddr]; ok || len(got) != 1 {
			t.Fatalf("%s: after the revert the set holds %v, want only 192.0.2.0/24", h.Name, got)
		}
		if a := armed(t, l, h.Name); a != "" {
			t.Fatalf("%s: still armed: %s", h.Name, a)
		}
		// the guard went into lifeline's own chain too, which the restore
		// carries over: the revert took it out
		if out := execOn(t, l, h.Name, "sh", "-c", "nft list ruleset; iptables-save 2>/dev/null; true"); strings.Contains(out, "lifeline-guard") || strings.Contains(out, "lifeline_guard") {
			t.Fatalf("%s: a guard survived the revert:\n%s", h.Name, out)
		}
	}

	// h03 (iptables-legacy, behind the jump host h01) has no set yet: a
	// forced block of the jump host's address creates it in the guarded
	// transaction, locks the fresh connection out, and the revert takes the
	// element, the ipsets, the chain and the jump away again
	h3 := l.Hosts[2]
	rulesBefore := rulesOf(t, l, h3.Name)
	jumpAddr := strings.Fields(execSSH(t, l, h3.Name, `printf '%s' "$SSH_CONNECTION"`))[0]
	res, out, code := blockCLI(t, l, "block", h3.Name, jumpAddr, "--force", "--window", "8s", "--revert-grace", "30s")
	if r := res[h3.Name]; code != 1 || r.Outcome != "reverted" || !r.Block.Guarded || len(r.Block.Refusals) == 0 {
		t.Fatalf("%s: forced first block of %s: exit %d outcome %s\n%s", h3.Name, jumpAddr, code, r.Outcome, out)
	}
	if err := sshWorks(t, l.SSHConfig, h3.Name); err != nil {
		t.Fatalf("%s: after the revert: %v", h3.Name, err)
	}
	if sets := setElems(t, l, h3.Name); len(sets[h3.Name]) != 0 {
		t.Fatalf("%s: the revert of the creating block left sets: %v", h3.Name, sets[h3.Name])
	}
	if after := rulesOf(t, l, h3.Name); after != rulesBefore {
		t.Fatalf("%s: the revert of the creating block left rules:\nbefore:\n%s\nafter:\n%s", h3.Name, rulesBefore, after)
	}

	// an apply left armed (never confirmed) reverts at its deadline; a block
	// made meanwhile survives it
	for _, tc := range []struct {
		h       *lab.Host
		ruleset string
	}{{h1, "good.nft"}, {h2, "good.v4"}} {
		if tc.h.Backend == "nft" {
			// fail2ban's own table, as its nftables action makes it
			execOn(t, l, tc.h.Name, "nft", "add table inet f2b-table; add set inet f2b-table addr-set-sshd { type ipv4_addr; }; add chain inet f2b-table f2b-chain { type filter hook input priority filter - 1; }; add rule inet f2b-table f2b-chain ip saddr @addr-set-sshd reject")
		}
		snap := liveRuleset(t, l, tc.h.Name)
		r, stderr, code := apply(t, l, l.SSHConfig, tc.h.Name, tc.ruleset, "--no-confirm", "--confirm-timeout", "8s")
		if code != 0 || r.Outcome != "armed" {
			t.Fatalf("%s: apply --no-confirm: exit %d outcome %s: %s\n%s", tc.h.Name, code, r.Outcome, r.Error, stderr)
		}
		res, out, code := blockCLI(t, l, "block", tc.h.Name, "198.51.100.0/25")
		if code != 0 || res[tc.h.Name].Outcome != "done" {
			t.Fatalf("%s: block while armed: exit %d\n%s", tc.h.Name, code, out)
		}
		if tc.h.Backend == "nft" {
			execOn(t, l, tc.h.Name, "nft", "add element inet f2b-table addr-set-sshd { 192.0.2.77 }") // a ban by fail2ban meanwhile
		}
		deadline := time.Now().Add(40 * time.Second)
		for armed(t, l, tc.h.Name) != "" && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
		}
		if a := armed(t, l, tc.h.Name); a != "" {
			t.Fatalf("%s: not reverted: %s", tc.h.Name, a)
		}
		sets := setElems(t, l, tc.h.Name)
		if tc.h.Backend == "nft" {
			if _, ok := sets[tc.h.Name]["inet f2b-table addr-set-sshd"]["192.0.2.77"]; !ok {
				t.Fatalf("%s: sets does not list fail2ban's ban: %v", tc.h.Name, sets[tc.h.Name])
			}
		}
		got := blockedOn(sets, tc.h.Name)
		if _, ok := got["198.51.100.0/25"]; !ok || len(got) != 2 {
			t.Fatalf("%s (%s): after the revert the set holds %v, want 192.0.2.0/24 and 198.51.100.0/25", tc.h.Name, tc.h.Backend, got)
		}
		// the rest is the snapshot: only the new elements differ
		live := strings.ReplaceAll(liveRuleset(t, l, tc.h.Name), ", 198.51.100.0/25", "")
		live = strings.ReplaceAll(live, "198.51.100.0/25, ", "")
		if tc.h.Backend == "nft" {
			if !strings.Contains(live, "elements = { 192.0.2.77 }") {
				t.Fatalf("%s: fail2ban's ban made during the window is gone after the revert:\n%s", tc.h.Name, live)
			}
			var keep []string
			for _, line := range strings.Split(live, "\n") {
				if !strings.Contains(line, "192.0.2.77") {
					keep = append(keep, line)
				}
			}
			live = strings.Join(keep, "\n")
		}
		if live != snap {
			t.Fatalf("%s: after the revert the ruleset is not the snapshot:\nsnapshot:\n%s\nlive:\n%s", tc.h.Name, snap, live)
		}
		if err := sshWorks(t, l.SSHConfig, tc.h.Name); err != nil {
			t.Fatal(err)
		}
	}
}
