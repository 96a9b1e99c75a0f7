package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// The crash-point matrix (issue #14): faults × phases × backends, run for
// real against lab hosts. A cell starts `lifeline apply --json-stream`,
// waits for its phase (an event of the stream, or a pause point of the
// helper: see revert/faultpoint.go), injects its fault, waits for the end
// and checks on the host: the transaction ended confirmed, reverted or
// refused; the live ruleset is the candidate or the snapshot, byte for
// byte after normalising; a fresh ssh works; nothing is left armed and
// the next apply confirms; every recorded tx kept its snapshot; and the
// workstation, when it survived, reported the truth or `unknown` with what
// the host does by itself.
//
// FAULTS=ci (the default) runs the CI subset, FAULTS=all (`make faults`)
// the whole matrix; LIFELINE_RELIABILITY_TABLE names the markdown table
// to write (make faults: docs/reliability-matrix.md).

// Faults.
const (
	fWSKill      = "workstation SIGKILL"
	fLinkCut     = "SSH link cut"
	fHelperKill  = "helper killed"
	fSSHDRestart = "sshd restarted"
	fSSHDKill    = "sshd killed"
	fCrash       = "host crashed + rebooted"
	fLoss        = "30% packet loss"
	fDelay       = "500 ms delay"
	fStateFull   = "state dir full"
	fTwoWS       = "two workstations at once"
	fSecondBegin = "second begin while armed"
)

// Phases: where the fault hits.
const (
	pConnect       = "connect"
	pUpload        = "upload"
	pBegin         = "begin"
	pBeforeSwap    = "apply: before the swap"
	pAfterSwap     = "apply: after the swap"
	pConfirmBefore = "confirm: before the request"
	pConfirmSent   = "confirm: sent, no answer"
	pRevert        = "revert"
	pApplied       = "applied, unconfirmed"
	pWhole         = "whole run"
)

// pausePoint is the helper's pause point for a phase reached on the host
// ("" when the phase is reached through the workstation's event stream).
var pausePoint = map[string]string{
	pBegin:       "begin-armed",
	pBeforeSwap:  "stage-before-swap",
	pAfterSwap:   "stage-after-swap",
	pConfirmSent: "confirm-recorded",
	pRevert:      "revert-restoring",
}

// streamPhase is the stream event (phase/status) that marks a phase.
var streamPhase = map[string][2]string{
	pConnect:       {"connect", "start"},
	pUpload:        {"upload", "start"},
	pConfirmBefore: {"apply", "done"}, // the stage answered; the confirm's fresh connection not yet made
	pApplied:       {"apply", "done"},
}

const (
	faultTimeout = 12 * time.Second // --confirm-timeout of every cell
	faultGrace   = 15 * time.Second // --revert-grace
)

// faultRow is one fault at one phase; it runs on every backend.
type faultRow struct {
	fault, phase string
	lockout      bool // the candidate drops new SSH connections
	ci           bool // part of the CI subset
}

var faultMatrix = []faultRow{
	{fWSKill, pConnect, false, false},
	{fWSKill, pUpload, false, false},
	{fWSKill, pBegin, false, false},
	{fWSKill, pBeforeSwap, false, false},
	{fWSKill, pAfterSwap, true, true},
	{fWSKill, pConfirmBefore, false, false},
	{fWSKill, pConfirmSent, false, true},
	{fWSKill, pRevert, true, false},

	{fLinkCut, pConnect, false, false},
	{fLinkCut, pBegin, false, false},
	{fLinkCut, pBeforeSwap, false, false},
	{fLinkCut, pAfterSwap, false, true},
	{fLinkCut, pConfirmBefore, false, false},
	{fLinkCut, pConfirmSent, false, false},

	{fHelperKill, pBegin, false, false},
	{fHelperKill, pBeforeSwap, false, true},
	{fHelperKill, pAfterSwap, true, false},
	{fHelperKill, pConfirmSent, false, false},
	{fHelperKill, pRevert, true, true},

	{fSSHDRestart, pConnect, false, false},
	{fSSHDRestart, pBegin, false, false},
	{fSSHDRestart, pConfirmBefore, false, true},

	{fSSHDKill, pBegin, false, false},
	{fSSHDKill, pAfterSwap, false, false},
	{fSSHDKill, pConfirmBefore, false, true},

	{fCrash, pConnect, false, false},
	{fCrash, pBegin, false, false},
	{fCrash, pBeforeSwap, false, false},
	{fCrash, pAfterSwap, true, true},
	{fCrash, pConfirmSent, false, false},
	{fCrash, pRevert, true, false},

	{fLoss, pWhole, false, true},
	{fLoss, pWhole, true, false},

	{fDelay, pWhole, false, true},
	{fDelay, pWhole, true, false},

	{fStateFull, pConnect, false, false},
	{fStateFull, pAfterSwap, false, true},
	{fStateFull, pConfirmBefore, false, false},

	{fTwoWS, pConnect, false, true},

	{fSecondBegin, pBegin, false, false},
	{fSecondBegin, pApplied, false, true},
}

