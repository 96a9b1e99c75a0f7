//go:build linux

package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/wire"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/revert"
)

// fakeHost is a host in memory: the real transaction engine (revert.Handle)
// over a stateful fake firewall and a timer the test fires by hand, behind
// a Dialer whose connections the test can break. It answers exactly the
// command lines the session sends (the probe and the helper wrapper) and
// fails any other.
type fakeHost struct {
	t        *testing.T
	fw       *revert.FakeFirewall
	armer    *fakeArmer
	env      revert.Env
	helper   bool // the helper is "uploaded"
	tampered bool // the helper on the host no longer matches its hash (once)
	// crashes: the helper dies of SIGSEGV before its own check (a
	// truncated binary) while the file is corrupt; the slow check finds it
	// out unless intact is set (then it crashed for another reason)
	crashes bool
	intact  bool
	mu      sync.Mutex
	dials   int
	cmds    []string
	refuse  func(dial int) error                // per dial: nil = connect
	brokeAt func(dial int, verb string) error   // per call: non-nil = the connection fails
	onVerb  func(verb string, rep *wire.Report) // after the engine answered
	// killedAfter: the helper is killed once it ran this verb (once),
	// before its report is written
	killedAfter     string
	killedUnderSudo bool // ... and sudo reports it as exit status 137
	// commands answers exec's command lines: the output and exit status
	// (any other command still fails the test)
	commands map[string]func(stdout, stderr io.Writer) int
}

type fakeArmer struct {
	mu    sync.Mutex
	armed map[string]bool
	dead  map[string]bool
}

func (a *fakeArmer) Arm(_ context.Context, txID string, gen int, _ time.Duration) (revert.Timer, error) {
	if gen > 0 {
		txID = fmt.Sprintf("%s-e%d", txID, gen)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed[txID] = true
	return revert.Timer{Kind: "fake", Unit: txID}, nil
}

func (a *fakeArmer) Alive(_ context.Context, t revert.Timer) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.armed[t.Unit] && !a.dead[t.Unit], nil
}

func (a *fakeArmer) Disarm(_ context.Context, t revert.Timer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.armed, t.Unit)
	return nil
}

const liveRules = "table inet filter { chain input { type filter hook input priority 0; policy accept; } }\n"

func newFakeHost(t *testing.T) *fakeHost {
	fw := revert.NewFakeFirewall(map[wire.Format]string{wire.FormatNft: liveRules})
	a := &fakeArmer{armed: map[string]bool{}, dead: map[string]bool{}}
	return &fakeHost{t: t, fw: fw, armer: a, helper: true, env: revert.Env{
		StateDir: t.TempDir(), Firewall: fw, Armer: a, Hostname: "fake",
		BootID: func() (string, error) { return "boot-1", nil },
	}}
}

// fire plays the host's revert timer for the current transaction.
func (h *fakeHost) fire() {
	st := revert.Handle(context.Background(), wire.VerbStatus, &wire.Request{Version: wire.ProtocolVersion}, h.env)
	if st.TxID == "" {
		h.t.Fatal("fire: no transaction")
	}
	revert.Handle(context.Background(), wire.VerbRevert, &wire.Request{TxID: st.TxID}, h.env)
}

func (h *fakeHost) Dial(ctx context.Context, t remote.Target) (remote.Runner, error) {
	h.mu.Lock()
	h.dials++
	n := h.dials
	h.mu.Unlock()
	if h.refuse != nil {
		if err := h.refuse(n); err != nil {
			return nil, err
		}
	}
	return &fakeConn{h: h, dial: n}, nil
}

type fakeConn struct {
	h    *fakeHost
	dial int
}

const probeCmd = `printf '%s\n' "$SSH_CONNECTION"; id -u; uname -m`

