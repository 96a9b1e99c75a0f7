package revert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	oldRules = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n"
	newRules = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 accept\n\t}\n}\n"
)

// fakeClock advances only when After is called (it fires at once).
type fakeClock struct {
	mu      sync.Mutex
	t       time.Time     // monotonic progress (advance, After)
	step    time.Duration // wall-clock step (NTP) on top of t
	onAfter func()
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t.Add(c.step) }

// Monotonic counts from the fake epoch and ignores wall-clock steps.
func (c *fakeClock) Monotonic() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.Sub(fakeEpoch) + time.Hour
}

var fakeEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.advance(d)
	if c.onAfter != nil {
		c.onAfter()
	}
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

// fakeArmer models timers by id: armed ones are alive until disarmed,
// fired or killed.
type fakeArmer struct {
	mu       sync.Mutex
	n        int
	alive    map[string]bool // Timer.String() -> alive
	byTx     map[string]Timer
	failArm  error
	afterArm func()
	disarms  int
}

func newFakeArmer() *fakeArmer {
	return &fakeArmer{alive: map[string]bool{}, byTx: map[string]Timer{}}
}

func (a *fakeArmer) Arm(_ context.Context, txID string, _ int, d time.Duration) (Timer, error) {
	a.mu.Lock()
	if a.failArm != nil {
		a.mu.Unlock()
		return Timer{}, a.failArm
	}
	a.n++
	t := Timer{Kind: "fake", PID: a.n}
	a.alive[t.String()] = true
	a.byTx[txID] = t
	hook := a.afterArm
	a.mu.Unlock()
	if hook != nil {
		hook()
	}
	return t, nil
}

func (a *fakeArmer) Alive(_ context.Context, t Timer) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.alive[t.String()], nil
}

func (a *fakeArmer) Disarm(_ context.Context, t Timer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.disarms++
	delete(a.alive, t.String())
	return nil
}

// kill ends tx's timer without telling anyone (watchdog killed, reboot).
func (a *fakeArmer) kill(txID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.byTx[txID]
	was := ok && a.alive[t.String()]
	delete(a.alive, t.String())
	return was
}

func (a *fakeArmer) armed() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.alive)
}

type harness struct {
	t     *testing.T
	dir   string
	fw    *FakeFirewall
	armer *fakeArmer
	clock *fakeClock
	boot  string
	sys   *fakeSyslog
}

type fakeSyslog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *fakeSyslog) write(level, m string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.buf, "%s %s\n", level, m)
	return nil
}
func (s *fakeSyslog) Info(m string) error    { return s.write("info", m) }
func (s *fakeSyslog) Warning(m string) error { return s.write("warning", m) }
func (s *fakeSyslog) Crit(m string) error    { return s.write("crit", m) }
func (s *fakeSyslog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return &harness{
		t:     t,
		dir:   filepath.Join(t.TempDir(), "lifeline"),
		fw:    NewFakeFirewall(map[Format]string{FormatNft: oldRules}),
		armer: newFakeArmer(),
		clock: &fakeClock{t: fakeEpoch},
		boot:  "boot-1",
		sys:   &fakeSyslog{},
	}
}

func (h *harness) env() Env {
	return Env{
		StateDir: h.dir, Firewall: h.fw, Armer: h.armer, Clock: h.clock,
		BootID:   func() (string, error) { return h.boot, nil },
		Hostname: "h1", Syslog: h.sys, LockWait: time.Second, RevertLockWait: time.Second,
		RestoreRetryDelay: 10 * time.Millisecond,
	}
}

func (h *harness) do(verb string, req *Request) *Report {
	h.t.Helper()
	return Handle(context.Background(), verb, req, h.env())
}

func beginReq(id string) *Request {
	return &Request{Version: ProtocolVersion, TxID: id, Origin: "alice@ws", Begin: &BeginArgs{
		ConfirmTimeout: Duration(60 * time.Second), Operator: Operator{Addr: "192.0.2.1", SSHPort: 22},
		Change: Change{Kind: ChangeRuleset, Ruleset: &RulesetChange{Format: FormatNft, Text: newRules, Persist: true}},
	}}
}

func code(rep *Report) string {
	if rep.Error == nil {
		return ""
	}
	return rep.Error.Code
}

