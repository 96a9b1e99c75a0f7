package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
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

// ruleset is the testdata ruleset kind of the row's candidate: good;
// dropnew (keeps the session, drops new SSH) for a lockout; dropall (the
// session too) for a lockout at the revert, so that the workstation cannot
// abort over its first connection and the host's own timer reverts.
func (row faultRow) ruleset() string {
	switch {
	case !row.lockout:
		return "good"
	case row.phase == pRevert:
		return "dropall"
	}
	return "dropnew"
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

// systemdRows are the rows that also run on the systemd hosts (transient
// timer instead of the watchdog): where the timer, sshd's unit or a boot
// matter.
var systemdRows = map[[2]string]bool{
	{fWSKill, pAfterSwap}:          true,
	{fWSKill, pConfirmSent}:        true,
	{fLinkCut, pAfterSwap}:         true,
	{fHelperKill, pBeforeSwap}:     true,
	{fHelperKill, pRevert}:         true,
	{fSSHDRestart, pConfirmBefore}: true,
	{fSSHDKill, pAfterSwap}:        true,
	{fCrash, pAfterSwap}:           true,
	{fCrash, pConfirmSent}:         true,
	{fCrash, pRevert}:              true,
	{fLoss, pWhole}:                true,
	{fStateFull, pAfterSwap}:       true,
	{fSecondBegin, pApplied}:       true,
}

// kindSystemd is the systemd hosts' column (their backend is nft).
const kindSystemd = "systemd"

// hostKind is the column a host's cells go to: its backend, or systemd.
func hostKind(h *lab.Host) string {
	if h.Init == lab.InitSystemd {
		return kindSystemd
	}
	return h.Backend
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
// directly attached plain hosts (the watchdog), two per backend, and one
// (ci) or two (all) systemd hosts (a transient timer) when the machine can
// run them (FAULTS_SYSTEMD=0: none); every host at once, each running its
// column's cells one after another.
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
	// systemd hosts (s01..: systemd as PID 1 in systemd-nspawn, a
	// transient timer per tx) where the machine can run them; the first
	// run builds their root (minutes), later runs find it cached
	systemd := 0
	if err := lab.CheckSystemdPrereqs(); err != nil || os.Getenv("FAULTS_SYSTEMD") == "0" {
		t.Logf("no systemd hosts: %v (FAULTS_SYSTEMD=%s)", err, os.Getenv("FAULTS_SYSTEMD"))
	} else if systemd = 1; mode == "all" {
		systemd = 2
	}
	l := labtest.Start(t, labtest.Options{Hosts: 7, InitExe: lifelineBin, Systemd: systemd})
	kinds := []string{lab.BackendNft, lab.BackendIptablesNft, lab.BackendIptablesLegacy, kindSystemd}
	queues := map[string]chan faultRow{}
	for _, k := range kinds {
		queues[k] = make(chan faultRow, len(faultMatrix))
		for _, row := range faultMatrix {
			if (mode == "all" || row.ci) && (k != kindSystemd || systemdRows[[2]string{row.fault, row.phase}]) {
				queues[k] <- row
			}
		}
		close(queues[k])
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
				t.Run(h.Name+"-"+hostKind(h), func(t *testing.T) { runHost(t, l, h, queues[hostKind(h)], &mu, &results) })
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
		res := cellResult{row: row, backend: hostKind(h), host: h.Name}
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
	path, _ := fh.candidate(t, row.ruleset())
	ref := fh.reference(t, path)
	// a second workstation's candidate (two at once, a second begin)
	path2, ref2 := "", ""
	if row.fault == fTwoWS || row.fault == fSecondBegin {
		path2, _ = fh.candidate(t, "good")
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
	// a watchdog whose tx ended exits at its next look at the record
	// (every second): allow it a few
	var a string
	if waitFor(5*time.Second, func() bool { a = armed(t, fh.l, name); return a == "" }) != nil {
		failf("still armed after the cell: %s", a)
	}
	if fh.h.Init == lab.InitSystemd {
		if units := strings.TrimSpace(fh.console(t, "systemctl list-units --no-legend --plain --state=active 'lifeline-revert-*' || true")); units != "" {
			failf("a revert unit is still active after the cell:\n%s", units)
		}
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
