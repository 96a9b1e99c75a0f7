package revert

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dev/lifeline/internal/shquote"
	"github.com/lifeline-dev/lifeline/internal/trace"
)

// traceMargin is the time a trace leaves before its transaction's
// deadline: the trace rules are removed, and the workstation's abort
// arrives, before the timer would restore the snapshot anyway.
const traceMargin = 2 * time.Second

// traceSubscribe is how long the monitor gets to subscribe to the kernel's
// trace events before the tracing rules go in.
const traceSubscribe = 300 * time.Millisecond

// tracer is how one host marks the packets of a match and reads their
// trace: the rules go in with install and out with remove; monitor is the
// command whose output lines the trace.Reader reads.
type tracer struct {
	start   TraceStart
	install func(ctx context.Context) error
	remove  func(ctx context.Context) error
	monitor []string
	xtables bool
}

// Trace runs the trace verb (wire.VerbTrace): it reads one Request line
// from in, traces until the duration passes, in closes, or ctx ends, and
// writes TraceLines to out, the last one with the Report. It never touches
// the transaction's record: the trace runs inside an applied guarded
// transaction whose snapshot predates it, and the workstation's abort (or,
// when the workstation is gone, the revert timer) restores that snapshot.
// The trace rules are removed before the Report is written.
func Trace(ctx context.Context, txID string, in io.Reader, out io.Writer, env Env) error {
	env = env.withDefaults()
	e := &engine{env: env, st: store{dir: env.StateDir}, fw: env.Firewall, armer: env.Armer, clock: env.Clock}
	w := &traceWriter{enc: json.NewEncoder(out)}
	rep := &Report{Version: ProtocolVersion, Verb: VerbTrace, Hostname: env.Hostname, State: StateNone}
	br := bufio.NewReader(in)
	err := e.trace(ctx, txID, br, w, rep)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: CodeInternal, Message: err.Error()}
		}
		rep.Error = pe
	}
	rep.Now = env.Clock.Now().UTC().Round(0)
	return w.write(TraceLine{Report: rep})
}

// traceWriter writes TraceLines, one per line, from many goroutines.
type traceWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
	err error // the first write error: the workstation is gone
}

func (w *traceWriter) write(l TraceLine) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = w.enc.Encode(l)
	}
	return w.err
}

func (e *engine) trace(ctx context.Context, txID string, in *bufio.Reader, w *traceWriter, rep *Report) error {
	line, err := in.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) || len(strings.TrimSpace(string(line))) == 0 {
		return &Error{Code: CodeBadRequest, Message: "trace: no request line on stdin"}
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return &Error{Code: CodeBadRequest, Message: "trace: unreadable request: " + err.Error()}
	}
	if txID != "" {
		req.TxID = txID
	}
	rep.TxID = req.TxID
	switch {
	case req.Version != 0 && req.Version != ProtocolVersion:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("protocol version %d, this helper speaks %d", req.Version, ProtocolVersion)}
	case req.Trace == nil:
		return &Error{Code: CodeBadRequest, Message: "trace needs its trace payload"}
	case req.Trace.Duration <= 0 || req.Trace.Duration > MaxTraceDuration:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("trace duration %s out of range (1ns to %s)", time.Duration(req.Trace.Duration), time.Duration(MaxTraceDuration))}
	}
	if err := trace.Check(req.Trace.Match); err != nil {
		return &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	r, err := e.loadTx(req.TxID)
	if err != nil {
		return err
	}
	fill(rep, r)
	d := time.Duration(req.Trace.Duration)
	switch left := e.remaining(r); {
	case r.State != StateApplied || r.Change != ChangeGuarded:
		return &Error{Code: CodeBadState, Message: fmt.Sprintf("trace runs only inside an applied guarded transaction; tx %s is %s (%s)", r.ID, r.State, orUnknown(string(r.Change)))}
	case left < d+traceMargin:
		return &Error{Code: CodeTooLate, Message: fmt.Sprintf("tx %s has %s left before its deadline, the trace needs %s plus %s", r.ID, left.Round(time.Millisecond), d, traceMargin)}
	}
	det, err := e.fw.Detect(ctx)
	if err != nil {
		return fmt.Errorf("trace: detect backends: %w", err)
	}
	tr, err := chooseTracer(det, req.Trace.Match, r.Operator, exec.LookPath)
	if err != nil {
		return err
	}
	tr.start.Until = Duration(d)
	e.logf(r.ID, "info", "trace %q for %s: %s, read with %s", trace.String(req.Trace.Match), d, tr.start.Tracer, tr.start.Monitor)
	return e.runTrace(ctx, r.ID, tr, d, in, w, rep)
}