// cellResult is one row of the generated table.
type cellResult struct {
	row      faultRow
	backend  string
	host     string
	host0    string // the host's ending, as its records and live ruleset show it
	report   string // what the workstation reported ("killed" when it was)
	recovery time.Duration
	err      string
}

// TestFaultMatrix runs the matrix (FAULTS=ci or all) over one lab: six
// directly attached hosts, two per backend, each running its backend's
// cells one after another.
func TestFaultMatrix(t *testing.T) {
	mode := os.Getenv("FAULTS")
	if mode == "" {
		mode = "ci"
	}
	if mode != "ci" && mode != "all" {
		t.Fatalf("FAULTS=%s: want ci or all", mode)
	}
	start := time.Now()
	// h07 is reached only through h01 (the lab's jump host): not used, so
	// that h01's faults touch no other cell
	l := labtest.Start(t, labtest.Options{Hosts: 7, InitExe: lifelineBin})
	backends := []string{lab.BackendNft, lab.BackendIptablesNft, lab.BackendIptablesLegacy}
	queues := map[string]chan faultRow{}
	for _, b := range backends {
		queues[b] = make(chan faultRow, len(faultMatrix))
		for _, row := range faultMatrix {
			if mode == "all" || row.ci {
				queues[b] <- row
			}
		}
		close(queues[b])
	}
	var mu sync.Mutex
	var results []cellResult
	t.Run("cells", func(t *testing.T) {
		// every host at once, whatever -parallel says (t.Parallel would
		// run GOMAXPROCS of them): the cells mostly wait for deadlines
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, h := range l.Hosts {
			if h.Jump != "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(h.Name+"-"+h.Backend, func(t *testing.T) { runHost(t, l, h, queues[h.Backend], &mu, &results) })
			}()
		}
	})
	took := time.Since(start)
	t.Logf("fault matrix (%s): %d cells in %s", mode, len(results), took.Round(time.Second))
	if p := os.Getenv("LIFELINE_RELIABILITY_TABLE"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(repoRoot, p)
		}
		if err := os.WriteFile(p, []byte(faultTable(mode, results, took)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runHost runs a backend's cells on host h, one after another, taking
// them from queue (shared with the backend's other host).
func runHost(t *testing.T, l *lab.Lab, h *lab.Host, queue <-chan faultRow, mu *sync.Mutex, results *[]cellResult) {
	fh := &faultHost{l: l, h: h}
	fh.setup(t)
	for row := range queue {
		res := cellResult{row: row, backend: h.Backend, host: h.Name}
		ran := false
		if !t.Run(cellName(row), func(t *testing.T) { ran = true; fh.run(t, &res) }) {
			fh.recover(t)
		}
		if !ran { // filtered out by -run
			continue
		}
		mu.Lock()
		*results = append(*results, res)
		mu.Unlock()
	}
}

func cellName(row faultRow) string {
	n := row.fault + "/" + row.phase
	if row.lockout {
		n += "/lockout"
	}
	return strings.NewReplacer(" ", "-", ":", "", ",", "", "+", "", "%", "pct").Replace(n)
}

// faultHost runs cells on one lab host, one after another.
type faultHost struct {
	logf    func(format string, a ...any) // the running cell's t.Logf
	l       *lab.Lab
	h       *lab.Host
	n       int    // cells run: each gets its own marker port
	bootRef string // the live ruleset right after this cell's reboot
}

func (fh *faultHost) setup(t *testing.T) {
	// the first apply uploads the helper; the cells then start from a
	// confirmed ruleset of their own
	if err := fh.nextApply(t); err != nil {
		t.Fatalf("%s: first apply: %v", fh.h.Name, err)
	}
}

// delayOneWay is the delay fault: what `tc qdisc add dev eth0 root netem
// delay 500ms` on the host would add (this kernel has no netem).
const delayOneWay = 500 * time.Millisecond

// delayRelay is a ProxyCommand that connects to HOST PORT and hands the
// host's bytes to ssh DELAY seconds after they arrived (in order, without
// slowing the stream down otherwise); the workstation's bytes go through
// at once: the host's link with a one-way delay, for SSH, which is all
// lifeline sends.
const delayRelay = `import collections, os, socket, sys, threading, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
delay = float(sys.argv[3])
def up():
    while True:
        b = os.read(0, 65536)
        if not b:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(b)
q, cv = collections.deque(), threading.Condition()
def down():
    while True:
        b = s.recv(65536)
        with cv:
            q.append((time.monotonic() + delay, b))
            cv.notify()
        if not b:
            return
threading.Thread(target=up, daemon=True).start()
threading.Thread(target=down, daemon=True).start()
while True:
    with cv:
        while not q:
            cv.wait()
        at, b = q.popleft()
    if at > time.monotonic():
        time.sleep(at - time.monotonic())
    if not b:
        os._exit(0)
    while b:
        b = b[os.write(1, b):]
`

// delayConfig writes an ssh_config whose entry for the host runs every
// connection through delayRelay, then includes the lab's.
func (fh *faultHost) delayConfig(t *testing.T, d time.Duration) string {
	dir := t.TempDir()
	relay := filepath.Join(dir, "delay.py")
	if err := os.WriteFile(relay, []byte(delayRelay), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ssh_config")
	text := fmt.Sprintf("Host %s\n  ProxyCommand python3 %s %%h %%p %.3f\n\nInclude %s\n", fh.h.Name, relay, d.Seconds(), fh.l.SSHConfig)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// recover puts the host back after a failed cell, so that the next cell
// starts from a clean host: link up, booted, sshd running, no pause point,
// loss rule or small state dir left, nothing armed.
func (fh *faultHost) recover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fh.h.Name
	if err := fh.l.SetLink(ctx, name, true); err != nil {
		t.Logf("recover %s: %v", name, err)
	}
	if _, err := fh.l.Exec(ctx, name, "true"); err != nil {
		_ = fh.l.Crash(ctx, name)
		if err := fh.l.Boot(ctx, name); err != nil {
			t.Logf("recover %s: %v", name, err)
		}
	}
	if err := fh.l.StartSSHD(ctx, name); err != nil {
		t.Logf("recover %s: %v", name, err)
	}
	if out, err := fh.l.Exec(ctx, name, "sh", "-c", `rm -rf /var/lib/lifeline/faults
nft delete table netdev lifeline_faults_loss 2>/dev/null
if grep -q '^lifeline-e2e /var/lib/lifeline ' /proc/mounts; then umount /var/lib/lifeline; fi; true`); err != nil {
		t.Logf("recover %s: %v: %s", name, err, out)
	}
	_, stderr, code := cli(t, ctx, "-F", fh.l.SSHConfig, "--json", "status", name, "--abort")
	if err := waitFor(60*time.Second, func() bool { return armed(t, fh.l, name) == "" }); err != nil {
		t.Logf("recover %s: still armed (status --abort: exit %d: %s): %v", name, code, stderr, err)
	}
}

// candidate writes a ruleset for this cell (the testdata one with the
// cell's own marker port instead of 8080, so that every cell's candidate
// differs from the live ruleset it starts from) and returns its path.
func (fh *faultHost) candidate(t *testing.T, lockout bool) (string, int) {
	fh.n++
	port := 20000 + fh.n
	kind := "good"
	if lockout {
		kind = "dropnew"
	}
	src := rulesetFor(fh.h, kind, false)
	b, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "rulesets", src))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "8080", strconv.Itoa(port))
	p := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d%s", kind, port, filepath.Ext(src)))
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, port
}

