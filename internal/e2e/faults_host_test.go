package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
)

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
func (fh *faultHost) candidate(t *testing.T, kind string) (string, int) {
	fh.n++
	port := 20000 + fh.n
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
	p, _ := fh.candidate(t, "good")
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

// bootLive is the ruleset the host booted in this cell: the live one
// right after the boot (the cells never persist, and a workstation never
// changes a host after it lost the transaction to a reboot).
func (fh *faultHost) bootLive(t *testing.T) string {
	if fh.bootRef == "" {
		fh.bootRef = liveRuleset(t, fh.l, fh.h.Name)
	}
	return fh.bootRef
}
