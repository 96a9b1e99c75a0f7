package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/revert"
)

// The helper is built once: fakeHelper with the file-backed fake firewall
// (-tags lifeline_fakefw), realHelper as shipped.
var fakeHelper, realHelper string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lifeline-helper-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeHelper = filepath.Join(dir, "helper-fake")
	realHelper = filepath.Join(dir, "helper")
	for _, b := range [][]string{
		{"build", "-tags", "lifeline_fakefw", "-o", fakeHelper, "."},
		{"build", "-o", realHelper, "."},
	} {
		cmd := exec.Command("go", b...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(b, " "), err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	oldRules = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
	newRules = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tiif \"lo\" accept\n\t\ttcp dport 22 accept\n\t}\n}\n"
)

// lab is one throwaway network namespace with a state dir and, for the
// fake helper, the fake firewall's state file.
type lab struct {
	t      *testing.T
	ns     string
	state  string
	fwFile string
	helper string
}

func newLab(t *testing.T, helper string) *lab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip(8) not found: apt-get install iproute2")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("needs root to create a network namespace (CI runs as root)")
	}
	l := &lab{t: t, ns: fmt.Sprintf("lleng-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6), helper: helper}
	dir := t.TempDir()
	l.state = filepath.Join(dir, "state")
	l.fwFile = filepath.Join(dir, "fw.json")
	if out, err := exec.Command("ip", "netns", "add", l.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", l.ns, err, out)
	}
	t.Cleanup(func() {
		l.killWatchdogs()
		if out, err := exec.Command("ip", "netns", "delete", l.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", l.ns, err, out)
		}
	})
	fw := revert.OpenFakeFirewall(l.fwFile)
	fw.S.Live[revert.FormatNft] = oldRules
	if err := fw.SaveState(); err != nil {
		t.Fatal(err)
	}
	return l
}

// killWatchdogs ends watchdogs a failed test left behind (by the pid and
// start time recorded for them).
func (l *lab) killWatchdogs() {
	ents, _ := os.ReadDir(filepath.Join(l.state, "tx"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(l.state, "tx", e.Name(), "record.json"))
		if err != nil {
			continue
		}
		var r struct {
			Timer revert.Timer `json:"timer"`
		}
		if json.Unmarshal(b, &r) == nil && r.Timer.Kind == "watchdog" && watchdogAlive(r.Timer) {
			_ = syscall.Kill(r.Timer.PID, syscall.SIGKILL)
		}
	}
}

// run executes the helper inside the namespace and decodes its report.
func (l *lab) run(verb string, req *revert.Request) (*revert.Report, time.Duration) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns, l.helper, verb, "--state-dir", l.state)
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = append(os.Environ(), "LIFELINE_FAKE_FIREWALL="+l.fwFile)
	if req != nil {
		b, _ := json.Marshal(req)
		cmd.Stdin = bytes.NewReader(b)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		l.t.Fatalf("helper %s: %v\nstderr: %s", verb, err, stderr.String())
	}
	took := time.Since(start)
	var rep revert.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		l.t.Fatalf("helper %s: report: %v\n%s", verb, err, stdout.String())
	}
	return &rep, took
}

func (l *lab) must(verb string, req *revert.Request, want revert.State) *revert.Report {
	l.t.Helper()
	rep, _ := l.run(verb, req)
	if rep.Error != nil || rep.State != want {
		l.t.Fatalf("helper %s: state %s error %v, want %s", verb, rep.State, rep.Error, want)
	}
	return rep
}

func (l *lab) live() string {
	l.t.Helper()
	fw := revert.OpenFakeFirewall(l.fwFile)
	if _, _, err := fw.Equal(context.Background(), &revert.Snapshot{}); err != nil {
		l.t.Fatal(err)
	}
	return fw.S.Live[revert.FormatNft]
}

func beginReq(id string, timeout time.Duration) *revert.Request {
	return &revert.Request{Version: revert.ProtocolVersion, TxID: id, Origin: "test@ws", Begin: &revert.BeginArgs{
		ConfirmTimeout: revert.Duration(timeout), Operator: revert.Operator{Addr: "192.0.2.1", SSHPort: 22},
		Change: revert.Change{Kind: revert.ChangeRuleset, Ruleset: &revert.RulesetChange{Format: revert.FormatNft, Text: newRules}},
	}}
}