// reference is what the host's live ruleset must be, byte for byte, once
// the candidate at path is confirmed: the host's current rulesets copied
// into an empty network namespace on the host, the candidate loaded on top
// by the backend's own tool, printed as liveRuleset prints the host. Call
// it before the change.
func (fh *faultHost) reference(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// save (on the host) and load (in the namespace) every family the
	// host holds, each with its own tool; the iptables-nft tables through
	// iptables-nft-save, as nft's listing of them does not load back
	save := "nft list ruleset > /tmp/faults-pre.nft"
	load := "nft -f /tmp/faults-pre.nft"
	cand := "nft -f /tmp/faults-ref"
	switch fh.h.Backend {
	case lab.BackendIptablesNft:
		save = "iptables-nft-save > /tmp/faults-pre.nft; ip6tables-nft-save > /tmp/faults-pre6.nft"
		load = "iptables-nft-restore < /tmp/faults-pre.nft; ip6tables-nft-restore < /tmp/faults-pre6.nft"
		cand = "iptables-nft-restore /tmp/faults-ref"
	case lab.BackendIptablesLegacy:
		cand = "iptables-legacy-restore /tmp/faults-ref"
	}
	script := `set -e; printf '%s' "$1" > /tmp/faults-ref; ` + save + `
iptables-legacy-save > /tmp/faults-pre.v4 2>/dev/null || :; ip6tables-legacy-save > /tmp/faults-pre.v6 2>/dev/null || :
exec unshare -n sh -c 'set -e; ` + load + `; iptables-legacy-restore < /tmp/faults-pre.v4; ip6tables-legacy-restore < /tmp/faults-pre.v6; ` + cand + `
nft list ruleset; for t in iptables-legacy-save ip6tables-legacy-save; do $t 2>/dev/null; done'`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := fh.l.Exec(ctx, fh.h.Name, "sh", "-c", script, "sh", string(b))
	if err != nil {
		t.Fatalf("%s: reference load of %s: %v", fh.h.Name, path, err)
	}
	return normalize(string(out))
}