func (h *harness) mustOK(rep *Report, state State) *Report {
	h.t.Helper()
	if rep.Error != nil {
		h.t.Fatalf("%s: unexpected error %v", rep.Verb, rep.Error)
	}
	if rep.State != state {
		h.t.Fatalf("%s: state %s, want %s", rep.Verb, rep.State, state)
	}
	return rep
}

func (h *harness) live() string { return h.fw.S.Live[FormatNft] }

func TestBeginApplyConfirm(t *testing.T) {
	h := newHarness(t)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	if len(b.Begin.Token) != 64 || b.Deadline != h.clock.Now().Add(time.Minute) || b.Timer != "fake:1" || b.Begin.Detect == nil {
		t.Fatalf("begin report: %+v", b)
	}
	if h.live() != oldRules || h.fw.S.Calls["Apply"] != 0 {
		t.Fatalf("begin changed the live ruleset")
	}
	rec, err := os.ReadFile(filepath.Join(h.dir, "tx", "tx1", "record.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, []byte(b.Begin.Token)) {
		t.Fatalf("record.json holds the plain token")
	}
	for _, f := range []string{"record.json", "snapshot.json", "ruleset", "log"} {
		fi, err := os.Stat(filepath.Join(h.dir, "tx", "tx1", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v, want 0600", f, err, fi.Mode())
		}
	}
	if fi, _ := os.Stat(h.dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", fi.Mode())
	}

	h.clock.advance(10 * time.Second)
	a := h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	if a.Verified == nil || !*a.Verified || h.live() != newRules {
		t.Fatalf("apply: verified %v live %q", a.Verified, h.live())
	}
	if g := h.fw.S.Guard; g == nil || g.Remaining != 50*time.Second || g.Addr != "192.0.2.1" || g.Port != 22 || g.TxID != "tx1" {
		t.Fatalf("guard: %+v", h.fw.S.Guard)
	}

	c := h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
	if h.fw.S.Guard != nil || h.live() != newRules || h.armer.armed() != 0 {
		t.Fatalf("after confirm: guard %+v live %q armed %d", h.fw.S.Guard, h.live(), h.armer.armed())
	}
	if len(c.Persisted) != 1 || h.fw.S.Persisted[FormatNft] != newRules {
		t.Fatalf("persist: %v", c.Persisted)
	}
	// a retried confirm (lost report) is still confirmed
	h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
	// the timer firing late finds it confirmed
	h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1"}), StateConfirmed)
	if h.live() != newRules || h.fw.S.Calls["Restore"] != 0 {
		t.Fatalf("late revert touched a confirmed tx")
	}
	s := h.mustOK(h.do(VerbStatus, &Request{}), StateConfirmed)
	if s.TxID != "tx1" {
		t.Fatalf("status latest: %+v", s)
	}
}

func TestRefusalsLeaveNothingArmed(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness, r *Request)
		code  string
		state State
		line  int
	}{
		{"invalid ruleset", func(h *harness, r *Request) { h.fw.S.BadLine = "dport 22" }, CodeInvalidRuleset, StateRefused, 4},
		{"missing backend", func(h *harness, r *Request) {
			h.fw.S.Backends = []string{"nft"}
			r.Begin.Change.Ruleset.Format = FormatIPTables
		}, CodeBackend, StateRefused, 0},
		{"unrestorable snapshot", func(h *harness, r *Request) { h.fw.S.Unrestorable = true }, CodeSnapshot, StateRefused, 0},
		{"bad tx id", func(h *harness, r *Request) { r.TxID = "../x" }, CodeBadRequest, StateNone, 0},
		{"no timeout", func(h *harness, r *Request) { r.Begin.ConfirmTimeout = 0 }, CodeBadRequest, StateNone, 0},
		{"bad format", func(h *harness, r *Request) { r.Begin.Change.Ruleset.Format = "pf" }, CodeBadRequest, StateNone, 0},
		{"other protocol", func(h *harness, r *Request) { r.Version = 99 }, CodeBadRequest, StateNone, 0},
		{"confirm timeout above 24h", func(h *harness, r *Request) { r.Begin.ConfirmTimeout = Duration(1000000 * time.Hour) }, CodeBadRequest, StateNone, 0},
		{"arm fails", func(h *harness, r *Request) { h.armer.failArm = errors.New("no timer") }, CodeInternal, StateRefused, 0},
		{"chain the guard cannot cover", func(h *harness, r *Request) { h.fw.S.Uncoverable = "dport 22" }, CodeUnguarded, StateRefused, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			req := beginReq("tx1")
			tt.setup(h, req)
			rep := h.do(VerbBegin, req)
			if code(rep) != tt.code || rep.State != tt.state || tokenOf(rep) != "" {
				t.Fatalf("got code %q state %s token %q, want %q %s", code(rep), rep.State, tokenOf(rep), tt.code, tt.state)
			}
			if tt.line != 0 && rep.Error.Line != tt.line {
				t.Fatalf("line %d, want %d", rep.Error.Line, tt.line)
			}
			if h.live() != oldRules || h.fw.S.Calls["Apply"]+h.fw.S.Calls["Restore"] != 0 || h.armer.armed() != 0 {
				t.Fatalf("refusal changed something: live %q calls %v armed %d", h.live(), h.fw.S.Calls, h.armer.armed())
			}
			// the host is free for the next begin
			h.fw.S = NewFakeFirewall(map[Format]string{FormatNft: oldRules}).S
			h.armer.failArm = nil
			h.mustOK(h.do(VerbBegin, beginReq("tx2")), StateArmed)
		})
	}
}