func (c *fakeConn) Run(ctx context.Context, cmd remote.Cmd) error {
	h := c.h
	h.mu.Lock()
	h.cmds = append(h.cmds, cmd.Command)
	h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case cmd.Command == probeCmd:
		fmt.Fprint(cmd.Stdout, "192.0.2.1 50000 192.0.2.9 22\n0\nx86_64\n")
		return nil
	case strings.Contains(cmd.Command, "mkdir -p /var/lib/lifeline/bin"):
		return nil
	case cmd.Command == wire.HelperVerifyCommand(helperSHA):
		if h.crashes && !h.intact {
			h.crashes, h.helper = false, false
			return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: wire.ExitHelperTampered, Stderr: "lifeline: helper F does not match its sha256: moved aside\n"}
		}
		return nil
	case strings.HasPrefix(cmd.Command, "sha256sum "):
		fmt.Fprintf(cmd.Stdout, "%s  file\n", helperSHA)
		return nil
	case strings.Contains(cmd.Command, "cat > "):
		_, _ = io.Copy(io.Discard, cmd.Stdin)
		h.helper = true
		return nil
	case h.commands[cmd.Command] != nil:
		if st := h.commands[cmd.Command](cmd.Stdout, cmd.Stderr); st != 0 {
			return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: st}
		}
		return nil
	}
	_, verb, ok := wire.ParseHelperCommand(cmd.Command)
	if !ok {
		h.t.Errorf("unexpected command: %q", cmd.Command)
		return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: 127}
	}
	if h.crashes && h.helper {
		return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: -1, Signal: "SEGV"}
	}
	if h.tampered {
		h.tampered, h.helper = false, false
		return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: wire.ExitHelperTampered}
	}
	if !h.helper {
		return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: wire.ExitHelperMissing}
	}
	if h.brokeAt != nil {
		if err := h.brokeAt(c.dial, verb); err != nil {
			return err
		}
	}
	var req wire.Request
	if cmd.Stdin != nil {
		if err := json.NewDecoder(cmd.Stdin).Decode(&req); err != nil {
			return err
		}
	}
	rep := revert.Handle(ctx, verb, &req, h.env)
	if h.onVerb != nil {
		h.onVerb(verb, rep)
	}
	if verb == h.killedAfter {
		h.killedAfter = ""
		if h.killedUnderSudo {
			return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: 137, Stderr: "Killed"}
		}
		return &remote.ExitError{Host: "fake", Command: cmd.Command, Status: -1, Signal: "KILL"}
	}
	return json.NewEncoder(cmd.Stdout).Encode(rep)
}

func (c *fakeConn) Host() string { return "fake" }
func (c *fakeConn) Close() error { return nil }

var helperSHA = func() string { s := sha256.Sum256([]byte("helper")); return hex.EncodeToString(s[:]) }()

var errConnDropped = errors.New("connection dropped")

func newTestSession(h *fakeHost, timeout time.Duration) *Session {
	return New(h, Options{
		ConfirmTimeout: timeout, RevertGrace: 2 * time.Second, Origin: "test",
		Helper: func(arch string) ([]byte, string, error) {
			if arch != "amd64" {
				return nil, "", fmt.Errorf("arch %q", arch)
			}
			return []byte("helper"), helperSHA, nil
		},
	})
}

func target(rules string) Target {
	return Target{Name: "fake", Ruleset: rules, Format: wire.FormatNft}
}

const newRules = "table inet filter { chain input { type filter hook input priority 0; policy drop; tcp dport 22 accept; } }\n"

func TestApplyOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(h *fakeHost)
		rules   string
		want    Outcome
		live    string // the fake's live nft ruleset afterwards
		conns   int
		trips   int
		errLike string
	}{
		{
			name: "confirmed from a fresh connection", rules: newRules,
			want: Confirmed, live: newRules, conns: 2, trips: 4,
		},
		{
			name:  "helper missing: uploaded once, then confirmed",
			setup: func(h *fakeHost) { h.helper = false },
			rules: newRules, want: Confirmed, live: newRules, conns: 2, trips: 8,
		},
		{
			name:  "invalid ruleset: refused, nothing changed, nothing armed",
			setup: func(h *fakeHost) { h.fw.S.BadLine = "acept" },
			rules: "table inet filter { chain input { tcp dport 22 acept; } }\n",
			want:  Refused, live: liveRules, conns: 1, trips: 2, errLike: "invalid-ruleset",
		},
		{
			name: "one fresh connection refused (sshd restarting): retried, confirmed",
			setup: func(h *fakeHost) {
				h.refuse = refuseDials(2, 2)
			},
			rules: newRules, want: Confirmed, live: newRules, conns: 3,
		},
		{
			name: "fresh connections refused until the deadline: the first connection aborts",
			setup: func(h *fakeHost) {
				h.refuse = refuseFor(2, 2*time.Second)
			},
			rules: newRules, want: Reverted, live: liveRules, errLike: "attempts",
		},
		{
			name: "fresh connection refused for an auth reason: not retried, aborted",
			setup: func(h *fakeHost) {
				h.refuse = func(n int) error {
					if n == 2 {
						return fmt.Errorf("dial: %w", remote.ErrAuth)
					}
					return nil
				}
			},
			rules: newRules, want: Reverted, live: liveRules, conns: 2, errLike: "locked out",
		},
		{
			name: "locked out completely: the host's own timer reverts, seen after the deadline",
			setup: func(h *fakeHost) {
				h.refuse = refuseFor(2, 2*time.Second)
				h.brokeAt = func(dial int, verb string) error {
					if dial == 1 && verb == wire.VerbAbort {
						h.fire() // the deadline passes while we are locked out
						return errConnDropped
					}
					return nil
				}
			},
			rules: newRules, want: Reverted, live: liveRules, errLike: "locked out",
		},
		{
			name: "never reachable again: unknown, never success",
			setup: func(h *fakeHost) {
				h.refuse = refuseDials(2, 1<<30)
				h.brokeAt = func(dial int, verb string) error {
					if verb == wire.VerbAbort {
						return errConnDropped
					}
					return nil
				}
			},
			rules: newRules, want: Unknown, live: newRules, errLike: "still unreachable",
		},
		{
			name: "timer died: needs recovery",
			setup: func(h *fakeHost) {
				h.refuse = refuseFor(2, 2*time.Second)
				h.brokeAt = func(dial int, verb string) error {
					if verb == wire.VerbAbort {
						for id := range h.armer.armed {
							h.armer.dead[id] = true
						}
						return errConnDropped
					}
					return nil
				}
			},
			rules: newRules, want: NeedsRecovery, live: newRules, errLike: "timer",
		},
		{
			// the helper armed the host, then died before it answered: the
			// first connection still works, so lifeline aborts that tx
			// (nothing applied) rather than leave the host held until the
			// deadline, and nothing changed
			name: "helper killed after it armed: aborted, refused",
			setup: func(h *fakeHost) {
				h.killedAfter = wire.VerbBegin
				aborted := false
				h.onVerb = func(verb string, rep *wire.Report) {
					if verb == wire.VerbAbort {
						aborted = rep.State == wire.StateReverted
					}
				}
				h.t.Cleanup(func() {
					if !aborted {
						h.t.Error("the tx the lost begin armed was not aborted")
					}
				})
			},
			rules: newRules, want: Refused, live: liveRules, errLike: "killed by signal",
		},
		{
			name: "helper killed under sudo after it armed: aborted, refused",
			setup: func(h *fakeHost) {
				h.killedAfter, h.killedUnderSudo = wire.VerbBegin, true
				aborted := false
				h.onVerb = func(verb string, rep *wire.Report) {
					if verb == wire.VerbAbort {
						aborted = rep.State == wire.StateReverted
					}
				}
				h.t.Cleanup(func() {
					if !aborted {
						h.t.Error("the tx the lost begin armed was not aborted")
					}
				})
			},
			rules: newRules, want: Refused, live: liveRules, errLike: "exit status 137",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			if tt.setup != nil {
				tt.setup(h)
			}
			s := newTestSession(h, 1500*time.Millisecond)
			r := s.Apply(context.Background(), target(tt.rules))
			if r.Outcome != tt.want {
				t.Fatalf("outcome %s, want %s (phase %s: %s)\ncommands: %q", r.Outcome, tt.want, r.Phase, r.Error, h.cmds)
			}
			if got := h.fw.S.Live[wire.FormatNft]; got != tt.live {
				t.Errorf("live ruleset:\n%s\nwant:\n%s", got, tt.live)
			}
			if tt.conns > 0 && r.Connections != tt.conns {
				t.Errorf("ssh connections %d, want %d", r.Connections, tt.conns)
			}
			if tt.trips > 0 && r.RoundTrips != tt.trips {
				t.Errorf("round trips %d, want %d", r.RoundTrips, tt.trips)
			}
			if tt.errLike != "" && !strings.Contains(r.Error, tt.errLike) {
				t.Errorf("error %q does not mention %q", r.Error, tt.errLike)
			}
			if tt.want == Confirmed && r.Error != "" {
				t.Errorf("confirmed with an error: %s", r.Error)
			}
		})
	}
}