// chooseTracer picks how this host traces: the nft table when the host has
// nft (it marks packets for every nf_tables table, iptables-nft's
// included), else iptables-nft's raw TRACE; the monitor is xtables-monitor
// when iptables-nft holds the rules and no native nft table does (it
// prints iptables-nft's rules in iptables syntax), else nft monitor trace.
// A host whose rules are iptables-legacy's is refused: legacy tables are
// not nf_tables, so neither monitor sees their verdicts, and legacy TRACE
// logs to the kernel log, which a network namespace (a container, a lab
// host) cannot read.
func chooseTracer(det *Detect, m TraceMatch, op Operator, lookPath func(string) (string, error)) (*tracer, error) {
	has := func(tool string) bool { _, err := lookPath(tool); return err == nil }
	active := func(b string) bool { return slices.Contains(det.Active, b) }
	if active("iptables-legacy") || active("ip6tables-legacy") {
		return nil, &Error{Code: CodeBackend, Message: "this host's rules are iptables-legacy's: trace cannot read their verdicts (legacy tables are not nf_tables, so nftrace never reports them, and legacy TRACE writes to the kernel log, which cannot be read reliably from inside a network namespace or container) (hint: switch the host to iptables-nft, or use iptables-legacy's LOG target by hand under lifeline exec)"}
	}
	tr := &tracer{}
	xt := (active("iptables-nft") || active("ip6tables-nft")) && !active("nft") && has("xtables-monitor")
	switch {
	case has("nft"):
		script := trace.NftScript(m, op)
		tr.start.Tracer = "nft table " + trace.TableFamily + " " + trace.TableName
		tr.start.Rules = trace.NftRules(m, op)
		tr.install = func(ctx context.Context) error {
			_, _, err := localExec(ctx, []byte(script), "nft", "-f", "-")
			return err
		}
		tr.remove = func(ctx context.Context) error {
			_, _, err := localExec(ctx, nil, "nft", "delete", "table", trace.TableFamily, trace.TableName)
			return err
		}
		if !xt {
			tr.monitor = []string{"nft", "-a", "monitor", "trace"}
		}
	case has("iptables-nft") && has("xtables-monitor"):
		if trace.CoversOperator(m, op) {
			return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("this host has no nft tool, and iptables cannot keep lifeline's own ssh connection (%s to port %d) out of this match's trace (hint: narrow the match with saddr/daddr or a port, or install nftables)", op.Addr, op.SSHPort)}
		}
		rules := trace.IPTables(m)
		tr.start.Tracer = "iptables-nft -t raw TRACE"
		for _, r := range rules {
			tr.start.Rules = append(tr.start.Rules, r.Tool+" "+shquote.Join(r.Insert))
		}
		tr.install = func(ctx context.Context) error {
			for i, r := range rules {
				if _, _, err := localExec(ctx, nil, r.Tool, r.Insert...); err != nil {
					for _, done := range rules[:i] {
						_, _, _ = localExec(ctx, nil, done.Tool, done.Delete...)
					}
					return err
				}
			}
			return nil
		}
		tr.remove = func(ctx context.Context) error {
			var errs []error
			for _, r := range rules {
				if _, _, err := localExec(ctx, nil, r.Tool, r.Delete...); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}
		xt = true
	default:
		return nil, &Error{Code: CodeBackend, Message: "trace needs nft, or iptables-nft with xtables-monitor, on this host (hint: install nftables)"}
	}
	if xt {
		tr.monitor, tr.xtables = []string{"xtables-monitor", "--trace"}, true
	}
	tr.start.Monitor = strings.Join(tr.monitor, " ")
	return tr, nil
}

// runTrace starts the monitor, installs the rules, streams events until the
// duration passes, in closes or ctx ends, then removes the rules.
func (e *engine) runTrace(ctx context.Context, txID string, tr *tracer, d time.Duration, in *bufio.Reader, w *traceWriter, rep *Report) error {
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	go func() { // stdin closing is the workstation going away (or stopping)
		_, _ = io.Copy(io.Discard, in)
		cancel()
	}()
	// the monitor outlives the trace by the removal of the rules, so that
	// no marked packet goes unreported
	mctx, mcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer mcancel()
	mon := exec.CommandContext(mctx, tr.monitor[0], tr.monitor[1:]...)
	mon.WaitDelay = 2 * time.Second
	var stderr strings.Builder
	mon.Stderr = &limitWriter{w: &stderr, n: 4096}
	pipe, err := mon.StdoutPipe()
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	if err := startCounted(mon); err != nil {
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("start %s: %v", tr.start.Monitor, err)}
	}
	events := make(chan struct{})
	died := false // the monitor ended before the trace did
	go func() {
		defer close(events)
		rd := trace.Reader{Xtables: tr.xtables}
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if ev, ok := rd.Line(sc.Text()); ok {
				if w.write(TraceLine{Event: &ev}) != nil {
					cancel() // nobody reads us any more
				}
			}
		}
		if tctx.Err() == nil {
			died = true
			cancel()
		}
	}()
	select {
	case <-time.After(traceSubscribe):
	case <-tctx.Done():
	}
	t0 := e.now()
	installErr := e.phase(rep, "install", func() error {
		ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer icancel()
		return tr.install(ictx)
	})
	if installErr == nil {
		e.logf(txID, "info", "trace rules installed: %s", strings.Join(tr.start.Rules, "; "))
		tr.start.Until = Duration(d - e.now().Sub(t0))
		if w.write(TraceLine{Start: &tr.start}) != nil {
			cancel()
		}
		<-tctx.Done()
	}
	// the rules go first, then the monitor: no packet stays marked unseen
	removeErr := e.phase(rep, "remove", func() error {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		if installErr != nil {
			_ = tr.remove(rctx) // whatever part of it went in
			return nil
		}
		return tr.remove(rctx)
	})
	mcancel()
	<-events
	_ = mon.Wait()
	switch {
	case installErr != nil:
		e.logf(txID, "warning", "trace rules could not be installed: %v", installErr)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("install the trace rules (%s): %v", tr.start.Tracer, installErr)}
	case removeErr != nil:
		e.logf(txID, "warning", "trace rules could not be removed: %v; the abort or the revert timer restores the snapshot", removeErr)
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("remove the trace rules: %v (the transaction's abort, or its revert timer at the deadline, restores the snapshot without them)", removeErr)}
	case died:
		e.logf(txID, "warning", "%s ended early: %s", tr.start.Monitor, stderr.String())
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("%s ended before the trace did: %s (the trace rules were removed)", tr.start.Monitor, orUnknown(strings.TrimSpace(stderr.String())))}
	}
	e.logf(txID, "info", "trace ended, rules removed")
	return nil
}

// limitWriter keeps the first n bytes written to it.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
