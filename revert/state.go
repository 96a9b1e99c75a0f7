package revert

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DefaultStateDir is where the helper keeps its lock and transactions.
const DefaultStateDir = "/var/lib/lifeline"

// keepTx is how many transaction folders survive pruning, and keepBytes
// how much space they may take together (the oldest terminal ones go
// first; the current one always stays).
const (
	keepTx    = 20
	keepBytes = 64 << 20
)

// Files inside the state dir and a tx folder.
const (
	lockFile     = "lock"
	currentFile  = "current"
	txDirName    = "tx"
	recordFile   = "record.json"
	snapshotFile = "snapshot.json"
	rulesetFile  = "ruleset"
	logFile      = "log"
	reserveFile  = "reserve"
)

// reserveSize is the space the state dir keeps allocated for the record
// writes of a transaction in flight (see store.ensureReserve).
const reserveSize = 1 << 20

// Steps refine a State inside record.json so that a crash between two
// writes can be told apart (see the crash table in tx.go).
const (
	stepArming     = "arming"      // files written, timer not yet recorded
	stepArmed      = "armed"       // timer recorded
	stepApplying   = "applying"    // Firewall.Apply is (or was) running
	stepApplied    = "applied"     // Apply returned and was verified
	stepConfirming = "confirming"  // guard drop / disarm is (or was) running
	stepConfirmed  = "confirmed"   // disarmed, state confirmed
	stepPersisted  = "persisted"   // confirmed and written for boot
	stepReverting  = "reverting"   // Restore is (or was) running
	stepReverted   = "reverted"    // Restore finished (state says whether verified)
	stepRefused    = "refused"     // nothing changed
	stepRebootSeen = "reboot-seen" // another boot id found the tx non-terminal
)

// txRecord is record.json: everything needed to interpret a transaction
// after any crash. It never holds the token, only its sha256.
type txRecord struct {
	ID       string     `json:"id"`
	Origin   string     `json:"origin,omitempty"`
	State    State      `json:"state"`
	Step     string     `json:"step"`
	Change   ChangeKind `json:"change,omitempty"` // empty: a ruleset (records older than change kinds)
	Format   Format     `json:"format,omitempty"`
	Persist  bool       `json:"persist,omitempty"`
	Operator Operator   `json:"operator"`
	Created  time.Time  `json:"created"`
	Deadline time.Time  `json:"deadline,omitzero"` // UTC, host clock
	// MonoDeadline is the deadline on CLOCK_MONOTONIC of BootID: what
	// apply/confirm check and the watchdog sleeps until (0: use Deadline).
	MonoDeadline   time.Duration `json:"deadline_monotonic_ns,omitempty"`
	ConfirmTimeout Duration      `json:"confirm_timeout,omitempty"`
	TokenHash      string        `json:"token_sha256,omitempty"`
	BootID         string        `json:"boot_id,omitempty"`
	Timer          Timer         `json:"timer,omitzero"`
	Extends        int           `json:"extends,omitempty"`   // how many times extend re-armed: the current timer's generation
	Protect        []string      `json:"protect,omitempty"`   // files restored with the firewall (protect.json)
	OnRevert       int           `json:"on_revert,omitempty"` // how many on-revert commands protect.json holds
	// GuardOpenEarly: a kernel guard of this tx may have been open before
	// the current deadline (an extend raced the old one): a fresh
	// connection proves nothing any more, so confirm is refused.
	GuardOpenEarly bool `json:"guard_open_early,omitempty"`
	// GuardMoving: an extend recorded a later deadline and has not yet
	// recorded that the guard moved with it (a crash in between leaves the
	// old guard, which opens at the old deadline): confirm is refused.
	GuardMoving bool         `json:"guard_moving,omitempty"`
	Guard       string       `json:"guard,omitempty"`
	GuardChains []GuardChain `json:"guard_chains,omitempty"` // begin's GuardPlan: where apply puts the guard
	Unguarded   []GuardChain `json:"unguarded,omitempty"`    // chains it cannot cover (forced)
	Transitions []transition `json:"transitions"`
	Outcome     string       `json:"outcome,omitempty"` // human summary of how it ended
	Errors      []string     `json:"errors,omitempty"`
	Diff        string       `json:"diff,omitempty"` // revert-failed: live vs snapshot
	Persisted   []string     `json:"persisted,omitempty"`
	Detect      *Detect      `json:"detect,omitempty"`

	// disk is the state, step and outcome record.json holds (as loaded or
	// last written): a failed write puts them back, so that what the
	// helper reports is what the next helper will read.
	disk diskState
}