func TestLockHeld(t *testing.T) {
	h := newHarness(t)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	r2 := beginReq("tx2")
	r2.Origin = "bob@ws"
	rep := h.do(VerbBegin, r2)
	if code(rep) != CodeLockHeld {
		t.Fatalf("second begin: %+v", rep.Error)
	}
	want := Holder{TxID: "tx1", Origin: "alice@ws", State: StateApplied, Deadline: b.Deadline}
	if rep.Error.Holder == nil || *rep.Error.Holder != want {
		t.Fatalf("holder %+v, want %+v", rep.Error.Holder, want)
	}
	if h.live() != newRules {
		t.Fatalf("refused begin changed the live ruleset")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "tx", "tx2")); err == nil {
		t.Fatalf("lock-held refusal created a tx folder")
	}
	// the watchdog dies: the next begin refuses (needs recovery) rather
	// than restore a snapshot older than the live ruleset unasked
	h.armer.kill("tx1")
	s := h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateApplied)
	if s.Status == nil || s.Status.TimerAlive {
		t.Fatalf("status of a tx whose timer died: status %+v", s.Status)
	}
	rep = h.do(VerbBegin, r2)
	if code(rep) != CodeNeedsRecovery || !strings.Contains(rep.Error.Message, "status HOST --abort") {
		t.Fatalf("begin after the timer died: %+v, want needs-recovery naming the recovery", rep.Error)
	}
	if h.live() != newRules {
		t.Fatalf("a refused begin restored the old snapshot")
	}
	// the operator decides: abort restores it, and the host is free again
	h.mustOK(h.do(VerbAbort, &Request{TxID: "tx1", Origin: "bob@ws"}), StateReverted)
	if h.live() != oldRules {
		t.Fatalf("abort did not restore tx1's snapshot")
	}
	h.mustOK(h.do(VerbBegin, beginReq("tx3")), StateArmed)
}

