// Package wire is the protocol between the lifeline workstation and the
// lifeline-helper on each host: the request and report envelopes, the
// verbs, error codes, the protocol version, and the command line that runs
// the helper. It imports nothing but the standard library and has no OS
// dependencies, so the workstation builds on every platform Go supports
// (linux, macOS) while the host side (package revert) stays Linux-only.
//
// # Transport
//
// The workstation runs [HelperCommand] over SSH with one [Request] as JSON
// on stdin; the helper writes one [Report] as JSON on stdout.
package wire

import (
	"fmt"
	"strings"
	"time"
)

// ProtocolVersion is bumped whenever Request or Report change incompatibly.
// The workstation refuses a helper that answers with another version.
const ProtocolVersion = 2

// Verbs of the helper's command line: `lifeline-helper VERB` reads one
// Request as JSON on stdin and writes one Report as JSON on stdout. It exits
// 0 whenever it wrote a Report, also for a refusal (Report.Error says why);
// a non-zero exit means it could not produce a report at all.
const (
	VerbDetect  = "detect"  // what the host has; changes nothing
	VerbDiff    = "diff"    // live ruleset vs Request.Diff (dry run); changes nothing
	VerbBegin   = "begin"   // lock, check the change (validate, guard plan), snapshot, verify snapshot, arm revert timer
	VerbStage   = "stage"   // make the change live with the kernel guard (ruleset: one atomic swap; guarded: guard only)
	VerbExtend  = "extend"  // token check, new deadline: re-arm the timer, refresh the guard
	VerbConfirm = "confirm" // token check, remove the guard (never a re-apply), persist if asked, disarm
	VerbStatus  = "status"  // the tx record (the latest one when TxID is empty) + live==snapshot check
	VerbAbort   = "abort"   // restore the snapshot now and disarm (workstation-initiated revert)
	// Internal verbs, started by the helper itself, never by the workstation:
	VerbRevert   = "revert"   // the timer fired: restore the snapshot, verify, record
	VerbWatchdog = "watchdog" // detached timer for hosts without systemd as PID 1
)

// Format is the syntax of a ruleset file.
type Format string

const (
	FormatNft       Format = "nft"       // nft -f syntax (native nftables)
	FormatIPTables  Format = "iptables"  // iptables-save/-restore syntax, IPv4
	FormatIP6Tables Format = "ip6tables" // ip6tables-save/-restore syntax, IPv6
)

// State of a transaction on the host.
type State string

const (
	StateNone         State = "none"          // no transaction (status on a fresh host)
	StateArmed        State = "armed"         // snapshot taken, revert timer armed, nothing changed yet
	StateApplied      State = "applied"       // new ruleset + kernel guard live, waiting for confirm
	StateConfirmed    State = "confirmed"     // confirmed: guard removed, timer disarmed (persisted if asked)
	StateReverted     State = "reverted"      // snapshot restored and verified
	StateRevertFailed State = "revert-failed" // restore ran but the live ruleset does not equal the snapshot
	StateRefused      State = "refused"       // nothing changed (validation, lock, backend)
)

// Terminal reports whether no further transition can happen.
func (s State) Terminal() bool {
	switch s {
	case StateConfirmed, StateReverted, StateRevertFailed, StateRefused:
		return true
	}
	return false
}

// Operator is how the host sees the operator's SSH connection (from
// SSH_CONNECTION of the login shell, before sudo resets the environment).
// The kernel guard re-opens exactly this path after the deadline.
type Operator struct {
	Addr    string `json:"addr"`     // source address as the host sees it (the last jump host when jumping)
	SSHPort int    `json:"ssh_port"` // the host's sshd port the connection came in on
	// HostAddr is the host's own address the connection came in on
	// (SSH_CONNECTION field 3), where the preflight's sandbox listens;
	// SrcPort the connection's source port (field 2).
	HostAddr string `json:"host_addr,omitempty"`
	SrcPort  int    `json:"src_port,omitempty"`
}