// nextApply is what every cell ends with: a good change that must confirm
// (nothing left behind blocks it), and is the next cell's starting point.
func (fh *faultHost) nextApply(t *testing.T) error {
	p, _ := fh.candidate(t, false)
	want := fh.reference(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stdout, stderr, code := cli(t, ctx, "-F", fh.l.SSHConfig, "--json", "apply", fh.h.Name, p, "--confirm-timeout=30s")
	var doc applyDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Results) != 1 {
		return fmt.Errorf("exit %d, unreadable JSON (%v): %s", code, err, stderr)
	}
	if r := doc.Results[0]; r.Outcome != "confirmed" {
		return fmt.Errorf("%s: %s (hint %s)", r.Outcome, r.Error, r.Hint)
	}
	if live := liveRuleset(t, fh.l, fh.h.Name); live != want {
		return fmt.Errorf("confirmed, but the live ruleset is not the candidate:\nwant:\n%s\ngot:\n%s", want, live)
	}
	return nil
}

// hostTx is one transaction record on the host.
type hostTx struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Step     string `json:"step"`
	Snapshot bool   `json:"snapshot"`
}

// txs lists the host's transaction records (read on its console).
func (fh *faultHost) txs(t *testing.T) map[string]hostTx {
	out := execOn(t, fh.l, fh.h.Name, "python3", "-c", `
import glob, json, os
for p in glob.glob("/var/lib/lifeline/tx/*/record.json"):
    try:
        r = json.load(open(p))
    except Exception as e:
        print(json.dumps({"id": p, "state": "unreadable: %s" % e}))
        continue
    d = os.path.dirname(p)
    print(json.dumps({"id": r.get("id"), "state": r.get("state"), "step": r.get("step"),
        "snapshot": os.path.exists(os.path.join(d, "snapshot.json"))}))
`)
	m := map[string]hostTx{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var x hostTx
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			t.Fatalf("%s: tx listing: %v: %s", fh.h.Name, err, line)
		}
		m[x.ID] = x
	}
	return m
}