func TestConfirmRefusals(t *testing.T) {
	tests := []struct {
		name   string
		before func(h *harness)
		token  func(real string) string
		code   string
		state  State
		live   string
	}{
		{"bad token", nil, func(string) string { return strings.Repeat("0", 64) }, CodeBadToken, StateApplied, newRules},
		{"empty token", nil, func(string) string { return "" }, CodeBadToken, StateApplied, newRules},
		{"after revert", func(h *harness) {
			h.armer.kill("tx1")
			h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1"}), StateReverted)
		}, func(t string) string { return t }, CodeTooLate, StateReverted, oldRules},
		{"after abort", func(h *harness) { h.mustOK(h.do(VerbAbort, &Request{TxID: "tx1"}), StateReverted) },
			func(t string) string { return t }, CodeTooLate, StateReverted, oldRules},
		{"after deadline", func(h *harness) { h.clock.advance(61 * time.Second) },
			func(t string) string { return t }, CodeTooLate, StateReverted, oldRules},
		{"unknown tx", func(h *harness) {}, func(t string) string { return t }, CodeNoTx, StateNone, newRules},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			if tt.before != nil {
				tt.before(h)
			}
			id := "tx1"
			if tt.code == CodeNoTx {
				id = "tx9"
			}
			rep := h.do(VerbConfirm, &Request{TxID: id, Token: tt.token(b.Begin.Token)})
			if code(rep) != tt.code || rep.State != tt.state {
				t.Fatalf("confirm: code %q state %s, want %q %s", code(rep), rep.State, tt.code, tt.state)
			}
			if h.live() != tt.live {
				t.Fatalf("live %q, want %q", h.live(), tt.live)
			}
			if len(h.fw.S.Persisted) != 0 {
				t.Fatalf("a refused confirm persisted")
			}
		})
	}
}

func TestApplyFailureRestoresAtOnce(t *testing.T) {
	tests := []struct {
		name         string
		failRestores int
		state        State
		verified     bool
		crit         bool
	}{
		{"restored", 0, StateReverted, true, false},
		{"restore retried", 2, StateReverted, true, false},
		{"restore fails", 5, StateRevertFailed, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.fw.S.FailApply = true
			h.fw.S.FailRestores = tt.failRestores
			rep := h.do(VerbStage, &Request{TxID: "tx1"})
			if code(rep) != CodeApplyFailed || rep.State != tt.state || rep.Verified == nil || *rep.Verified != tt.verified {
				t.Fatalf("apply: code %q state %s verified %v", code(rep), rep.State, rep.Verified)
			}
			if tt.verified != (h.live() == oldRules) {
				t.Fatalf("live after failed apply: %q", h.live())
			}
			if h.armer.armed() != 0 {
				t.Fatalf("timer still armed after the immediate restore")
			}
			if got := strings.Contains(h.sys.String(), "crit lifeline: tx tx1: REVERT FAILED"); got != tt.crit {
				t.Fatalf("crit syslog %v, want %v:\n%s", got, tt.crit, h.sys.String())
			}
			st := h.do(VerbStatus, &Request{TxID: "tx1"})
			if st.State != tt.state || (tt.state == StateRevertFailed) != (code(st) == CodeRevertFailed) {
				t.Fatalf("status: %s %v", st.State, st.Error)
			}
		})
	}
}

func TestBootIDChanged(t *testing.T) {
	for _, verb := range []string{VerbStatus, VerbBegin, VerbStage, VerbConfirm} {
		t.Run(verb, func(t *testing.T) {
			h := newHarness(t)
			b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			// reboot: nothing persisted, the old config boots, timers gone
			h.boot = "boot-2"
			h.fw.S.Live[FormatNft] = oldRules
			h.fw.S.Persisted = map[Format]string{FormatNft: oldRules} // the boot config
			h.fw.S.Guard = nil
			h.armer.kill("tx1")
			switch verb {
			case VerbBegin:
				h.mustOK(h.do(VerbBegin, beginReq("tx2")), StateArmed)
			case VerbStage:
				if rep := h.do(VerbStage, &Request{TxID: "tx1"}); code(rep) != CodeBadState && code(rep) != CodeTooLate {
					t.Fatalf("apply after reboot: %v", rep.Error)
				}
			case VerbConfirm:
				if rep := h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}); code(rep) != CodeTooLate {
					t.Fatalf("confirm after reboot: %v", rep.Error)
				}
			}
			s := h.mustOK(h.do(VerbStatus, &Request{TxID: "tx1"}), StateReverted)
			if s.Verified == nil || !*s.Verified || !s.Reboot {
				t.Fatalf("status after reboot: verified %v reboot %v, want verified against the boot config", s.Verified, s.Reboot)
			}
			// verified compares with the boot config, not the snapshot
			h.fw.S.Persisted[FormatNft] = newRules
			if s := h.do(VerbStatus, &Request{TxID: "tx1"}); s.Verified == nil || *s.Verified {
				t.Fatalf("status with live != boot config: verified %v", s.Verified)
			}
			r, _ := store{h.dir}.load("tx1")
			if last := r.Transitions[len(r.Transitions)-1]; last.Note != "reboot" {
				t.Fatalf("last transition %+v", last)
			}
			if h.fw.S.Calls["Restore"] != 0 {
				t.Fatalf("reboot rule ran a restore")
			}
		})
	}
}

