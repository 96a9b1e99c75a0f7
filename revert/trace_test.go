package revert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestChooseTracer: which rules and monitor each kind of host gets, and
// the hosts refused.
func TestChooseTracer(t *testing.T) {
	op := Operator{Addr: "198.18.161.1", SSHPort: 22}
	narrow := TraceMatch{Proto: "tcp", DPortFrom: 22, DPortTo: 22, SAddr: "203.0.113.7"}
	wide := TraceMatch{Proto: "tcp", DPortFrom: 22, DPortTo: 22}
	for _, tc := range []struct {
		name    string
		active  []string
		tools   []string
		m       TraceMatch
		tracer  string
		monitor string
		refused string
	}{
		{"nft host", []string{"nft"}, []string{"nft", "xtables-monitor"}, wide, "nft table inet lifeline_trace", "nft -a monitor trace", ""},
		{"empty host", nil, []string{"nft"}, wide, "nft table inet lifeline_trace", "nft -a monitor trace", ""},
		{"iptables-nft host", []string{"iptables-nft"}, []string{"nft", "iptables-nft", "xtables-monitor"}, wide, "nft table inet lifeline_trace", "xtables-monitor --trace", ""},
		{"both: nft monitor sees all", []string{"nft", "iptables-nft"}, []string{"nft", "iptables-nft", "xtables-monitor"}, wide, "nft table inet lifeline_trace", "nft -a monitor trace", ""},
		{"no nft tool", []string{"iptables-nft"}, []string{"iptables-nft", "xtables-monitor"}, narrow, "iptables-nft -t raw TRACE", "xtables-monitor --trace", ""},
		{"no nft tool, the operator's ssh in the match", []string{"iptables-nft"}, []string{"iptables-nft", "xtables-monitor"}, wide, "", "", "keep lifeline's own ssh connection"},
		{"legacy", []string{"iptables-legacy"}, []string{"nft", "iptables-legacy", "xtables-monitor"}, narrow, "", "", "iptables-legacy"},
		{"ip6 legacy", []string{"nft", "ip6tables-legacy"}, []string{"nft"}, narrow, "", "", "iptables-legacy"},
		{"no tools", nil, []string{"iptables-nft"}, narrow, "", "", "needs nft"},
	} {
		look := func(name string) (string, error) {
			for _, x := range tc.tools {
				if x == name {
					return "/usr/sbin/" + name, nil
				}
			}
			return "", errors.New("not found")
		}
		tr, err := chooseTracer(&Detect{Active: tc.active}, tc.m, op, look)
		if tc.refused != "" {
			if err == nil || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("%s: %v, want refused with %q", tc.name, err, tc.refused)
			}
			continue
		}
		if err != nil || tr.start.Tracer != tc.tracer || tr.start.Monitor != tc.monitor || tr.xtables != strings.HasPrefix(tc.monitor, "xtables") {
			t.Errorf("%s: %+v, %v; want %s read with %s", tc.name, tr, err, tc.tracer, tc.monitor)
		}
	}
}

// TestTraceRefuses: the trace verb refuses, with one report line and
// nothing installed, anything but a valid request for an applied guarded
// transaction with time left.
func TestTraceRefuses(t *testing.T) {
	h := newHarness(t)
	// an applied ruleset tx, and an applied guarded one
	h.mustOK(h.do(VerbBegin, beginReq("r1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{Version: ProtocolVersion, TxID: "r1"}), StateApplied)
	h.mustOK(h.do(VerbAbort, &Request{Version: ProtocolVersion, TxID: "r1"}), StateReverted)
	g := beginReq("g1")
	g.Begin.Change = Change{Kind: ChangeGuarded}
	h.mustOK(h.do(VerbBegin, g), StateArmed)
	line := func(req *Request) string {
		b, _ := json.Marshal(req)
		return string(b) + "\n"
	}
	good := TraceArgs{Match: TraceMatch{Proto: "tcp", DPortFrom: 22, DPortTo: 22}, Duration: Duration(5 * time.Second)}
	trace := func(args TraceArgs, id string) *Request {
		return &Request{Version: ProtocolVersion, TxID: id, Trace: &args}
	}
	detects := h.fw.S.Calls["Detect"]
	for _, tc := range []struct {
		name, stdin, code, says string
		stage                   bool
	}{
		{name: "no request", stdin: "", code: CodeBadRequest, says: "no request line"},
		{name: "not json", stdin: "{\n", code: CodeBadRequest, says: "unreadable"},
		{name: "no payload", stdin: line(&Request{TxID: "g1"}), code: CodeBadRequest, says: "payload"},
		{name: "bad match", stdin: line(trace(TraceArgs{Match: TraceMatch{IIf: `x" accept`}, Duration: good.Duration}, "g1")), code: CodeBadRequest, says: "interface"},
		{name: "no duration", stdin: line(trace(TraceArgs{Match: good.Match}, "g1")), code: CodeBadRequest, says: "duration"},
		{name: "no such tx", stdin: line(trace(good, "nope")), code: CodeNoTx},
		{name: "a ruleset tx", stdin: line(trace(good, "r1")), code: CodeBadState, says: "applied guarded"},
		{name: "armed, not applied", stdin: line(trace(good, "g1")), code: CodeBadState, says: "armed"},
		{name: "too little time left", stdin: line(trace(TraceArgs{Match: good.Match, Duration: Duration(59 * time.Second)}, "g1")), code: CodeTooLate, stage: true},
	} {
		if tc.stage {
			h.mustOK(h.do(VerbStage, &Request{Version: ProtocolVersion, TxID: "g1"}), StateApplied)
		}
		var out bytes.Buffer
		if err := Trace(context.Background(), "", strings.NewReader(tc.stdin), &out, h.env()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var l TraceLine
		if err := json.Unmarshal(out.Bytes(), &l); err != nil || l.Report == nil || strings.Count(out.String(), "\n") != 1 {
			t.Fatalf("%s: output %q, want one report line", tc.name, out.String())
		}
		if l.Report.Error == nil || l.Report.Error.Code != tc.code || !strings.Contains(l.Report.Error.Message, tc.says) {
			t.Errorf("%s: error %+v, want %s saying %q", tc.name, l.Report.Error, tc.code, tc.says)
		}
	}
	if n := h.fw.S.Calls["Detect"]; n != detects {
		t.Errorf("refused traces went on to detect the backends (%d calls): they must stop before touching the host", n-detects)
	}
}