// wsRun is one running `lifeline apply --json-stream`.
type wsRun struct {
	cmd    *exec.Cmd
	events chan [2]string
	done   chan struct{}
	res    *result
	killed bool
	mu     sync.Mutex
	lines  []string // the stream, for the log of a failed cell
}

func startWS(t *testing.T, cfg, host, path string, extra ...string) *wsRun {
	args := append([]string{"-F", cfg, "apply", "--json-stream", host, path,
		"--confirm-timeout=" + faultTimeout.String(), "--revert-grace=" + faultGrace.String()}, extra...)
	cmd := exec.Command(lifelineBin, args...)
	cmd.Env = append(os.Environ(), "LIFELINE_HELPER_"+strings.ToUpper(runtime.GOARCH)+"="+helperBin, "XDG_STATE_HOME="+stateDir(t))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &wsRun{cmd: cmd, events: make(chan [2]string, 256), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 4<<20), 4<<20)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
			var ev struct {
				Type, Phase, Status string
				applyDoc
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			switch ev.Type {
			case "event":
				select {
				case w.events <- [2]string{ev.Phase, ev.Status}:
				default:
				}
			case "result":
				if len(ev.Results) == 1 {
					w.res = &ev.Results[0]
				}
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			w.mu.Lock()
			t.Logf("lifeline apply %s: stream:\n%s\nstderr:\n%s", host, strings.Join(w.lines, "\n"), stderr.String())
			w.mu.Unlock()
		}
	})
	return w
}

// waitEvent returns once the stream showed phase/status.
func (w *wsRun) waitEvent(want [2]string, limit time.Duration) error {
	tm := time.NewTimer(limit)
	defer tm.Stop()
	for {
		select {
		case ev := <-w.events:
			if ev == want {
				return nil
			}
		case <-w.done:
			return fmt.Errorf("the workstation ended before %s/%s", want[0], want[1])
		case <-tm.C:
			return fmt.Errorf("no %s/%s event within %s", want[0], want[1], limit)
		}
	}
}

