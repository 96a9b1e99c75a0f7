// Package session is the workstation's side of a guarded change: on one host
// it connects, makes sure the helper is there, begins a transaction (lock,
// snapshot, revert timer), applies the ruleset (kernel guard + atomic swap)
// and confirms it from a fresh SSH connection — or, when that connection
// cannot be made, watches the host revert by itself and says so. [Rollout]
// runs that over many hosts in batches.
//
// # Outcomes
//
// Every host ends in exactly one [Outcome]. confirmed, reverted and refused
// are the three endings of the promise (docs/DESIGN.md). unknown means the
// workstation could not see which one happened (the host stayed unreachable
// past its deadline); the Result then says what the host does by itself.
// needs-recovery and revert-failed are loud failures of the host's own
// safety net; skipped hosts were never touched.
package session

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

// Outcome is how one host's transaction ended.
type Outcome string

const (
	Confirmed     Outcome = "confirmed"      // new ruleset live, proven by a fresh connection
	Reverted      Outcome = "reverted"       // snapshot restored and verified; host reachable
	Refused       Outcome = "refused"        // nothing changed (connect/auth/host key/lock/validation)
	Unknown       Outcome = "unknown"        // host unreachable after its deadline: cannot tell
	RevertFailed  Outcome = "revert-failed"  // the host's revert ran but the ruleset is not the snapshot
	NeedsRecovery Outcome = "needs-recovery" // deadline passed, no revert ran (timer died); kernel guard let us in
	Skipped       Outcome = "skipped"        // never touched (rollout stopped, or interrupted)
	Planned       Outcome = "planned"        // --dry-run: diff shown, nothing changed
	Armed         Outcome = "armed"          // --no-confirm: changed, left for a manual confirm; the deadline reverts it
	Restored      Outcome = "restored"       // Options.Undo (trace): the host restored its snapshot as asked and verified it
)

// OK reports whether the outcome is what the operator asked for.
func (o Outcome) OK() bool {
	return o == Confirmed || o == Planned || o == Armed || o == Restored || o == Done
}

// Phases of one host's transaction, in order.
const (
	PhaseConnect = "connect"
	PhaseProbe   = "probe"
	PhaseUpload  = "upload"
	PhaseBegin   = "begin"
	PhaseApply   = "apply"
	PhaseStage   = "stage"  // a guarded change: the host installs the kernel guard
	PhaseChange  = "change" // a guarded change: the operator's commands run
	PhaseExtend  = "extend"
	PhaseRestore = "restore" // recover: the host restores a confirmed state
	PhaseCheck   = "check"
	PhaseConfirm = "confirm"
	PhaseRevert  = "revert" // watching/forcing the revert after a failed confirm
	PhaseDiff    = "diff"
	PhaseTrace   = "trace" // trace: the host streams packet traces
	PhaseUndo    = "undo"  // Options.Undo: the host restores its snapshot at the end, as asked
)

// Dialer opens a NEW connection on every call: new TCP handshake, full
// authentication, same jump path. The confirm step depends on it.
type Dialer interface {
	Dial(ctx context.Context, t remote.Target) (remote.Runner, error)
}

// Target is one host to change.
type Target struct {
	Name    string        // inventory name, used in every message
	SSH     remote.Target // how to reach it
	Ruleset string        // the ruleset text for this host
	Format  wire.Format
	// FormatExplicit: the operator chose Format (--format), so the host
	// loads it even when its active backend is another one.
	FormatExplicit bool
	// RulesetPath names where Ruleset came from (for messages and JSON).
	RulesetPath string
}

// Options shape every host's transaction.
type Options struct {
	ConfirmTimeout time.Duration // revert deadline after begin; default 60s
	Persist        bool          // persist after confirm
	MaxRulesetSize int64         // bytes the host accepts (0: wire.DefaultMaxRulesetSize)
	// Force applies rulesets with base chains the kernel guard cannot
	// cover (the host refuses them with wire.CodeUnguarded otherwise).
	Force bool
	// NoPreflight skips the host's preflight of a ruleset change at
	// begin (the sandbox evaluation of the operator's SSH path).
	NoPreflight bool
	Checks      []string // tcp://HOST:PORT probes run from the workstation before confirm
	DryRun      bool     // show the diff, change nothing
	Origin      string   // user@workstation run-id, shown to lock holders
	RunID       string
	// Helper returns the helper for a GOARCH.
	Helper func(arch string) (data []byte, sha string, err error)
	// Events receives progress; called from many goroutines; may be nil.
	Events func(Event)
	// RunDir, when set, receives each host's result and snapshot.
	RunDir string
	// RevertGrace is how long after the deadline lifeline keeps trying to
	// reach a locked-out host before reporting unknown (default 45s).
	RevertGrace time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// NewChange is the change Apply makes on a target; nil: the target's
	// ruleset (RulesetChange).
	NewChange func(Target) Change
	// NoConfirm leaves each host armed after the change (outcome Armed),
	// for a confirm from another lifeline process (Session.Resume); the
	// host's deadline still reverts it.
	NoConfirm bool
	// History, when set, receives the host's state right after each
	// confirm (the helper lists it in the confirm's own run), with the tx
	// id and who confirmed: lifeline's snapshot history. Called from many
	// goroutines.
	History func(t Target, txID, origin string, live *wire.StateReport)
	// Undo ends each host with an abort instead of a confirm: the change
	// was only ever meant to last the transaction (trace). The host
	// restores its snapshot and verifies it; the outcome is Restored.
	Undo bool
	// Block, when set, makes every host's run a block or unblock
	// (Session.Block) instead of a transaction of NewChange.
	Block *BlockSpec
}