func TestWatchdogVerb(t *testing.T) {
	t.Run("reverts at the deadline", func(t *testing.T) {
		h := newHarness(t)
		h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
		h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
		start := h.clock.Now()
		rep := h.mustOK(h.do(VerbWatchdog, &Request{TxID: "tx1"}), StateReverted)
		if rep.Verified == nil || !*rep.Verified || h.live() != oldRules {
			t.Fatalf("watchdog revert: %+v live %q", rep, h.live())
		}
		if slept := h.clock.Now().Sub(start); slept != time.Minute {
			t.Fatalf("watchdog slept %s, want 1m", slept)
		}
	})
	t.Run("exits on confirm", func(t *testing.T) {
		h := newHarness(t)
		b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
		h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
		n := 0
		h.clock.onAfter = func() {
			if n++; n == 5 {
				h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
			}
		}
		start := h.clock.Now()
		h.mustOK(h.do(VerbWatchdog, &Request{TxID: "tx1"}), StateConfirmed)
		if h.live() != newRules || h.fw.S.Calls["Restore"] != 0 {
			t.Fatalf("watchdog reverted a confirmed tx")
		}
		if slept := h.clock.Now().Sub(start); slept != 5*time.Second {
			t.Fatalf("watchdog noticed the confirm after %s, want 5s", slept)
		}
	})
}

func TestAbort(t *testing.T) {
	h := newHarness(t)
	b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	rep := h.mustOK(h.do(VerbAbort, &Request{TxID: "tx1", Origin: "alice@ws"}), StateReverted)
	if rep.Verified == nil || !*rep.Verified || h.live() != oldRules || h.armer.armed() != 0 {
		t.Fatalf("abort: %+v live %q", rep, h.live())
	}
	h.mustOK(h.do(VerbAbort, &Request{TxID: "tx1"}), StateReverted) // idempotent
	h2 := newHarness(t)
	b = h2.mustOK(h2.do(VerbBegin, beginReq("tx1")), StateArmed)
	h2.mustOK(h2.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	h2.mustOK(h2.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
	if rep := h2.do(VerbAbort, &Request{TxID: "tx1"}); code(rep) != CodeBadState || h2.live() != newRules {
		t.Fatalf("abort of a confirmed tx: %v", rep.Error)
	}
}

func TestApplyRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		code  string
		state State
	}{
		{"deadline passed", func(h *harness) { h.clock.advance(time.Minute) }, CodeTooLate, StateArmed},
		{"timer gone", func(h *harness) { h.armer.kill("tx1") }, CodeInternal, StateReverted},
		{"applied twice", func(h *harness) { h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied) }, CodeBadState, StateApplied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			tt.setup(h)
			applies := h.fw.S.Calls["Apply"]
			rep := h.do(VerbStage, &Request{TxID: "tx1"})
			if code(rep) != tt.code || rep.State != tt.state || h.fw.S.Calls["Apply"] != applies {
				t.Fatalf("apply: code %q state %s applies %d, want %q %s %d", code(rep), rep.State, h.fw.S.Calls["Apply"], tt.code, tt.state, applies)
			}
		})
	}
}

func TestStatusNoneAndDiffDetect(t *testing.T) {
	h := newHarness(t)
	h.mustOK(h.do(VerbStatus, &Request{}), StateNone)
	if rep := h.do(VerbStatus, &Request{TxID: "nope"}); code(rep) != CodeNoTx {
		t.Fatalf("status of unknown tx: %v", rep.Error)
	}
	d := h.mustOK(h.do(VerbDiff, &Request{Diff: &Change{Kind: ChangeRuleset, Ruleset: &RulesetChange{Format: FormatNft, Text: newRules}}}), StateNone)
	if d.Diff == nil || !strings.Contains(d.Diff.Diff, "+\t\ttcp dport 22 accept") || h.live() != oldRules {
		t.Fatalf("diff: %+v", d.Diff)
	}
	det := h.mustOK(h.do(VerbDetect, nil), StateNone)
	if det.Detect == nil || det.Detect.BootID != "boot-1" || det.Detect.UID != os.Geteuid() {
		t.Fatalf("detect: %+v", det.Detect)
	}
	if _, err := os.Stat(h.dir); err == nil {
		t.Fatalf("read-only verbs created the state dir")
	}
}