func TestLockHeldNamesHolder(t *testing.T) {
	h := newFakeHost(t)
	// the first transaction begins and is never confirmed (its lifeline died)
	first := revert.Handle(context.Background(), wire.VerbBegin, &wire.Request{
		Version: wire.ProtocolVersion, TxID: "tx-first", Origin: "alice@laptop",
		Begin: &wire.BeginArgs{ConfirmTimeout: wire.Duration(time.Minute), Change: wire.Change{
			Kind: wire.ChangeRuleset, Ruleset: &wire.RulesetChange{Format: wire.FormatNft, Text: newRules}}},
	}, h.env)
	if first.State != wire.StateArmed {
		t.Fatalf("first begin: %+v", first.Error)
	}
	r := newTestSession(h, 5*time.Second).Apply(context.Background(), target(newRules))
	if r.Outcome != Refused || r.Holder == nil || r.Holder.TxID != "tx-first" {
		t.Fatalf("outcome %s holder %+v: %s", r.Outcome, r.Holder, r.Error)
	}
	if !strings.Contains(r.Hint, "tx-first") || !strings.Contains(r.Hint, "alice@laptop") {
		t.Errorf("hint does not name the holder: %s", r.Hint)
	}
	if h.fw.S.Live[wire.FormatNft] != liveRules {
		t.Errorf("ruleset changed after a refusal")
	}
}

func TestInterruptedBeforeBeginIsSkipped(t *testing.T) {
	h := newFakeHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := newTestSession(h, 5*time.Second).Apply(ctx, target(newRules))
	if r.Outcome != Skipped {
		t.Fatalf("outcome %s, want skipped: %s", r.Outcome, r.Error)
	}
}

func TestBatches(t *testing.T) {
	tests := []struct {
		serial string
		n      int
		want   []int
	}{
		{"", 5, []int{5}},
		{"1", 4, []int{1, 1, 1, 1}},
		{"1,50%,100%", 30, []int{1, 15, 14}},
		{"1,10%,100%", 100, []int{1, 10, 89}},
		{"2,10%", 25, []int{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1}},
		{"10%", 3, []int{1, 1, 1}},
		{"50", 10, []int{10}},
	}
	for _, tt := range tests {
		serial, err := ParseSerial(tt.serial)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Plan{Serial: serial}.Batches(tt.n)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("serial %q over %d: %v %v, want %v", tt.serial, tt.n, got, err, tt.want)
		}
	}
	for _, bad := range []string{"x", "150%", "-1", "1,,2"} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
}

// TestRolloutStopsAfterFailedBatch: max-fail 0 stops after the batch with
// a refusal; later hosts are skipped and never dialled.
func TestRolloutStopsAfterFailedBatch(t *testing.T) {
	hosts := map[string]*fakeHost{}
	var order []string
	var mu sync.Mutex
	d := dialerFunc(func(ctx context.Context, tg remote.Target) (remote.Runner, error) {
		mu.Lock()
		order = append(order, tg.Name)
		h := hosts[tg.Name]
		mu.Unlock()
		return h.Dial(ctx, tg)
	})
	var targets []Target
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("h%d", i)
		h := newFakeHost(t)
		if name == "h2" {
			h.fw.S.BadLine = "policy drop"
		}
		hosts[name] = h
		targets = append(targets, Target{Name: name, SSH: remote.Target{Name: name}, Ruleset: newRules, Format: wire.FormatNft})
	}
	s := New(d, Options{ConfirmTimeout: 5 * time.Second, Helper: func(string) ([]byte, string, error) { return []byte("helper"), helperSHA, nil }})
	res, err := s.Rollout(context.Background(), Plan{Serial: []string{"1", "2", "100%"}, MaxFail: "0"}, targets)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		got = append(got, r.Host+"="+string(r.Outcome))
	}
	want := "h1=confirmed h2=refused h3=confirmed h4=skipped h5=skipped h6=skipped"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %s\nwant %s", strings.Join(got, " "), want)
	}
	for _, n := range order {
		if n == "h4" || n == "h5" || n == "h6" {
			t.Errorf("skipped host %s was dialled", n)
		}
	}
	var fe *FleetError
	if err := Err(res); !errors.As(err, &fe) || len(fe.Hosts) != 4 {
		t.Errorf("Err: %v", err)
	}
}

