package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
)

// keptTx is what the run store keeps of an armed transaction, so that
// another lifeline process can confirm, extend or abort it: the confirm
// token is a secret (mode 0600, in the 0700 run folder) and is removed
// once the transaction is confirmed.
type keptTx struct {
	Host     string    `json:"host"`
	TxID     string    `json:"tx_id"`
	Token    string    `json:"token"`
	Deadline time.Time `json:"deadline"` // host clock
	// LocalDeadline is the deadline on the workstation's clock.
	LocalDeadline time.Time `json:"local_deadline"`
	// LeaseFailing: a shell's last heartbeat could not get in anew.
	LeaseFailing bool `json:"lease_failing,omitempty"`
}

func (s *Session) txFile(host string) string {
	return filepath.Join(s.opts.RunDir, "hosts", HostFile(host)+".tx.json")
}

// keepTx writes h's token into the run store (best effort: the transaction
// itself does not depend on it).
func (s *Session) keepTx(h *Tx) {
	if s.opts.RunDir == "" {
		return
	}
	p := s.txFile(h.t.Name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	b, err := json.MarshalIndent(keptTx{Host: h.t.Name, TxID: h.res.TxID, Token: h.token, Deadline: h.res.Deadline, LocalDeadline: h.localDL, LeaseFailing: h.leaseFailing}, "", "  ")
	if err == nil {
		_ = renameio.WriteFile(p, b, 0o600)
	}
}

// dropTx removes h's token once it can no longer be used.
func (s *Session) dropTx(h *Tx) {
	if s.opts.RunDir != "" {
		_ = os.Remove(s.txFile(h.t.Name))
	}
}

// settleKept drops h's kept token once the transaction can no longer be
// confirmed or extended; it stays while the host may still hold it armed
// (armed on purpose, unknown, needs recovery).
func (s *Session) settleKept(h *Tx) {
	switch h.res.Outcome {
	case Armed, Unknown, NeedsRecovery, "":
		return
	}
	s.dropTx(h)
}

// ErrNoKeptTx: the run folder holds no armed transaction for the host.
var ErrNoKeptTx = errors.New("no armed transaction of this run for the host")

// Resume is the transaction of target t that an earlier lifeline process
// of this run (Options.RunDir) began: Connect it, then Confirm, Extend or
// Abort it. ch describes the change (for phases and hints).
func (s *Session) Resume(t Target, ch Change) (*Tx, error) {
	if s.opts.RunDir == "" {
		return nil, fmt.Errorf("%s: resume: no run folder", t.Name)
	}
	b, err := os.ReadFile(s.txFile(t.Name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (%s)", t.Name, ErrNoKeptTx, s.opts.RunDir)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: resume: %w", t.Name, err)
	}
	var k keptTx
	if err := json.Unmarshal(b, &k); err != nil || k.Host != t.Name || k.TxID == "" || k.Token == "" {
		return nil, fmt.Errorf("%s: resume: unreadable %s (%v)", t.Name, s.txFile(t.Name), err)
	}
	h := s.NewTx(t, ch)
	h.res.TxID, h.token, h.res.Deadline, h.localDL = k.TxID, k.Token, k.Deadline, k.LocalDeadline
	h.leaseFailing = k.LeaseFailing
	return h, nil
}

// LatestRun is the newest run folder under runs (run folders are named by
// their time-sortable run id) that keeps an armed transaction for host.
func LatestRun(runs, host string) (string, error) {
	ents, err := os.ReadDir(runs)
	if err != nil {
		return "", fmt.Errorf("%s: %w (%v)", host, ErrNoKeptTx, err)
	}
	for i := len(ents) - 1; i >= 0; i-- {
		dir := filepath.Join(runs, ents[i].Name())
		if _, err := os.Stat(filepath.Join(dir, "hosts", HostFile(host)+".tx.json")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%s: %w in %s", host, ErrNoKeptTx, runs)
}

// Kept ops: what a later lifeline process does with a kept transaction.
const (
	OpConfirm = "confirm"
	OpAbort   = "abort"
	OpExtend  = "extend"
)

// Finish resumes the transaction of t kept in this session's run folder
// and confirms, aborts or extends it (by: the new timeout from now), each
// over a fresh connection, the host checking the tx id and token. wantTx,
// when set, must be the kept transaction's id. Never returns nil.
func (s *Session) Finish(ctx context.Context, t Target, op, wantTx string, by time.Duration) *Result {
	h, err := s.Resume(t, &GuardedChange{})
	if err != nil {
		return &Result{Host: t.Name, Outcome: Refused, Error: err.Error(), Err: err, Timings: []Timing{},
			Hint: "only a transaction this workstation left armed (exec or apply --no-confirm) can be resumed; lifeline status " + t.Name + " shows what the host holds"}
	}
	if wantTx != "" && wantTx != h.res.TxID {
		err := fmt.Errorf("%s: the kept transaction is %s, not %s", t.Name, h.res.TxID, wantTx)
		return &Result{Host: t.Name, Outcome: Refused, TxID: h.res.TxID, Error: err.Error(), Err: err, Timings: []Timing{}}
	}
	if op == OpConfirm && h.leaseFailing {
		err := fmt.Errorf("%s: new SSH connections to it were failing at the shell's last heartbeat: confirm is refused while that lasts", t.Name)
		return &Result{Host: t.Name, Outcome: Refused, TxID: h.res.TxID, Error: err.Error(), Err: err, Timings: []Timing{},
			Hint: "fix access from the shell (a heartbeat that gets in clears this), or let it revert"}
	}
	defer func() { s.settleKept(h); h.res.Took = s.opts.Now().Sub(h.start); s.save(h.res) }()
	if h.Connect(ctx) != nil {
		return h.res
	}
	defer h.Close()
	switch op {
	case OpConfirm:
		_ = h.Confirm(ctx)
	case OpAbort:
		_ = h.Abort(ctx, errors.New("aborted by the operator"))
		if h.res.Outcome == Reverted {
			h.res.Err, h.res.Error = nil, "" // what was asked
		}
	case OpExtend:
		if err := h.Extend(ctx, by); err != nil {
			h.end(Refused, err, "the deadline stays "+h.res.Deadline.Format(time.RFC3339)+" (host clock)")
			break
		}
		h.end(Armed, nil, fmt.Sprintf("deadline now %s (host clock)", h.res.Deadline.Format(time.RFC3339)))
	default:
		h.end(Refused, fmt.Errorf("unknown operation %q", op), "")
	}
	return h.res
}