type diskState struct {
	state   State
	step    string
	outcome string
	n       int // len(Transitions)
}

func (r *txRecord) markSaved() {
	r.disk = diskState{r.State, r.Step, r.Outcome, len(r.Transitions)}
}

// rollback undoes the in-memory transition a failed write did not record.
func (r *txRecord) rollback() {
	r.State, r.Step, r.Outcome = r.disk.state, r.disk.step, r.disk.outcome
	if r.disk.n <= len(r.Transitions) {
		r.Transitions = r.Transitions[:r.disk.n]
	}
}

// transition is one write of record.json.
type transition struct {
	State State     `json:"state"`
	Step  string    `json:"step"`
	At    time.Time `json:"at"`
	Note  string    `json:"note,omitempty"`
}

// errNoTx reports a transaction id with no folder (or no current tx).
var errNoTx = errors.New("no such transaction")

var txIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validTxID reports whether id is safe as a folder and systemd unit name.
func validTxID(id string) bool { return txIDPattern.MatchString(id) }

// store is the on-disk layout under the state dir.
type store struct{ dir string }

func (s store) txRoot() string           { return filepath.Join(s.dir, txDirName) }
func (s store) txDir(id string) string   { return filepath.Join(s.dir, txDirName, id) }
func (s store) path(id, f string) string { return filepath.Join(s.dir, txDirName, id, f) }

// init creates the state dir and tx root with mode 0700, and checks them
// by the trust rule (trust.go), tightening a too-open mode.
func (s store) init() error {
	for _, d := range []string{s.dir, s.txRoot()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create state dir %s: %w", d, err)
		}
	}
	_, err := s.secure()
	return err
}

func (s store) createTx(id string) error {
	if err := os.Mkdir(s.txDir(id), 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create tx folder %s: transaction id already used: %w", id, err)
		}
		return fmt.Errorf("create tx folder %s: %w", id, err)
	}
	return nil
}

func (s store) load(id string) (*txRecord, error) {
	b, err := readTrusted(s.path(id, recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load tx %s: %w", id, errNoTx)
	}
	if err != nil {
		return nil, fmt.Errorf("load tx %s: %w", id, err)
	}
	var r txRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("load tx %s: parse %s: %w", id, recordFile, err)
	}
	r.markSaved()
	return &r, nil
}

// save writes record.json atomically (temp, fsync, rename, fsync dir).
func (s store) save(r *txRecord) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("save tx %s: %w", r.ID, err)
	}
	if testHookWrite != nil {
		if err := testHookWrite(r); err != nil {
			return fmt.Errorf("save tx %s: %w", r.ID, err)
		}
	}
	if err := writeFileAtomic(s.path(r.ID, recordFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save tx %s: %w", r.ID, err)
	}
	return nil
}

// testHookWrite, when set (tests only), runs before every record write; an
// error fails the write as a full disk would.
var testHookWrite func(r *txRecord) error

// ensureReserve keeps reserveSize bytes allocated in the state dir. A
// transaction's record writes must not fail halfway because the file
// system filled up after its begin: when one does, the engine releases the
// reserve and writes again. begin refuses when it cannot set the reserve
// up, before anything is written or changed.
func (s store) ensureReserve() error {
	p := filepath.Join(s.dir, reserveFile)
	if fi, err := os.Stat(p); err == nil && fi.Size() >= reserveSize {
		return nil
	}
	err := writeFileAtomic(p, make([]byte, reserveSize), 0o600)
	if err != nil {
		_ = os.Remove(p)
		var free string
		var st syscall.Statfs_t
		if syscall.Statfs(s.dir, &st) == nil {
			free = fmt.Sprintf(" (%d KiB free)", uint64(st.Bavail)*uint64(st.Bsize)/1024)
		}
		return fmt.Errorf("the state folder %s is full%s: lifeline keeps %d KiB there so that a transaction can always record its end: %w", s.dir, free, reserveSize>>10, err)
	}
	return nil
}

// room checks that the state dir's file system has space for n more
// bytes of tx files (plus slack for records and the log), not counting the
// reserve: begin refuses before it writes anything otherwise.
func (s store) room(n int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil // cannot tell: the writes will say
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need := n + 256<<10; free < need {
		return fmt.Errorf("the state folder %s is full: %d KiB free, this transaction needs %d KiB: %w", s.dir, free>>10, need>>10, syscall.ENOSPC)
	}
	return nil
}

