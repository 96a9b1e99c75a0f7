package revert

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadStateNetns(t *testing.T) {
	requireTools(t)
	ns := testNetns(t)
	nsRun(t, ns, "table inet filter {\n chain input { type filter hook input priority 0; policy accept; tcp dport 22 counter accept; }\n}\n", "nft", "-f", "-")
	nsRun(t, ns, "", "iptables-legacy", "-A", "INPUT", "-s", "192.0.2.0/24", "-m", "comment", "--comment", "two words", "-j", "DROP")
	fw := newTestFirewall(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := nsRun(t, ns, "", "nft", "list", "ruleset")

	st, err := fw.ReadState(ctx, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	bySource := map[string]StatePart{}
	for _, p := range st.Parts {
		bySource[p.Source] = p
	}
	nft, ok := bySource["nft"]
	if !ok || nft.Format != StateNftJSON {
		t.Fatalf("no nft JSON part: %+v", st.Parts)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(nft.Text), &doc); err != nil || !strings.Contains(nft.Text, `"dport"`) {
		t.Fatalf("nft part is not nft's JSON of the live table (%v):\n%s", err, nft.Text)
	}
	leg, ok := bySource["iptables-legacy"]
	if !ok || leg.Format != StateIptablesSave || !strings.Contains(leg.Text, `-A INPUT -s 192.0.2.0/24 -m comment --comment "two words" -j DROP`) || !strings.Contains(leg.Text, "[0:0]") {
		t.Fatalf("no iptables-legacy part with counters: %+v", leg)
	}

	st, err = fw.ReadState(ctx, &RulesetChange{Format: FormatNft, Text: "table ip cand {\n chain c { type filter hook output priority 0; policy drop; }\n}\n"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(st.Facts.Active, "nft") || !slices.Contains(st.Facts.Active, "iptables-legacy") {
		t.Fatalf("active %v, want nft and iptables-legacy", st.Facts.Active)
	}
	if len(st.Candidate) != 1 || !strings.Contains(st.Candidate[0].Text, `"cand"`) || strings.Contains(st.Candidate[0].Text, `"dport"`) && !strings.Contains(st.Candidate[0].Text, `"cand"`) {
		t.Fatalf("candidate listing: %+v", st.Candidate)
	}
	_, err = fw.ReadState(ctx, &RulesetChange{Format: FormatNft, Text: "table ip cand {\n chain c { type filter hook output priority 0; policy drop; }\n bogus here\n}\n"}, false)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeInvalidRuleset {
		t.Fatalf("bad candidate: %v, want %s", err, CodeInvalidRuleset)
	}
	// zero: listed first, then reset (iptables); nft 1.0.6 cannot, and says so
	nsRun(t, ns, "", "iptables-legacy", "-A", "INPUT", "-c", "5", "300", "-p", "udp", "-j", "ACCEPT")
	st, err = fw.ReadState(ctx, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(partOf(st, "iptables-legacy"), "[5:300] -A INPUT -p udp -j ACCEPT") || !slices.Contains(st.Zeroed, "iptables-legacy") {
		t.Fatalf("zero: listing before the reset %q, zeroed %v, notes %v", partOf(st, "iptables-legacy"), st.Zeroed, st.Facts.Notes)
	}
	if slices.Contains(st.Zeroed, "nft") == (len(st.Facts.Notes) > 0 && strings.Contains(strings.Join(st.Facts.Notes, " "), "nft: counters not reset")) {
		t.Fatalf("zero on nft: zeroed %v but notes %v", st.Zeroed, st.Facts.Notes)
	}
	st, err = fw.ReadState(ctx, nil, false)
	if err != nil || !strings.Contains(partOf(st, "iptables-legacy"), "[0:0] -A INPUT -p udp -j ACCEPT") {
		t.Fatalf("after zero: %v %q", err, partOf(st, "iptables-legacy"))
	}
	if after := nsRun(t, ns, "", "nft", "list", "ruleset"); after != before {
		t.Fatalf("ReadState changed the live ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestReadHostFacts(t *testing.T) {
	proc := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(proc, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sys/net/ipv4/ip_forward", "1\n")
	write("sys/net/ipv6/conf/all/forwarding", "0\n")
	write("sys/net/netfilter/nf_conntrack_max", "1000\n")
	write("sys/net/netfilter/nf_conntrack_count", "950\n")
	write("net/if_inet6", "fe800000000000000000000000000001 02 40 20 80 eth0\n20010db8000000000000000000000001 02 40 00 80 eth0\n")
	write("net/tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"+
		"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0\n"+
		"   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n")
	write("net/tcp6", "  sl  local_address rem_address st\n"+
		"   0: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 556 1\n")
	write("123/comm", "sshd\n")
	write("124/comm", "nginx\n")
	for _, l := range []struct{ pid, fd, target string }{{"123", "3", "socket:[555]"}, {"123", "4", "socket:[556]"}, {"124", "3", "socket:[777]"}, {"123", "5", "/dev/null"}} {
		if err := os.MkdirAll(filepath.Join(proc, l.pid, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l.target, filepath.Join(proc, l.pid, "fd", l.fd)); err != nil {
			t.Fatal(err)
		}
	}
	var f HostFacts
	readHostFacts(proc, &f)
	want := HostFacts{IPv4Forward: true, IPv6: true, ConntrackCount: 950, ConntrackMax: 1000, SSHPorts: []int{22, 2222}}
	if got, _ := json.Marshal(f); string(got) != mustJSON(t, want) {
		t.Fatalf("facts\n got %s\nwant %s", got, mustJSON(t, want))
	}

	var empty HostFacts
	readHostFacts(t.TempDir(), &empty)
	if empty.ConntrackMax != 0 || len(empty.Notes) == 0 || !strings.Contains(empty.Notes[0], "conntrack is not loaded") {
		t.Fatalf("no /proc facts: %+v", empty)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStateVerb(t *testing.T) {
	h := newHarness(t)
	h.fw = NewFakeFirewall(map[Format]string{FormatIPTables: "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"})
	rep := h.do(VerbState, &Request{Version: ProtocolVersion})
	if rep.Error != nil || rep.Live == nil || len(rep.Live.Parts) != 1 || rep.Live.Parts[0].Format != StateIptablesSave {
		t.Fatalf("state: %+v %+v", rep.Error, rep.Live)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "lock")); err == nil {
		t.Fatal("the read-only state verb took the lock")
	}

	// a confirm that asks for the state after it gets it in the same run
	b := h.mustOK(h.do(VerbBegin, &Request{Version: ProtocolVersion, TxID: "tx1", Begin: &BeginArgs{
		ConfirmTimeout: Duration(60 * time.Second), Operator: Operator{Addr: "192.0.2.1", SSHPort: 22},
		Change: Change{Kind: ChangeRuleset, Ruleset: &RulesetChange{Format: FormatIPTables, Text: "*filter\n:INPUT DROP [0:0]\nCOMMIT\n"}},
	}}), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	c := h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token, Read: &StateArgs{}}), StateConfirmed)
	if c.Live == nil || !strings.Contains(c.Live.Parts[0].Text, ":INPUT DROP") {
		t.Fatalf("confirm with Read: live %+v", c.Live)
	}
	if c2 := h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed); c2.Live != nil {
		t.Fatal("a confirm that did not ask returned the state")
	}
}

func partOf(st *StateReport, source string) string {
	for _, p := range st.Parts {
		if p.Source == source {
			return p.Text
		}
	}
	return ""
}