// refuseDials makes dials number from..to (1-based) time out, like a host
// whose firewall drops new connections.
func refuseDials(from, to int) func(int) error {
	return func(n int) error {
		if n >= from && n <= to {
			return fmt.Errorf("dial: %w", remote.ErrTimeout)
		}
		return nil
	}
}

// refuseFor makes every dial from number from on time out for d after
// the first refused one: a host unreachable for a while.
func refuseFor(from int, d time.Duration) func(int) error {
	var mu sync.Mutex
	var first time.Time
	return func(n int) error {
		if n < from {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) < d {
			return fmt.Errorf("dial: %w", remote.ErrTimeout)
		}
		return nil
	}
}

type dialerFunc func(context.Context, remote.Target) (remote.Runner, error)

func (f dialerFunc) Dial(ctx context.Context, t remote.Target) (remote.Runner, error) {
	return f(ctx, t)
}

// A helper that dies before its own check (a truncated copy faults in
// its runtime) is checked the slow way: a corrupt file is replaced, with
// the warning, and the verb sent again; an intact one that crashed is not
// replaced and the crash is the error. A begin whose helper died may have
// armed the host, and here status dies too: the outcome is unknown (with
// what the host will do), never a "refused" lifeline did not see.
func TestCrashedHelperVerified(t *testing.T) {
	tests := []struct {
		name    string
		intact  bool
		outcome Outcome
	}{
		{"corrupt: replaced", false, Confirmed},
		{"intact: the crash stands", true, Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.crashes, h.intact = true, tt.intact
			r := newTestSession(h, 1500*time.Millisecond).Apply(context.Background(), target(newRules))
			if r.Outcome != tt.outcome {
				t.Fatalf("outcome %s, want %s: %s", r.Outcome, tt.outcome, r.Error)
			}
			verified := 0
			for _, c := range h.cmds {
				if c == wire.HelperVerifyCommand(helperSHA) {
					verified++
				}
			}
			if verified != 1 {
				t.Fatalf("the slow check ran %d times, want once", verified)
			}
			if tt.intact {
				if r.Uploaded != 0 || len(r.Warnings) != 0 || !strings.Contains(r.Error, "killed by signal SEGV") {
					t.Fatalf("uploaded %d, warnings %q, error %q: want the crash as the error and no upload", r.Uploaded, r.Warnings, r.Error)
				}
				return
			}
			if r.Uploaded == 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "it could not run (killed by signal SEGV)") {
				t.Fatalf("uploaded %d, warnings %q: want a replacement and a warning naming the crash", r.Uploaded, r.Warnings)
			}
		})
	}
}

// A helper whose hash no longer matches is replaced and the operator is
// warned loudly: it may be an attack.
func TestTamperedHelperWarns(t *testing.T) {
	h := newFakeHost(t)
	h.tampered = true
	r := newTestSession(h, 1500*time.Millisecond).Apply(context.Background(), target(newRules))
	if r.Outcome != Confirmed {
		t.Fatalf("outcome %s: %s", r.Outcome, r.Error)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "tampered") || !strings.Contains(r.Warnings[0], "attack") {
		t.Fatalf("warnings %q, want one naming the tampered helper", r.Warnings)
	}
	if r.Uploaded == 0 {
		t.Fatalf("the tampered helper was not replaced")
	}
}
