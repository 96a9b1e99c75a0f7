package revert

import (
	"context"
	"errors"
	"time"
)

// Firewall drives every packet-filter family a host uses through the local
// tools (nft, iptables-*-save/-restore) and netlink. The transaction engine
// (tx.go) calls it; it keeps no transaction state of its own.
//
// Every method that changes the live ruleset is atomic per call as far as
// the kernel allows: nft -f is one transaction; iptables-restore is atomic
// per COMMIT block, so a multi-table iptables apply that fails part-way
// returns an error wrapped around ErrPartialApply and the engine restores
// the snapshot at once. Methods are not safe for concurrent use; the engine
// serialises them under the host lock.
type Firewall interface {
	// ReadState lists every table of every backend with counters, the
	// ipset sets, and (candidate set) a ruleset as a scratch namespace's
	// kernel holds it after loading it. Changes nothing live but, with
	// zero, the counters (after listing them).
	ReadState(ctx context.Context, candidate *RulesetChange, zero bool) (*StateReport, error)
	// Detect reports the backends present and in use. Changes nothing.
	Detect(ctx context.Context) (*Detect, error)
	// Snapshot captures every family in use, each in its own tool's format
	// (native nft tables with nft, iptables-nft tables with
	// iptables-nft-save, legacy tables with iptables-legacy-save; IPv6 too).
	Snapshot(ctx context.Context) (*Snapshot, error)
	// Validate trial-loads ruleset in a private, empty network namespace
	// that mirrors the host's interface names. A ruleset that does not load
	// returns an *Error with Code CodeInvalidRuleset and, when the tool
	// names it, the offending Line and Text. Changes nothing live.
	Validate(ctx context.Context, format Format, ruleset string) error
	// ValidateSnapshot trial-loads a snapshot the same way (a snapshot
	// that would not restore refuses the change: CodeSnapshot).
	ValidateSnapshot(ctx context.Context, s *Snapshot) error
	// Apply swaps the live ruleset for ruleset, with guard (if non-nil)
	// merged in at the top of every base chain SSH traffic crosses, and
	// with foreign chains (Docker, kube-proxy, ...) carried over as they
	// are live at this moment.
	Apply(ctx context.Context, format Format, ruleset string, guard *Guard) error
	// Restore puts a snapshot back atomically (all families), carrying
	// foreign chains over as they are live at this moment.
	Restore(ctx context.Context, s *Snapshot) error
	// Equal reports whether the live ruleset equals the snapshot (counters,
	// handles and foreign chains ignored), with a unified diff when not.
	Equal(ctx context.Context, s *Snapshot) (bool, string, error)
	// Contains reports whether the live ruleset holds ruleset as applied
	// (guard and foreign chains ignored), with a diff when not.
	Contains(ctx context.Context, format Format, ruleset string) (bool, string, error)
	// Diff is a unified diff from the live ruleset to what Apply(ruleset)
	// would leave. Changes nothing.
	Diff(ctx context.Context, format Format, ruleset string) (string, error)
	// Persist writes the live ruleset of format's family, as the kernel
	// holds it after the confirm, where the host's boot-time loader reads
	// it (e.g. /etc/nftables.conf, /etc/iptables/rules.v4), atomically,
	// keeps the previous boot file as FILE.lifeline.bak, and returns the
	// files written (the boot file first, then the backup).
	Persist(ctx context.Context, format Format, ruleset string) ([]string, error)
	// BootEqual reports whether the live ruleset of format's family equals
	// what the host's boot config (the file Persist writes) loads, with a
	// diff when not: after a reboot, that, not the snapshot, is what
	// should be live. ErrNoBootConfig when there is no such file.
	BootEqual(ctx context.Context, format Format) (bool, string, error)
	// GuardPlan says which base chains of what Apply(ruleset) leaves the
	// kernel guard covers for the operator op, which it can skip (SSH
	// never crosses them, or the ruleset leaves them as they are) and
	// which it cannot cover. Changes nothing live.
	GuardPlan(ctx context.Context, format Format, ruleset string, op Operator) (*GuardPlan, error)
	// LiveGuardPlan is GuardPlan for the live ruleset as it is, for a
	// change that is not a ruleset swap (InstallGuard then guards
	// Covered): every crossed base chain of the native nft tables and the
	// built-in chains of the live tables of the host's iptables backend of
	// each family are covered; those of tables another owner manages
	// (arptables/ebtables, Docker's or kube-proxy's nft tables) are not.
	// Changes nothing live.
	LiveGuardPlan(ctx context.Context, op Operator) (*GuardPlan, error)
	// InstallGuard puts the guard of g (the same rules, comments and sets
	// Apply merges in, named after g.TxID) at the top of every base chain
	// of g.Chains in the live ruleset, and changes nothing else: one nft -f
	// transaction, one iptables-restore --noflush per iptables family.
	// When one of those loads fails, the ones that ran are undone (best
	// effort) and the error returned. Not idempotent: installing twice
	// puts the guard in twice (use RefreshGuard).
	InstallGuard(ctx context.Context, g *Guard) error
	// RemoveGuard deletes every guard rule of txID, and the guard sets of
	// the nft tables they were in, from the live ruleset of every
	// installed backend, and nothing else, in one load per backend that
	// holds some. Idempotent: with no guard of txID live it changes
	// nothing and returns nil. Equal, Contains and Diff ignore the guard
	// anyway; after RemoveGuard the live ruleset is what it was before
	// InstallGuard.
	RemoveGuard(ctx context.Context, txID string) error
	// RefreshGuard moves the guard of g.TxID to g's deadline (Deadline,
	// Remaining) and g.Chains: the removal and the new guard go in one
	// load per backend (nft: one transaction). With no guard live it
	// installs one.
	RefreshGuard(ctx context.Context, g *Guard) error
}

// Guard is the kernel guard: accept the operator's SSH path (input: from
// Addr to Port; output: from Port to Addr) only once the deadline has
// passed, so that the kernel itself re-opens the path if every userspace
// mechanism on the host dies.
type Guard struct {
	TxID      string        // names the guard's set/comment, e.g. lifeline-guard-<tx>
	Addr      string        // operator address as the host sees it (v4 or v6)
	Port      int           // sshd port
	Deadline  time.Time     // absolute, host clock (iptables -m time, UTC)
	Remaining time.Duration // relative countdown (nft set element timeout)
	// Chains are the base chains the guard goes into (nft: from begin's
	// GuardPlan; iptables formats place it by table, the same way).
	Chains []GuardChain
}

// snapshotSize is about how many bytes the snapshot takes on disk.
func snapshotSize(s *Snapshot) int64 {
	var n int64
	for _, p := range s.Parts {
		n += 2*int64(len(p.Text)) + 64 // JSON escapes tabs and newlines
	}
	return n
}

// ErrNoBootConfig: the host has no boot config file for a format.
var ErrNoBootConfig = errors.New("no boot config")
