package session

import (
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
}

func (s *Session) txFile(host string) string {
	return filepath.Join(s.opts.RunDir, "hosts", hostFile(host)+".tx.json")
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
	b, err := json.MarshalIndent(keptTx{Host: h.t.Name, TxID: h.res.TxID, Token: h.token, Deadline: h.res.Deadline, LocalDeadline: h.localDL}, "", "  ")
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
	return h, nil
}