// Request is what the workstation sends to the helper: a small envelope
// (which transaction, who asks, the confirm token) and the one payload its
// verb takes. begin carries Begin; diff carries Diff; extend carries
// Extend; stage, confirm, status and abort carry none (the change was sent
// with begin and is kept in the transaction's folder on the host).
type Request struct {
	Version int    `json:"version"`
	TxID    string `json:"tx_id,omitempty"` // begin: chosen by the workstation; later verbs: which tx
	Token   string `json:"token,omitempty"` // confirm, extend: the secret that begin returned
	// Origin names who asks (user@workstation, run id): shown to whoever
	// finds the lock held.
	Origin string `json:"origin,omitempty"`

	// TimerGen (internal verbs revert and watchdog only): the generation
	// of the timer that runs them, 0 for begin's and +1 per extend; a
	// timer older than the record's current one does nothing.
	TimerGen int `json:"timer_gen,omitempty"`

	Begin     *BeginArgs     `json:"begin,omitempty"`
	Diff      *Change        `json:"diff,omitempty"`
	Extend    *ExtendArgs    `json:"extend,omitempty"`
	Conntrack *ConntrackArgs `json:"conntrack,omitempty"`
	// Read: state's payload; on confirm, a request for the state after
	// it (Report.Live).
	Trace     *TraceArgs     `json:"trace,omitempty"`
	Read      *StateArgs     `json:"read,omitempty"`
	Preflight *PreflightArgs `json:"preflight,omitempty"`
	// Block: block's payload (VerbBlock).
	Block *BlockArgs `json:"block,omitempty"`
}

// BeginArgs is begin's payload: how long the host waits for the confirm,
// the operator's path the kernel guard keeps open, and the change stage
// will make, checked before anything is armed (a change that would be
// refused arms nothing).
type BeginArgs struct {
	ConfirmTimeout Duration `json:"confirm_timeout"`
	Operator       Operator `json:"operator"`
	Change         Change   `json:"change"`
	// Preflight, when set, makes begin evaluate a ruleset change against
	// these paths (none: the Operator's) in a sandbox, after validating it, and
	// refuse a certain lockout (CodePreflightLockout) unless
	// Change.ForceLockout; Report.Preflight carries the verdicts.
	Preflight *PreflightArgs `json:"preflight,omitempty"`
}

// ExtendArgs is extend's payload: the new deadline is the host's now plus
// ConfirmTimeout (bounded like begin's).
type ExtendArgs struct {
	ConfirmTimeout Duration `json:"confirm_timeout"`
}

// ChangeKind names what a transaction changes between its snapshot and its
// confirm.
type ChangeKind string

const (
	// ChangeRuleset swaps the whole ruleset of one family (apply).
	ChangeRuleset ChangeKind = "ruleset"
	// ChangeGuarded changes nothing by itself: stage installs the kernel
	// guard on the live ruleset, and the operator's own commands (exec,
	// shell) make the change while the transaction is staged.
	ChangeGuarded ChangeKind = "guarded"
	// ChangeRestore puts back the firewall as an earlier transaction
	// confirmed it (recover): itself guarded like any change.
	ChangeRestore ChangeKind = "restore"
	// ChangeBlock (block.go) creates lifeline's block set and drop rule
	// and adds elements to it, guarded.
)

// RestoreLastGood names, in RestoreChange.To, the newest transaction that
// ended confirmed.
const RestoreLastGood = "last-good"

// Change is what stage does. Exactly the field of its Kind is set.
type Change struct {
	Kind    ChangeKind     `json:"kind"`
	Ruleset *RulesetChange `json:"ruleset,omitempty"`
	Restore *RestoreChange `json:"restore,omitempty"`
	Block   *BlockChange   `json:"block,omitempty"`
	// Force accepts base chains the kernel guard cannot cover
	// (CodeUnguarded without it): the operator accepts that only the
	// revert timer protects those chains.
	Force bool `json:"force,omitempty"`
	// ForceLockout goes on with a change the preflight found certain to
	// lock the operator out (CodePreflightLockout without it): the revert
	// timer and the kernel guard still protect it.
	ForceLockout bool `json:"force_lockout,omitempty"`
	// Protect names files (absolute paths) that begin snapshots with the
	// firewall (content, mode, owner; or that they do not exist) and every
	// revert restores, each atomically (one that did not exist is
	// removed), at most MaxProtect files of MaxProtectSize bytes each.
	Protect []string `json:"protect,omitempty"`
	// OnRevert are shell commands (sh -c, as root) that every revert runs
	// after restoring the firewall and the protected files, in order, each
	// bounded to a minute, their output kept in the tx log (e.g.
	// "systemctl restart ssh" after sshd_config came back).
	OnRevert []string `json:"on_revert,omitempty"`
}

// Bounds of Change.Protect and Change.OnRevert.
const (
	MaxProtect     = 64
	MaxProtectSize = 1 << 20
	MaxOnRevert    = 16
)

