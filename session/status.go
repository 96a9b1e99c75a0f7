package session

import (
	"context"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
)

// HostStatus is a host's latest transaction as its helper reports it.
type HostStatus struct {
	Host       string     `json:"host"`
	TxID       string     `json:"tx_id,omitempty"`
	State      wire.State `json:"state"`
	Deadline   time.Time  `json:"deadline,omitzero"`
	Timer      string     `json:"timer,omitempty"`
	TimerAlive *bool      `json:"timer_alive,omitempty"`
	Verified   *bool      `json:"verified,omitempty"`
	Aborted    bool       `json:"aborted,omitempty"` // Status(abort=true) restored the snapshot
	// GuardChains are the base chains the tx's kernel guard covers;
	// Unguarded those a forced tx left to the revert timer alone.
	GuardChains []string `json:"guard_chains,omitempty"`
	Unguarded   []string `json:"unguarded,omitempty"`
	// Origin is who began the tx (user@workstation run ID).
	Origin string `json:"origin,omitempty"`
	// Reboot: reverted by a reboot; Verified compares with the boot config.
	Reboot bool `json:"reboot,omitempty"`
	// Overdue: still armed or applied well past the deadline (timer hung).
	Overdue bool `json:"overdue,omitempty"`
	// NeedsRecovery: armed or applied with its revert timer dead or
	// overdue: nothing will revert it by itself; status --abort does.
	NeedsRecovery bool `json:"needs_recovery,omitempty"`
	// Warnings from the host (e.g. aborting another operator's tx).
	Warnings []string `json:"warnings,omitempty"`
	// Now is the host's clock when it answered (for countdowns).
	Now time.Time `json:"now,omitzero"`
	// Protect: the files the tx restores with the firewall.
	Protect []string `json:"protect,omitempty"`
	// Created is when the tx began (host clock).
	Created time.Time `json:"created,omitzero"`
	// Changes (an applied tx): what differs from its snapshot so far.
	Changes string `json:"changes,omitempty"`
	Error   string `json:"error,omitempty"`
	Err     error  `json:"-"`
}

// Bad reports whether the host needs the operator's attention: it could
// not be asked, its tx needs recovery, its revert failed, or the live
// ruleset is not the snapshot of a reverted tx.
func (st *HostStatus) Bad() bool {
	return st.Err != nil || st.NeedsRecovery || st.State == wire.StateRevertFailed ||
		(st.Verified != nil && !*st.Verified)
}

// Status asks a host for its latest transaction (the helper settles one
// left armed across a reboot as reverted). With abort, a transaction still
// armed or applied is reverted now: the recovery for needs-recovery.
func (s *Session) Status(ctx context.Context, t Target, abort bool) *HostStatus {
	return s.NewTx(t, nil).status(ctx, abort)
}

// status asks the host for its latest transaction (aborting it on request)
// over one connection of its own.
func (h *Tx) status(ctx context.Context, abort bool) *HostStatus {
	s := h.s
	st := &HostStatus{Host: h.t.Name}
	fail := func(err error) *HostStatus { st.Err, st.Error = err, err.Error(); return st }
	c, err := h.dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if err := h.probe(ctx, c); err != nil {
		return fail(err)
	}
	p := h.priv(c)
	rep, err := h.call(ctx, p, wire.VerbStatus, &wire.Request{Version: wire.ProtocolVersion})
	if err == nil && abort && (rep.State == wire.StateArmed || rep.State == wire.StateApplied) {
		st.Aborted = true
		rep, err = h.call(ctx, p, wire.VerbAbort, &wire.Request{Version: wire.ProtocolVersion, TxID: rep.TxID, Origin: s.opts.Origin})
	}
	if err != nil {
		return fail(err)
	}
	st.TxID, st.State, st.Deadline, st.Timer = rep.TxID, rep.State, rep.Deadline, rep.Timer
	st.Verified = rep.Verified
	if rep.Status != nil {
		alive := rep.Status.TimerAlive
		st.TimerAlive, st.Overdue, st.Changes = &alive, rep.Status.Overdue, rep.Status.Changes
	}
	st.GuardChains, st.Unguarded = rep.GuardChains, rep.Unguarded
	st.Origin, st.Warnings, st.Now, st.Reboot, st.Protect, st.Created = rep.Origin, rep.Warnings, rep.Now, rep.Reboot, rep.Protect, rep.Created
	if rep.State == wire.StateArmed || rep.State == wire.StateApplied {
		st.NeedsRecovery = st.Overdue || (st.TimerAlive != nil && !*st.TimerAlive)
	}
	if rep.Error != nil {
		return fail(rep.Error)
	}
	return st
}