// Event is one step of one host's transaction, for live progress.
type Event struct {
	Host   string
	Phase  string
	Status string // "start", "done", "fail", "info"
	Msg    string
	At     time.Time
}

// Timing is how long one phase took on the workstation.
type Timing struct {
	Phase string        `json:"phase"`
	Took  time.Duration `json:"took_ns"`
}

// Result is one host's transaction as the workstation saw it.
type Result struct {
	Host        string       `json:"host"`
	Outcome     Outcome      `json:"outcome"`
	Phase       string       `json:"phase"` // last phase reached
	TxID        string       `json:"tx_id,omitempty"`
	Error       string       `json:"error,omitempty"`
	Hint        string       `json:"hint,omitempty"`
	Deadline    time.Time    `json:"deadline,omitzero"` // host clock
	Diff        string       `json:"diff,omitempty"`
	Backends    []string     `json:"backends,omitempty"`
	Timings     []Timing     `json:"timings"`
	HostPhases  []wire.Phase `json:"host_phases,omitempty"`
	Connections int          `json:"ssh_connections"`
	RoundTrips  int          `json:"round_trips"`
	// HostProcesses counts the processes the change started on the host:
	// a login shell per command lifeline ran (the helper replaces it), the
	// tools those commands name (the probe's id and uname, an upload's
	// mkdir, chmod, sftp-server and sha256sum) and every process the helper
	// reported starting. sshd's own per-connection processes are not in it.
	HostProcesses int           `json:"host_processes"`
	Uploaded      int64         `json:"bytes_uploaded"`
	Took          time.Duration `json:"took_ns"`
	Holder        *wire.Holder  `json:"holder,omitempty"`
	GuardChains   []string      `json:"guard_chains,omitempty"` // base chains the kernel guard covers
	Unguarded     []string      `json:"unguarded,omitempty"`    // forced: chains it could not cover, with why
	// Reboot: the host reverted by rebooting (it booted its persisted
	// config); reported as "reverted (reboot)". With Confirmed: the confirm
	// was recorded, then the host rebooted before the change was persisted
	// (the answer was lost, a retried confirm found it): "confirmed
	// (reboot)", the boot config is live.
	Reboot bool `json:"reboot,omitempty"`
	// Warnings the operator must see (e.g. a tampered helper replaced).
	Warnings []string `json:"warnings,omitempty"`
	// Path is how recover reached the host ("direct", "via h01", ...).
	Path string `json:"path,omitempty"`
	// Command is what exec's command did on the host (exec only).
	Command *CommandResult `json:"command,omitempty"`
	// Trace is what trace saw on the host (trace only).
	Trace *TraceResult `json:"trace,omitempty"`
	// Block is what block/unblock did on the host (block only).
	Block *BlockResult `json:"block,omitempty"`
	// Preflight is the host's verdict on the change's SSH paths (a
	// ruleset change's begin).
	Preflight *wire.PreflightReport `json:"preflight,omitempty"`
	Snapshot  *wire.Snapshot        `json:"-"`
	Err       error                 `json:"-"`
}

// HostError is one host's failure, for the fleet's aggregate error.
type HostError struct {
	Host    string
	Outcome Outcome
	Err     error
}

// Error is safe to print on a terminal: the host's own error text (which
// can carry its stderr or bytes of the ruleset) is escaped and long lines
// are cut, see [textsafe.Text].
func (e *HostError) Error() string {
	host := textsafe.Escape(e.Host)
	if e.Err == nil {
		return host + ": " + string(e.Outcome)
	}
	return host + ": " + string(e.Outcome) + ": " + textsafe.Text(e.Err.Error())
}
func (e *HostError) Unwrap() error { return e.Err }

// FleetError aggregates the hosts that did not end as asked; errors.Is and
// errors.As reach each host's error.
type FleetError struct{ Hosts []*HostError }

func (e *FleetError) Error() string {
	if len(e.Hosts) == 1 {
		return e.Hosts[0].Error()
	}
	return errorsCount(len(e.Hosts))
}

func (e *FleetError) Unwrap() []error {
	out := make([]error, len(e.Hosts))
	for i, h := range e.Hosts {
		out[i] = h
	}
	return out
}

func errorsCount(n int) string {
	return strconv.Itoa(n) + " hosts did not end as asked"
}

// Err returns a *FleetError for the results that are not OK, or nil.
func Err(results []*Result) error {
	var fe FleetError
	for _, r := range results {
		if r == nil || r.Outcome.OK() {
			continue
		}
		err := r.Err
		if err == nil && r.Error != "" {
			err = errors.New(r.Error)
		}
		fe.Hosts = append(fe.Hosts, &HostError{Host: r.Host, Outcome: r.Outcome, Err: err})
	}
	if len(fe.Hosts) == 0 {
		return nil
	}
	return &fe
}