// RulesetChange is a whole-ruleset swap.
type RulesetChange struct {
	Format  Format `json:"format"`
	Text    string `json:"text"`              // the whole ruleset
	Persist bool   `json:"persist,omitempty"` // confirm persists it to the boot config
	// FormatExplicit says the operator chose Format (--format) rather than
	// lifeline inferring it: begin then loads a format that differs from
	// the host's active backend (a second firewall layer) instead of
	// refusing it.
	FormatExplicit bool `json:"format_explicit,omitempty"`
	// MaxSize caps len(Text) in bytes; 0 means DefaultMaxRulesetSize.
	MaxSize int64 `json:"max_size,omitempty"`
}

// RestoreChange is recover's change: the state transaction To confirmed
// (RestoreLastGood: the newest confirmed one).
type RestoreChange struct {
	To string `json:"to"`
}

// Check refuses a malformed change before any lock or write.
func (c *Change) Check() error {
	if err := c.checkProtect(); err != nil {
		return err
	}
	switch c.Kind {
	case ChangeRuleset:
		if c.Ruleset == nil {
			return &Error{Code: CodeBadRequest, Message: "a ruleset change without its ruleset"}
		}
		if err := c.Ruleset.Format.Check(); err != nil {
			return err
		}
		return CheckRuleset(c.Ruleset.Format, c.Ruleset.Text, c.Ruleset.MaxSize)
	case ChangeBlock:
		if c.Block == nil || c.Ruleset != nil || c.Restore != nil {
			return &Error{Code: CodeBadRequest, Message: "a block change carries its set and CIDRs, nothing else"}
		}
		return c.Block.Check()
	case ChangeGuarded:
		if c.Ruleset != nil || c.Restore != nil || c.Block != nil {
			return &Error{Code: CodeBadRequest, Message: "a guarded change carries no ruleset"}
		}
		return nil
	case ChangeRestore:
		if c.Restore == nil || c.Restore.To == "" || c.Ruleset != nil {
			return &Error{Code: CodeBadRequest, Message: "a restore change names the transaction to restore (or last-good), nothing else"}
		}
		return nil
	}
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown change kind %q (this helper knows %s, %s, %s, %s)", c.Kind, ChangeRuleset, ChangeGuarded, ChangeRestore, ChangeBlock)}
}

func (c *Change) checkProtect() error {
	if len(c.Protect) > MaxProtect {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("%d files to protect, at most %d", len(c.Protect), MaxProtect)}
	}
	seen := map[string]bool{}
	for _, p := range c.Protect {
		switch {
		case !strings.HasPrefix(p, "/"):
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("protect %q: give an absolute path", p)}
		case strings.ContainsRune(p, 0) || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "//") || strings.HasSuffix(p, "/") || strings.Contains(p, "/./"):
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("protect %q: give a clean absolute path of a file", p)}
		case seen[p]:
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("protect %q: named twice", p)}
		case strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/") || strings.HasPrefix(p, "/dev/"):
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("protect %q: a kernel setting or device, not a file on disk: it cannot be restored by rewriting it; use --on-revert (e.g. 'sysctl -w ...') instead", p)}
		}
		seen[p] = true
	}
	if len(c.OnRevert) > MaxOnRevert {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("%d on-revert commands, at most %d", len(c.OnRevert), MaxOnRevert)}
	}
	for _, cmd := range c.OnRevert {
		if strings.TrimSpace(cmd) == "" || strings.ContainsRune(cmd, 0) {
			return &Error{Code: CodeBadRequest, Message: "an empty (or NUL-holding) on-revert command"}
		}
	}
	return nil
}

// Check refuses a format this protocol does not know.
func (f Format) Check() error {
	switch f {
	case FormatNft, FormatIPTables, FormatIP6Tables:
		return nil
	}
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown ruleset format %q: use nft, iptables or ip6tables", f)}
}