// releaseReserve frees the reserve; it reports whether there was one.
func (s store) releaseReserve() bool {
	return os.Remove(filepath.Join(s.dir, reserveFile)) == nil
}

func (s store) saveSnapshot(id string, snap *Snapshot) error {
	return s.saveSnapshotAs(id, snapshotFile, snap)
}

func (s store) saveSnapshotAs(id, file string, snap *Snapshot) error {
	b, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("save snapshot of tx %s: %w", id, err)
	}
	return writeFileAtomic(s.path(id, file), b, 0o600)
}

func (s store) loadSnapshot(id string) (*Snapshot, error) {
	return s.loadSnapshotAs(id, snapshotFile)
}

func (s store) loadSnapshotAs(id, file string) (*Snapshot, error) {
	b, err := readTrusted(s.path(id, file))
	if err != nil {
		return nil, fmt.Errorf("load snapshot of tx %s: %w", id, err)
	}
	var snap Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("load snapshot of tx %s: %w", id, err)
	}
	return &snap, nil
}

func (s store) loadRuleset(id string) (string, error) {
	b, err := readTrusted(s.path(id, rulesetFile))
	if err != nil {
		return "", fmt.Errorf("load ruleset of tx %s: %w", id, err)
	}
	return string(b), nil
}

// current names the latest begun transaction, "" when there is none.
func (s store) current() (string, error) {
	b, err := readTrusted(filepath.Join(s.dir, currentFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read current tx: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !validTxID(id) {
		return "", fmt.Errorf("read current tx: bad id %q in %s", id, filepath.Join(s.dir, currentFile))
	}
	return id, nil
}

func (s store) setCurrent(id string) error {
	return writeFileAtomic(filepath.Join(s.dir, currentFile), []byte(id+"\n"), 0o600)
}

// prune removes the oldest terminal tx folders beyond keep, never keepID.
func (s store) prune(keep int, keepID string) error {
	ents, err := os.ReadDir(s.txRoot())
	if err != nil {
		return fmt.Errorf("prune tx folders: %w", err)
	}
	type old struct {
		id      string
		created time.Time
		size    int64
	}
	var olds []old
	// the newest confirmed state is what recover restores: never pruned
	lastGood, lastGoodAt := "", time.Time{}
	for _, e := range ents {
		if r, err := s.load(e.Name()); err == nil && r.State == StateConfirmed && r.Created.After(lastGoodAt) {
			if _, err := os.Stat(s.path(r.ID, confirmedFile)); err == nil {
				lastGood, lastGoodAt = r.ID, r.Created
			}
		}
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == keepID || e.Name() == lastGood {
			continue
		}
		r, err := s.load(e.Name())
		var pe *Error
		if errors.As(err, &pe) && pe.Code == CodeUnsafePath {
			continue // not ours to judge: left for the operator
		}
		if err != nil {
			// a folder without a readable record: age by mtime
			fi, ierr := e.Info()
			if ierr != nil {
				continue
			}
			olds = append(olds, old{e.Name(), fi.ModTime(), dirSize(s.txDir(e.Name()))})
			continue
		}
		if !r.State.Terminal() {
			continue
		}
		olds = append(olds, old{r.ID, r.Created, dirSize(s.txDir(r.ID))})
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].created.Before(olds[j].created) })
	var total int64
	for _, o := range olds {
		total += o.size
	}
	total += dirSize(s.txDir(keepID))
	var errs []error
	for i, o := range olds {
		if len(olds)-i <= keep-1 && total <= keepBytes {
			break
		}
		if err := os.RemoveAll(s.txDir(o.id)); err != nil {
			errs = append(errs, fmt.Errorf("prune tx %s: %w", o.id, err))
			continue
		}
		total -= o.size
	}
	return errors.Join(errs...)
}

// appendLog adds one line to the tx log (0600).
func (s store) appendLog(id, line string) error {
	f, err := os.OpenFile(s.path(id, logFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(line + "\n")
	cerr := f.Close()
	return errors.Join(werr, cerr)
}

// writeFileAtomic writes data to path via a temp file in the same folder,
// fsyncs it, renames it over path and fsyncs the folder, so that a crash
// leaves either the old or the new content, never a torn file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := writeAtomic(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// dirSize is the total size of the regular files in dir (not recursive:
// tx folders are flat).
func dirSize(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