func TestPruneKeepsTwenty(t *testing.T) {
	h := newHarness(t)
	for i := range 25 {
		id := fmt.Sprintf("tx%02d", i)
		h.mustOK(h.do(VerbBegin, beginReq(id)), StateArmed)
		h.mustOK(h.do(VerbAbort, &Request{TxID: id}), StateReverted)
		h.clock.advance(time.Second)
	}
	ents, err := os.ReadDir(filepath.Join(h.dir, "tx"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != keepTx || ents[0].Name() != "tx05" {
		t.Fatalf("%d tx folders, first %s; want %d from tx05", len(ents), ents[0].Name(), keepTx)
	}
}

func TestRevertOfArmedTxRestoresNothing(t *testing.T) {
	h := newHarness(t)
	h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
	// someone else changes the firewall while tx1 is armed, never applied
	h.fw.S.Live[FormatIPTables] = "*filter\n-A INPUT -j DOCKER-USER\nCOMMIT\n"
	h.armer.kill("tx1")
	rep := h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1"}), StateReverted)
	if rep.Verified == nil || !*rep.Verified || h.fw.S.Calls["Restore"] != 0 || h.fw.S.Live[FormatIPTables] == "" {
		t.Fatalf("revert of an armed tx: verified %v restores %d live %v", rep.Verified, h.fw.S.Calls["Restore"], h.fw.S.Live)
	}
}

// TestWallClockStepIgnored: deadlines are checked on CLOCK_MONOTONIC like
// the timers, so an NTP step neither refuses a timely confirm nor lets a
// late one through.
func TestWallClockStepIgnored(t *testing.T) {
	tests := []struct {
		name    string
		step    time.Duration // wall clock jump after apply
		advance time.Duration // real time passing
		code    string
		state   State
	}{
		{"step forward, in time", 2 * time.Hour, 30 * time.Second, "", StateConfirmed},
		{"step back, too late", -2 * time.Hour, 61 * time.Second, CodeTooLate, StateReverted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			h.clock.step = tt.step
			h.clock.advance(tt.advance)
			rep := h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token})
			if code(rep) != tt.code || rep.State != tt.state {
				t.Fatalf("confirm: code %q state %s, want %q %s", code(rep), rep.State, tt.code, tt.state)
			}
		})
	}
}

// TestForceUnguarded: --force takes a ruleset the guard cannot fully cover;
// the record and every report name the uncovered chains, and the guard
// still goes into the chains it covers.
func TestForceUnguarded(t *testing.T) {
	h := newHarness(t)
	h.fw.S.Uncoverable = "dport 22"
	req := beginReq("tx1")
	req.Begin.Change.Force = true
	rep := h.do(VerbBegin, req)
	h.mustOK(rep, StateArmed)
	if len(rep.Unguarded) != 1 || !strings.Contains(rep.Unguarded[0], "netdev t ing") || len(rep.GuardChains) != 1 {
		t.Fatalf("begin report: guard %q unguarded %q", rep.GuardChains, rep.Unguarded)
	}
	rep = h.do(VerbStage, &Request{Version: ProtocolVersion, TxID: "tx1"})
	h.mustOK(rep, StateApplied)
	if g := h.fw.S.Guard; g == nil || len(g.Chains) != 1 || g.Chains[0].String() != "inet filter input" {
		t.Fatalf("guard applied: %+v", h.fw.S.Guard)
	}
	st := h.do(VerbStatus, &Request{Version: ProtocolVersion})
	if len(st.Unguarded) != 1 || len(st.GuardChains) != 1 {
		t.Fatalf("status: guard %q unguarded %q", st.GuardChains, st.Unguarded)
	}
}

// tokenOf is the confirm token a report carries (begin only).
func tokenOf(rep *Report) string {
	if rep.Begin == nil {
		return ""
	}
	return rep.Begin.Token
}