// Report is the helper's one answer to a Request: what every verb reports
// about the transaction (its state, deadline, timer and guard, whether the
// live ruleset was verified, the host-side timings, the error), and the one
// payload its verb adds: Begin (begin), Detect (detect), Diff (diff),
// Status (status).
type Report struct {
	Version  int       `json:"version"`
	Verb     string    `json:"verb"`
	Hostname string    `json:"hostname"`
	TxID     string    `json:"tx_id,omitempty"`
	State    State     `json:"state"`
	Now      time.Time `json:"now"`               // host clock
	Deadline time.Time `json:"deadline,omitzero"` // host clock, UTC
	Timer    string    `json:"timer,omitempty"`   // "systemd:UNIT" or "watchdog:PID"
	Guard    string    `json:"guard,omitempty"`   // the kernel guard as installed
	// GuardChains (begin and later) are the base chains the kernel guard
	// covers ("inet filter input", "iptables nat PREROUTING", ...);
	// Unguarded those it cannot cover, each with the reason (begin refuses
	// them unless the change is forced; a forced tx keeps the list).
	GuardChains []string `json:"guard_chains,omitempty"`
	Unguarded   []string `json:"unguarded,omitempty"`
	// Verified: stage: live holds the ruleset; after a restore (abort,
	// revert, a failed stage or a late confirm) and status of a reverted
	// tx: live equals the snapshot (or, Reboot, the boot config).
	Verified  *bool    `json:"verified,omitempty"`
	Persisted []string `json:"persisted,omitempty"` // confirm (and status after it): files written
	Phases    []Phase  `json:"phases,omitempty"`    // host-side timings
	// Spawned counts the processes the helper started for this verb
	// (tools, timers, on-revert commands; not the login shell that ran it).
	Spawned int    `json:"spawned,omitempty"`
	Error   *Error `json:"error,omitempty"`
	// Origin is who began the tx (user@workstation run ID).
	Origin string `json:"origin,omitempty"`
	// Reboot: the tx was reverted by a reboot (the persisted boot config
	// came up); Verified then compares live with that boot config.
	Reboot bool `json:"reboot,omitempty"`
	// Warnings the operator must see even though the verb succeeded.
	Warnings []string `json:"warnings,omitempty"`
	// Protect: the files the tx restores with the firewall.
	Protect []string `json:"protect,omitempty"`
	// Created is when the tx began (host clock, UTC).
	Created time.Time `json:"created,omitzero"`

	Begin     *BeginReport     `json:"begin,omitempty"`
	Detect    *Detect          `json:"detect,omitempty"`
	Diff      *DiffReport      `json:"diff,omitempty"`
	Status    *StatusReport    `json:"status,omitempty"`
	Conntrack *ConntrackReport `json:"conntrack,omitempty"`
	Live      *StateReport     `json:"live,omitempty"`      // state (and a confirm asked for it)
	Preflight *PreflightReport `json:"preflight,omitempty"` // preflight, and begin when asked
	Block     *BlockReport     `json:"block,omitempty"`     // block, and stage of a ChangeBlock
}

// BeginReport is begin's payload: the confirm token (only begin ever
// returns it), what the host has, and the snapshot taken (the workstation
// keeps a copy in its run folder). A refused begin carries Detect only.
type BeginReport struct {
	Token    string    `json:"token,omitempty"`
	Detect   *Detect   `json:"detect,omitempty"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
}

// DiffReport is diff's payload.
type DiffReport struct {
	Diff string `json:"diff"` // unified diff from the live ruleset to what the change would leave
}

// StatusReport is status's payload for an armed or applied tx.
type StatusReport struct {
	// TimerAlive: whether the revert timer or watchdog still runs. False
	// means nothing will revert the tx by itself.
	TimerAlive bool `json:"timer_alive"`
	// Overdue: the tx is still armed or applied well past its deadline,
	// so its timer is dead or hung: it needs recovery (abort).
	Overdue bool `json:"overdue,omitempty"`
	// Changes (an applied tx): what differs from the snapshot now: a
	// unified diff of the firewall and the protected files that changed.
	Changes string `json:"changes,omitempty"`
}

// Phase is one timed step on the host.
type Phase struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took_ns"`
}

// Detect is what the helper found on the host.
type Detect struct {
	UID      int      `json:"uid"`
	Arch     string   `json:"arch"`
	Kernel   string   `json:"kernel"`
	Systemd  bool     `json:"systemd"`  // systemd is PID 1
	Backends []string `json:"backends"` // available: nft, iptables-nft, iptables-legacy, ip6tables-nft, ip6tables-legacy
	Active   []string `json:"active"`   // in use (holds rules): same names
	BootID   string   `json:"boot_id,omitempty"`
}