// watchdogOf parses "watchdog:PID" and reads the pid's start time.
func watchdogOf(t *testing.T, rep *revert.Report) revert.Timer {
	t.Helper()
	pidText, ok := strings.CutPrefix(rep.Timer, "watchdog:")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil {
		t.Fatalf("timer %q is not a watchdog (systemd is not PID 1 here)", rep.Timer)
	}
	st, err := readStat(pid)
	if err != nil {
		t.Fatalf("watchdog %d is not running: %v", pid, err)
	}
	return revert.Timer{Kind: "watchdog", PID: pid, StartTicks: st.start}
}

type stat struct {
	state                string
	ppid, session, ttyNr int
	start                uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var s stat
	s.state = f[0]
	s.ppid, _ = strconv.Atoi(f[1])
	s.session, _ = strconv.Atoi(f[3])
	s.ttyNr, _ = strconv.Atoi(f[4])
	s.start, _ = strconv.ParseUint(f[19], 10, 64)
	return s, nil
}

func watchdogAlive(t revert.Timer) bool {
	s, err := readStat(t.PID)
	return err == nil && s.start == t.StartTicks && s.state != "Z" && s.state != "X"
}

// waitFor polls cond every 50ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func TestWatchdogDetachedRevertsAtDeadline(t *testing.T) {
	l := newLab(t, fakeHelper)
	b, took := l.run(revert.VerbBegin, beginReq("tx1", 3*time.Second))
	if b.Error != nil || b.State != revert.StateArmed {
		t.Fatalf("begin: %s %v", b.State, b.Error)
	}
	// the helper returned at once: the watchdog does not hold its stdout
	if took > 5*time.Second {
		t.Fatalf("begin took %s: the watchdog kept the helper's pipes open", took)
	}
	wd := watchdogOf(t, b)
	st, _ := readStat(wd.PID)
	if st.session != wd.PID || st.ttyNr != 0 {
		t.Fatalf("watchdog %d: session %d tty %d, want its own session and no tty", wd.PID, st.session, st.ttyNr)
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", wd.PID)); cwd != "/" {
		t.Fatalf("watchdog cwd %q, want /", cwd)
	}
	for fd := 0; fd <= 2; fd++ {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", wd.PID, fd)); target != "/dev/null" {
			t.Fatalf("watchdog fd %d is %q, want /dev/null", fd, target)
		}
	}
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", wd.PID))
	self, _ := os.Readlink("/proc/self/ns/net")
	if ns == self {
		t.Fatalf("watchdog runs in the test's network namespace, want %s", l.ns)
	}

	l.must(revert.VerbStage, &revert.Request{TxID: "tx1"}, revert.StateApplied)
	if l.live() != newRules {
		t.Fatalf("apply did not change the live ruleset")
	}
	// a hangup (the SSH session ending) must not end it
	if err := syscall.Kill(wd.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if !watchdogAlive(wd) {
		t.Fatalf("watchdog died of SIGHUP")
	}
	s := l.must(revert.VerbStatus, &revert.Request{TxID: "tx1"}, revert.StateApplied)
	if s.Status == nil || !s.Status.TimerAlive {
		t.Fatalf("status: status %+v", s.Status)
	}

	var final *revert.Report
	if !waitFor(b.Deadline.Sub(time.Now())+5*time.Second, func() bool {
		final, _ = l.run(revert.VerbStatus, &revert.Request{TxID: "tx1"})
		return final.State.Terminal()
	}) {
		t.Fatalf("no revert 5s after the deadline: state %s", final.State)
	}
	if final.State != revert.StateReverted || final.Verified == nil || !*final.Verified || l.live() != oldRules {
		t.Fatalf("after the deadline: state %s verified %v", final.State, final.Verified)
	}
	if !waitFor(2*time.Second, func() bool { return !watchdogAlive(wd) }) {
		t.Fatalf("watchdog %d still running after its revert", wd.PID)
	}
	start, end := revertedAt(t, l, "tx1")
	late := end.Sub(b.Deadline)
	t.Logf("watchdog started the revert %s and finished it %s after the deadline", start.Sub(b.Deadline), late)
	if late < 0 || late > 2*time.Second {
		t.Fatalf("revert ran %s after the deadline, want within [0, 2s]", late)
	}
}