func (w *wsRun) kill() {
	w.killed = true
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// wait returns the workstation's report once it exits ("killed" when it
// was, "" with an error when it ran past limit).
func (w *wsRun) wait(limit time.Duration) (*result, error) {
	select {
	case <-w.done:
	case <-time.After(limit):
		return nil, fmt.Errorf("the workstation still runs after %s", limit)
	}
	if w.killed {
		return nil, nil
	}
	if w.res == nil {
		return nil, fmt.Errorf("the workstation exited without a result")
	}
	return w.res, nil
}

// console runs a shell line on the host's console.
func (fh *faultHost) console(t *testing.T, script string) string {
	return execOn(t, fh.l, fh.h.Name, "sh", "-c", script)
}

// arm makes the helper pause at point (revert/faultpoint.go).
func (fh *faultHost) arm(t *testing.T, point string) {
	fh.console(t, "mkdir -p -m 0700 /var/lib/lifeline/faults && rm -f /var/lib/lifeline/faults/"+point+".reached && : > /var/lib/lifeline/faults/"+point)
}

// reached waits until a helper paused at point and returns its pid (in
// the host's pid namespace).
func (fh *faultHost) reached(t *testing.T, point string, w *wsRun, limit time.Duration) (int, error) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := fh.l.Exec(ctx, fh.h.Name, "cat", "/var/lib/lifeline/faults/"+point+".reached")
		cancel()
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
				return pid, nil
			}
		}
		if w != nil {
			select {
			case <-w.done:
				return 0, fmt.Errorf("the workstation ended before the helper reached %s", point)
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no helper reached %s within %s", point, limit)
}

// release lets a paused helper go on (and disarms the point).
func (fh *faultHost) release(t *testing.T, point string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = fh.l.Exec(ctx, fh.h.Name, "rm", "-f", "/var/lib/lifeline/faults/"+point)
}

// run runs one cell on the host and fills res.
func (fh *faultHost) run(t *testing.T, res *cellResult) {
	row := res.row
	cfg, name := fh.l.SSHConfig, fh.h.Name
	fh.logf = t.Logf
	defer func() {
		if t.Failed() && res.err == "" {
			res.err = "failed: see the test log"
		}
	}()
	failf := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		if res.err == "" {
			res.err = msg
		}
		t.Error(msg)
	}
	ctx := context.Background()
	before := liveRuleset(t, fh.l, name)
	txBefore := fh.txs(t)
	path, _ := fh.candidate(t, row.lockout)
	ref := fh.reference(t, path)
	// a second workstation's candidate (two at once, a second begin)
	path2, ref2 := "", ""
	if row.fault == fTwoWS || row.fault == fSecondBegin {
		path2, _ = fh.candidate(t, false)
		ref2 = fh.reference(t, path2)
	}
	var later []func() // undo a fault after the deadline (link up, sshd start)
	var mu sync.Mutex
	after := func(d time.Duration, f func()) {
		tm := time.AfterFunc(d, func() { mu.Lock(); defer mu.Unlock(); f() })
		later = append(later, func() {
			if tm.Stop() {
				mu.Lock()
				f()
				mu.Unlock()
			}
		})
	}
	settleDeadline := faultTimeout + 3*time.Second
	defer func() {
		for _, f := range later {
			f()
		}
		_ = fh.l.SetLink(ctx, name, true)
		_ = fh.l.StartSSHD(ctx, name)
	}()
	point := pausePoint[row.phase]
	rebooted := false
	fh.bootRef = ""
	crash := func() {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := fh.l.Crash(cctx, name); err != nil {
			t.Fatalf("crash: %v", err)
		}
		if err := fh.l.Boot(cctx, name); err != nil {
			t.Fatalf("boot: %v", err)
		}
		rebooted = true
		fh.bootRef = liveRuleset(t, fh.l, name)
		if point != "" {
			fh.release(t, point)
		}
	}
	var ws2 *wsRun
	wsCfg := cfg // the workstation's ssh_config (the checks use the lab's)
	if row.fault == fDelay {
		wsCfg = fh.delayConfig(t, delayOneWay)
	}

	// the fault before the workstation starts
	mounted, lossy := false, false
	defer func() {
		if mounted {
			fh.console(t, "umount /var/lib/lifeline")
		}
		if lossy {
			fh.console(t, "nft delete table netdev lifeline_faults_loss")
		}
	}()
	switch row.fault {
	case fStateFull:
		smallStateDir(t, fh.l, name)
		mounted = true
		if row.phase == pConnect {
			fill(t, fh.l, name)
			fh.console(t, "rm -f /var/lib/lifeline/reserve")
		}
	case fLoss:
		fh.console(t, `nft -f - <<'EOF'
table netdev lifeline_faults_loss {
	chain in {
		type filter hook ingress device "eth0" priority -500; policy accept;
		numgen random mod 100 < 30 drop
	}
}
EOF`)
		lossy = true
	}
	if row.phase == pUpload {
		fh.console(t, "rm -rf /var/lib/lifeline/bin")
	}
	if row.phase == pConnect {
		switch row.fault {
		case fLinkCut:
			if err := fh.l.SetLink(ctx, name, false); err != nil {
				t.Fatal(err)
			}
			after(8*time.Second, func() { _ = fh.l.SetLink(ctx, name, true) })
		case fCrash:
			if err := fh.l.Crash(ctx, name); err != nil {
				t.Fatal(err)
			}
			rebooted = true
		}
	}
	if point != "" {
		fh.arm(t, point)
		defer fh.release(t, point)
	}

	extra := []string{}
	if row.fault == fSecondBegin && row.phase == pApplied {
		extra = append(extra, "--no-confirm")
	}
	ws := startWS(t, wsCfg, name, path, extra...)
	if row.fault == fTwoWS {
		ws2 = startWS(t, wsCfg, name, path2)
	}

	// reach the phase
	var helperPID int
	if point != "" {
		limit := 60 * time.Second
		pid, err := fh.reached(t, point, ws, limit)
		if err != nil {
			failf("%v", err)
			ws.kill()
			return
		}
		helperPID = pid
	} else if ev, ok := streamPhase[row.phase]; ok && !faultFirst(row) {
		if err := ws.waitEvent(ev, 60*time.Second); err != nil {
			failf("%v", err)
			return
		}
	}
	faultAt := time.Now()

	// inject
	switch row.fault {
	case fWSKill:
		ws.kill()
	case fLinkCut:
		if row.phase != pConnect {
			if err := fh.l.SetLink(ctx, name, false); err != nil {
				t.Fatal(err)
			}
			after(settleDeadline, func() { _ = fh.l.SetLink(ctx, name, true) })
		}
	case fHelperKill:
		fh.console(t, fmt.Sprintf("kill -KILL %d", helperPID))
	case fSSHDRestart:
		if err := fh.l.StopSSHD(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := fh.l.StartSSHD(ctx, name); err != nil {
			t.Fatal(err)
		}
	case fSSHDKill:
		if err := fh.l.StopSSHD(ctx, name); err != nil {
			t.Fatal(err)
		}
		after(settleDeadline, func() { _ = fh.l.StartSSHD(ctx, name) })
	case fCrash:
		if row.phase == pConnect {
			after(8*time.Second, func() {
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				if err := fh.l.Boot(cctx, name); err != nil {
					t.Errorf("boot: %v", err)
				}
			})
		} else {
			crash()
		}
	case fStateFull:
		if row.phase != pConnect {
			fill(t, fh.l, name)
		}
	case fSecondBegin:
		// a second workstation begins while the first holds the host
		ws2 = startWS(t, cfg, name, path2)
	}
	if point != "" && row.fault != fCrash {
		if row.fault == fSecondBegin {
			// keep the first paused until the second was answered
			if _, err := ws2.wait(time.Minute); err != nil {
				failf("second workstation: %v", err)
			}
		}
		fh.release(t, point)
	}

	// the end: the workstation's report, the host settled
	limit := faultTimeout + faultGrace + 90*time.Second
	rep, err := ws.wait(limit)
	if err != nil {
		failf("%v", err)
		ws.kill()
	}
	var rep2 *result
	if ws2 != nil {
		if rep2, err = ws2.wait(limit); err != nil {
			failf("second workstation: %v", err)
			ws2.kill()
		}
	}
	// the fault ends: link up, sshd back, room on the disk, no more loss
	for _, f := range later {
		f()
	}
	later = nil
	if row.fault == fStateFull {
		fh.console(t, "rm -f /var/lib/lifeline/fill")
	}
	if lossy {
		fh.console(t, "nft delete table netdev lifeline_faults_loss")
		lossy = false
	}

	// the host ends by itself: every tx of this cell terminal, ssh works
	var txs map[string]hostTx
	var fresh []hostTx
	contacted := false
	err = waitFor(faultTimeout+faultGrace+30*time.Second, func() bool {
		txs = fh.txs(t)
		fresh = fresh[:0]
		pending := false
		for id, x := range txs {
			if _, old := txBefore[id]; !old {
				fresh = append(fresh, x)
				pending = pending || x.State == "armed" || x.State == "applied"
			}
		}
		reachable := sshWorks(t, cfg, name) == nil
		if pending && rebooted && reachable && !contacted {
			// a record the crashed boot left armed or applied is settled
			// by the next contact (the reboot rule): make one, as an
			// operator's `lifeline status` would
			contacted = true
			status(t, cfg, name)
		}
		return !pending && reachable
	})
	res.recovery = time.Since(faultAt)
	if err != nil {
		failf("the host did not settle (ssh works, every tx terminal): %+v: %v", fresh, err)
		return
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].ID < fresh[j].ID })

	// the truth on the host
	live := liveRuleset(t, fh.l, name)
	snapshotLive := before
	if rebooted {
		// the host booted its persisted config, not the snapshot
		snapshotLive = fh.bootLive(t)
	}
	confirmedTx := ""
	states := []string{}
	for _, x := range fresh {
		states = append(states, x.State)
		switch x.State {
		case "confirmed":
			if confirmedTx != "" {
				failf("two transactions confirmed in one cell: %v", fresh)
			}
			confirmedTx = x.ID
		case "reverted", "refused":
		default:
			failf("tx %s ended %s/%s: want confirmed, reverted or refused", x.ID, x.State, x.Step)
		}
		if !x.Snapshot && x.State != "refused" {
			failf("tx %s (%s) lost its snapshot", x.ID, x.State)
		}
	}
	wantLive, truth := snapshotLive, "unchanged"
	switch {
	case confirmedTx != "" && rebooted:
		// confirmed, not persisted: the boot config came up
		truth = "confirmed"
	case confirmedTx != "":
		truth = "confirmed"
		wantLive = ref
		if ws2 != nil && rep2 != nil && rep2.TxID == confirmedTx {
			wantLive = ref2
		}
	case len(fresh) > 0 && allState(fresh, "refused"):
		truth = "refused"
	case len(fresh) > 0:
		truth = "reverted"
	}
	if rebooted && len(fresh) > 0 {
		truth += " (reboot)"
	}
	res.host0 = truth
	if len(fresh) > 1 {
		res.host0 = fmt.Sprintf("%s (%s)", truth, strings.Join(states, ", "))
	}
	if live != wantLive {
		failf("host %s: the live ruleset is neither what that ending promises:\nwant:\n%s\ngot:\n%s", truth, wantLive, live)
	}

	// the workstation's word against the host's
	res.report = fh.judge(failf, rep, txs, rebooted, "")
	if ws2 != nil {
		res.report += "; " + fh.judge(failf, rep2, txs, rebooted, "second ")
	}

	// nothing left behind: not armed, the next apply confirms
	if a := armed(t, fh.l, name); a != "" {
		failf("still armed after the cell: %s", a)
	}
	if mounted {
		fh.console(t, "umount /var/lib/lifeline")
		mounted = false
	}
	if err := fh.nextApply(t); err != nil {
		failf("the next apply after the cell: %v", err)
	}
}