// Error codes: stable strings the workstation switches on.
const (
	CodeLockHeld       = "lock-held"       // another transaction is armed; Error.Holder says which
	CodeInvalidRuleset = "invalid-ruleset" // trial load failed; Error.Line/Text point at it
	CodeSnapshot       = "snapshot-unrestorable"
	CodeBackend        = "backend-missing"
	CodeBadToken       = "bad-token"
	CodeTooLate        = "too-late" // confirm after the revert already ran
	CodeNoTx           = "no-such-tx"
	CodeApplyFailed    = "apply-failed" // swap failed; snapshot restored at once
	CodeRevertFailed   = "revert-failed"
	CodeInternal       = "internal"
	CodeBadRequest     = "bad-request" // the request is malformed (tx id, format, timeout, version)
	CodeBadState       = "bad-state"   // the tx is not in the state the verb needs (e.g. confirm before apply)
	CodeUnguarded      = "unguarded"   // the ruleset has base chains the kernel guard cannot cover (Request.Force accepts)
	// CodeStateWrite: the state folder could not be written (full disk).
	// A begin refused with it changed nothing; later verbs report the
	// state the record on disk holds, and never disarm a timer whose
	// transaction's end went unrecorded.
	CodeStateWrite = "state-write"
	// CodeNeedsRecovery: the previous transaction was left applied with
	// its revert timer dead or overdue (hung), and the live ruleset is not
	// its snapshot: begin will not restore a snapshot that may be older
	// than changes made since. The operator decides: abort restores it.
	CodeNeedsRecovery = "needs-recovery"
	// CodeUnsafePath: a folder or file the helper would act on as root
	// (the state folder, its helper or tx folders, a tx record) is a
	// symlink, not what it should be, owned by another user, or (a tx
	// folder or file) writable by group or others; Message names the
	// path. Nothing was done. A state or helper folder that is root's own
	// with a too-open mode is repaired (chmod 0700) instead, with a
	// warning.
	CodeUnsafePath = "unsafe-path"
)

// Error is a helper-side failure or refusal.
type Error struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Line    int     `json:"line,omitempty"` // 1-based line of the ruleset that failed
	Text    string  `json:"text,omitempty"` // that line
	Holder  *Holder `json:"holder,omitempty"`
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d: %s)", e.Code, e.Message, e.Line, e.Text)
	}
	return e.Code + ": " + e.Message
}

// Holder identifies the transaction that holds a host's lock.
type Holder struct {
	TxID     string    `json:"tx_id"`
	Origin   string    `json:"origin,omitempty"`
	State    State     `json:"state"`
	Deadline time.Time `json:"deadline"`
}

// Duration is a time.Duration that travels as a Go duration string ("60s").
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Snapshot is a host's whole ruleset at one moment, one Part per family and
// backend in use. It is stored as files in the tx folder (0600).
type Snapshot struct {
	Taken time.Time `json:"taken"`
	Parts []Part    `json:"parts"`
}

// Part is one family's ruleset in its own tool's format.
type Part struct {
	Backend string `json:"backend"` // nft | iptables-nft | iptables-legacy | ip6tables-nft | ip6tables-legacy
	Format  Format `json:"format"`
	Text    string `json:"text"`
}

// DefaultMaxRulesetSize caps a ruleset when the request names no cap. A
// ruleset this large is already far beyond a hand-written one; a larger one
// is most likely the wrong file, and loading it would hold the host's lock
// past any confirm timeout.
const DefaultMaxRulesetSize = 4 << 20

// CheckRuleset refuses a ruleset that must never reach a load: one larger
// than max bytes (max <= 0: DefaultMaxRulesetSize), and an empty one (only
// blank lines and comments), which every loader accepts and which leaves
// the host with no firewall at all, at boot too when persisted. The
// workstation calls it before connecting, the helper before it takes the
// lock or writes anything. Not worth retrying: the ruleset must change.
func CheckRuleset(format Format, ruleset string, max int64) error {
	if max <= 0 {
		max = DefaultMaxRulesetSize
	}
	if int64(len(ruleset)) > max {
		return &Error{Code: CodeInvalidRuleset, Message: fmt.Sprintf("the %s ruleset is %s, more than the limit of %s: check that it is the right file, or raise --max-ruleset-size", format, sizeOf(int64(len(ruleset))), sizeOf(max))}
	}
	for _, l := range strings.Split(ruleset, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return checkText(format, ruleset)
		}
	}
	hint := "write the rules you want"
	if format == FormatNft {
		hint += "; to remove every table on purpose, send `flush ruleset`"
	} else {
		hint += "; to accept everything on purpose, send table blocks with ACCEPT policies"
	}
	return &Error{Code: CodeInvalidRuleset, Message: fmt.Sprintf("the %s ruleset is empty (only blank lines and comments): loading it would leave the host without a firewall; %s", format, hint)}
}

func sizeOf(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}