// revertedAt reads when the revert started and ended from record.json.
func revertedAt(t *testing.T, l *lab, id string) (start, end time.Time) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.state, "tx", id, "record.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Transitions []struct {
			State revert.State `json:"state"`
			Step  string       `json:"step"`
			At    time.Time    `json:"at"`
		} `json:"transitions"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for _, tr := range r.Transitions {
		if tr.Step == "reverting" {
			start = tr.At
		}
		if tr.State == revert.StateReverted {
			end = tr.At
		}
	}
	if start.IsZero() || end.IsZero() {
		t.Fatalf("no reverting/reverted transitions in %s", b)
	}
	return start, end
}

func TestConfirmStopsWatchdog(t *testing.T) {
	l := newLab(t, fakeHelper)
	b := l.must(revert.VerbBegin, beginReq("tx1", 30*time.Second), revert.StateArmed)
	wd := watchdogOf(t, b)
	l.must(revert.VerbStage, &revert.Request{TxID: "tx1"}, revert.StateApplied)
	l.must(revert.VerbConfirm, &revert.Request{TxID: "tx1", Token: b.Begin.Token}, revert.StateConfirmed)
	if !waitFor(3*time.Second, func() bool { return !watchdogAlive(wd) }) {
		t.Fatalf("watchdog %d still running after confirm", wd.PID)
	}
	if l.live() != newRules {
		t.Fatalf("confirmed ruleset is not live")
	}
	l.must(revert.VerbStatus, &revert.Request{}, revert.StateConfirmed)
}

func TestKilledWatchdogLeavesRecordApplied(t *testing.T) {
	l := newLab(t, fakeHelper)
	b := l.must(revert.VerbBegin, beginReq("tx1", 30*time.Second), revert.StateArmed)
	wd := watchdogOf(t, b)
	l.must(revert.VerbStage, &revert.Request{TxID: "tx1"}, revert.StateApplied)
	if err := syscall.Kill(wd.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return !watchdogAlive(wd) }) {
		t.Fatalf("watchdog survived SIGKILL")
	}
	s := l.must(revert.VerbStatus, &revert.Request{}, revert.StateApplied)
	if s.TxID != "tx1" || s.Status == nil || s.Status.TimerAlive {
		t.Fatalf("status after the watchdog died: tx %s status %+v", s.TxID, s.Status)
	}
	// the next begin refuses to restore the orphan's snapshot unasked
	// (needs-recovery) and changes nothing; abort is the recovery
	rep, _ := l.run(revert.VerbBegin, beginReq("tx2", 30*time.Second))
	if rep.Error == nil || rep.Error.Code != revert.CodeNeedsRecovery {
		t.Fatalf("begin after the watchdog died: %+v, want needs-recovery", rep.Error)
	}
	if l.live() != newRules {
		t.Fatalf("a refused begin changed the live ruleset")
	}
	l.must(revert.VerbAbort, &revert.Request{TxID: "tx1", Origin: "test@ws"}, revert.StateReverted)
	if l.live() != oldRules {
		t.Fatalf("abort did not restore the orphan's snapshot")
	}
	b2 := l.must(revert.VerbBegin, beginReq("tx3", 30*time.Second), revert.StateArmed)
	wd2 := watchdogOf(t, b2)
	l.must(revert.VerbAbort, &revert.Request{TxID: "tx3"}, revert.StateReverted)
	if !waitFor(3*time.Second, func() bool { return !watchdogAlive(wd2) }) {
		t.Fatalf("watchdog %d still running after abort", wd2.PID)
	}
}

// nft runs nft inside the lab's namespace.
func (l *lab) nft(stdin string, args ...string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns, "nft"}, args...)...)
	cmd.WaitDelay = time.Second
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRealFirewallInNetns drives the shipped helper (real nft backend)
// inside a throwaway namespace: an unconfirmed change is reverted by the
// watchdog to the exact ruleset it replaced; a confirmed one stays and
// loses its kernel guard.
func TestRealFirewallInNetns(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft not found: apt-get install nftables")
	}
	t.Run("reverted at the deadline", func(t *testing.T) {
		l := newLab(t, realHelper)
		l.nft(oldRules, "-f", "-")
		before := l.nft("", "list", "ruleset")
		req := beginReq("tx1", 3*time.Second)
		req.Begin.Change.Ruleset.Text = "flush ruleset\n" + newRules
		b := l.must(revert.VerbBegin, req, revert.StateArmed)
		a := l.must(revert.VerbStage, &revert.Request{TxID: "tx1"}, revert.StateApplied)
		if a.Verified == nil || !*a.Verified {
			t.Fatalf("apply not verified")
		}
		if live := l.nft("", "list", "ruleset"); !strings.Contains(live, "policy drop") || !strings.Contains(live, "lifeline-guard") {
			t.Fatalf("applied ruleset lacks the change or the guard:\n%s", live)
		}
		var final *revert.Report
		if !waitFor(time.Until(b.Deadline)+5*time.Second, func() bool {
			final, _ = l.run(revert.VerbStatus, &revert.Request{TxID: "tx1"})
			return final.State.Terminal()
		}) {
			t.Fatalf("no revert 5s after the deadline: %s", final.State)
		}
		if final.State != revert.StateReverted || final.Verified == nil || !*final.Verified {
			t.Fatalf("after the deadline: %s verified %v error %v", final.State, final.Verified, final.Error)
		}
		if after := l.nft("", "list", "ruleset"); after != before {
			t.Fatalf("ruleset after revert differs:\n%s\nwant:\n%s", after, before)
		}
		start, end := revertedAt(t, l, "tx1")
		t.Logf("real nft: revert started %s and finished %s after the deadline", start.Sub(b.Deadline), end.Sub(b.Deadline))
		if late := start.Sub(b.Deadline); late < 0 || late > time.Second {
			t.Fatalf("revert started %s after the deadline, want within [0, 1s]", late)
		}
	})
	t.Run("confirmed", func(t *testing.T) {
		l := newLab(t, realHelper)
		l.nft(oldRules, "-f", "-")
		req := beginReq("tx1", 30*time.Second)
		// nft -f adds to what is live: a whole ruleset starts with a flush
		req.Begin.Change.Ruleset.Text = "flush ruleset\n" + newRules
		b := l.must(revert.VerbBegin, req, revert.StateArmed)
		wd := watchdogOf(t, b)
		l.must(revert.VerbStage, &revert.Request{TxID: "tx1"}, revert.StateApplied)
		c := l.must(revert.VerbConfirm, &revert.Request{TxID: "tx1", Token: b.Begin.Token}, revert.StateConfirmed)
		if len(c.Persisted) != 0 {
			t.Fatalf("persisted without --persist: %v", c.Persisted)
		}
		live := l.nft("", "list", "ruleset")
		if !strings.Contains(live, "policy drop") || strings.Contains(live, "lifeline-guard") || strings.Contains(live, "lifeline_guard") {
			t.Fatalf("confirmed ruleset:\n%s", live)
		}
		if !waitFor(3*time.Second, func() bool { return !watchdogAlive(wd) }) {
			t.Fatalf("watchdog still running after confirm")
		}
		for _, p := range b.Phases {
			t.Logf("begin phase %s: %s", p.Name, p.Took)
		}
	})
}

// TestConcurrentBeginsOneWins races helpers on one host: the flock and
// the record let exactly one arm; the others are refused with its holder.
func TestConcurrentBeginsOneWins(t *testing.T) {
	l := newLab(t, fakeHelper)
	const n = 6
	reps := make(chan *revert.Report, n)
	for i := range n {
		go func() {
			rep, _ := l.run(revert.VerbBegin, beginReq(fmt.Sprintf("tx%d", i), 30*time.Second))
			reps <- rep
		}()
	}
	var armed []*revert.Report
	held := 0
	for range n {
		rep := <-reps
		switch {
		case rep.Error == nil && rep.State == revert.StateArmed:
			armed = append(armed, rep)
		case rep.Error != nil && rep.Error.Code == revert.CodeLockHeld && rep.Error.Holder != nil:
			held++
		default:
			t.Errorf("begin: state %s error %v", rep.State, rep.Error)
		}
	}
	if len(armed) != 1 || held != n-1 {
		t.Fatalf("%d armed, %d lock-held; want 1 and %d", len(armed), held, n-1)
	}
	wd := watchdogOf(t, armed[0])
	l.must(revert.VerbAbort, &revert.Request{TxID: armed[0].TxID}, revert.StateReverted)
	if !waitFor(3*time.Second, func() bool { return !watchdogAlive(wd) }) {
		t.Fatalf("watchdog still running after abort")
	}
}

func TestRunExitCodes(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	tests := []struct {
		name  string
		args  []string
		stdin string
		exit  int
		code  string // Report.Error.Code when a report is written
		state revert.State
	}{
		{"no verb", nil, "", exitUsage, "", ""},
		{"extra argument", []string{"status", "--state-dir", state, "x"}, "", exitUsage, "", ""},
		{"unknown flag", []string{"status", "--nope"}, "", exitUsage, "", ""},
		{"internal verb without tx", []string{"revert", "--state-dir", state}, "", exitUsage, "", ""},
		{"bad json", []string{"status", "--state-dir", state}, "{bad", exitFailed, "", ""},
		{"unknown verb", []string{"frobnicate", "--state-dir", state}, "", exitOK, revert.CodeBadRequest, revert.StateNone},
		{"empty stdin", []string{"status", "--state-dir", state}, "", exitOK, "", revert.StateNone},
		{"other protocol", []string{"status", "--state-dir", state}, `{"version":99}`, exitOK, revert.CodeBadRequest, revert.StateNone},
		{"tx flag wins", []string{"status", "--state-dir", state, "--tx", "abc"}, `{"tx_id":"zzz"}`, exitOK, revert.CodeNoTx, revert.StateNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			exit := run(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if exit != tt.exit {
				t.Fatalf("exit %d, want %d; stderr: %s", exit, tt.exit, stderr.String())
			}
			if exit != exitOK {
				if stdout.Len() != 0 || stderr.Len() == 0 {
					t.Fatalf("failed run: stdout %q stderr %q, want only stderr", stdout.String(), stderr.String())
				}
				return
			}
			var rep revert.Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("report: %v: %s", err, stdout.String())
			}
			got := ""
			if rep.Error != nil {
				got = rep.Error.Code
			}
			if got != tt.code || rep.State != tt.state || rep.Version != revert.ProtocolVersion {
				t.Fatalf("report code %q state %s version %d, want %q %s", got, rep.State, rep.Version, tt.code, tt.state)
			}
			if tt.name == "tx flag wins" && !strings.Contains(rep.Error.Message, "abc") {
				t.Fatalf("--tx did not override the request: %s", rep.Error.Message)
			}
		})
	}
}

// TestWatchdogSurvivesSessionKill starts begin from a shell in its own
// session and process group (like sshd's child for an SSH session), then
// hangs up and kills that whole group: the watchdog must live on.
func TestWatchdogSurvivesSessionKill(t *testing.T) {
	l := newLab(t, fakeHelper)
	dir := t.TempDir()
	reqFile, out := filepath.Join(dir, "req.json"), filepath.Join(dir, "report.json")
	b, _ := json.Marshal(beginReq("tx1", 30*time.Second))
	if err := os.WriteFile(reqFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", `ip netns exec "$1" "$2" begin --state-dir "$3" <"$4" >"$5.tmp" && mv "$5.tmp" "$5"; sleep 60`,
		"sh", l.ns, l.helper, l.state, reqFile, out)
	sh.Env = append(os.Environ(), "LIFELINE_FAKE_FIREWALL="+l.fwFile)
	sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	sh.WaitDelay = time.Second
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sh.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	var rep revert.Report
	if !waitFor(10*time.Second, func() bool {
		data, err := os.ReadFile(out)
		return err == nil && json.Unmarshal(data, &rep) == nil
	}) {
		t.Fatalf("begin did not report within 10s")
	}
	if rep.State != revert.StateArmed {
		t.Fatalf("begin: %s %v", rep.State, rep.Error)
	}
	wd := watchdogOf(t, &rep)
	// the session ends: hangup, then kill, to the whole process group
	_ = syscall.Kill(-sh.Process.Pid, syscall.SIGHUP)
	_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatalf("session shell survived SIGKILL")
	}
	waited <- nil // for the cleanup
	time.Sleep(300 * time.Millisecond)
	if !watchdogAlive(wd) {
		t.Fatalf("watchdog %d died with the session", wd.PID)
	}
	s := l.must(revert.VerbStatus, &revert.Request{TxID: "tx1"}, revert.StateArmed)
	if s.Status == nil || !s.Status.TimerAlive {
		t.Fatalf("status after the session ended: status %+v", s.Status)
	}
	l.must(revert.VerbAbort, &revert.Request{TxID: "tx1"}, revert.StateReverted)
	if !waitFor(3*time.Second, func() bool { return !watchdogAlive(wd) }) {
		t.Fatalf("watchdog still running after abort")
	}
}