// faultFirst: the fault is in place before the workstation starts, so
// there is no event to wait for.
func faultFirst(row faultRow) bool {
	if row.phase != pConnect {
		return false
	}
	switch row.fault {
	case fLinkCut, fCrash, fStateFull:
		return true
	}
	return false
}

func allState(xs []hostTx, s string) bool {
	for _, x := range xs {
		if x.State != s {
			return false
		}
	}
	return true
}

// judge checks a workstation's report against the host's records and
// returns it for the table.
func (fh *faultHost) judge(failf func(string, ...any), rep *result, txs map[string]hostTx, rebooted bool, who string) string {
	if rep == nil {
		return who + "killed"
	}
	fh.logf("%sworkstation: %s (tx %s, reboot %v): %s; hint: %s; warnings: %q", who, rep.Outcome, rep.TxID, rep.Reboot, rep.Error, rep.Hint, rep.Warnings)
	x, known := txs[rep.TxID]
	got := rep.Outcome
	switch rep.Outcome {
	case "unknown":
		if rep.Hint == "" {
			failf("%sworkstation: unknown without saying what the host does", who)
		}
	case "confirmed":
		if !known || x.State != "confirmed" {
			failf("%sworkstation says confirmed, the host's tx %q is %s", who, rep.TxID, x.State)
		}
		if rebooted && !rep.Reboot {
			// the cells never persist: the boot config is live
			failf("%sworkstation says confirmed without saying that the host rebooted since and the change is no longer live", who)
		}
		if rep.Reboot {
			got += " (reboot)"
		}
	case "reverted":
		if rep.Reboot {
			got += " (reboot)"
		}
		if !known || x.State != "reverted" {
			failf("%sworkstation says reverted, the host's tx %q is %s", who, rep.TxID, x.State)
		}
	case "refused":
		if known && x.State != "refused" && x.State != "reverted" {
			failf("%sworkstation says refused, the host's tx %s is %s", who, rep.TxID, x.State)
		}
	case "armed":
		// --no-confirm: true when it was said; the host ends it by itself
		if !known {
			failf("%sworkstation says armed, the host has no tx %q", who, rep.TxID)
		}
	default:
		failf("%sworkstation reported %s: %s (hint %s)", who, rep.Outcome, rep.Error, rep.Hint)
	}
	return who + got
}

// bootLive is the ruleset the host booted in this cell: the live one
// right after the boot (the cells never persist, and a workstation never
// changes a host after it lost the transaction to a reboot).
func (fh *faultHost) bootLive(t *testing.T) string {
	if fh.bootRef == "" {
		fh.bootRef = liveRuleset(t, fh.l, fh.h.Name)
	}
	return fh.bootRef
}
