// Package runstore is the workstation's record of its runs: one folder per
// run of apply, exec, shell, trace or recover under
// $XDG_STATE_HOME/lifeline/runs (or ~/.local/state/lifeline/runs), and the
// snapshots those runs took, stored once per content.
//
// # Layout
//
//	runs/RUN-ID/.lock                     held (flock, shared) by the process writing the run
//	runs/RUN-ID/hosts/HOST.json           the host's result
//	runs/RUN-ID/hosts/HOST.snapshot.ref   {"sha256","taken","bytes"}: the snapshot begin took
//	runs/RUN-ID/hosts/HOST.tx.json        an armed transaction's token (the run is open)
//	runs/RUN-ID/hosts/HOST.snapshot.json  the layout before objects: the snapshot itself
//	runs/objects/SHA256.json              a snapshot's parts, once per content
//	runs/objects/.lock                    writers shared, the sweep exclusive
//
// An object holds a snapshot's parts (backend, format, text) and nothing
// that changes from run to run, so that a host whose firewall did not
// change between two runs is stored once; the ref keeps when it was taken.
// Old run folders (HOST.snapshot.json) are read as they are.
//
// # Retention
//
// [Prune] removes whole run folders by a [Policy] (the newest N, none older
// than D), never the run being written, one another process holds, or one
// that keeps an armed transaction's token, then sweeps the objects no
// remaining run refers to. It is crash-safe: a writer stores the object
// before its ref, and the sweep reads every remaining ref before it removes
// anything, under the objects lock; a removed run is first renamed to
// runs/.trash-RUN-ID, so an interrupted prune leaves either a whole run or
// trash that the next prune finishes.
package runstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/google/renameio/v2"

	"github.com/lifeline-dev/lifeline/wire"
)

// Retention defaults, applied after every run (see [AutoPolicy]).
const (
	// DefaultKeep: the newest 50 runs are kept...
	DefaultKeep = 50
	// DefaultOlderThan: ...and none that started more than 30 days ago.
	DefaultOlderThan = 30 * 24 * time.Hour
	// AutoMinAge: the automatic prune never removes a run that started in
	// the last hour (the shards of one rollout, merged by report soon
	// after, stay whatever else runs meanwhile). `lifeline runs prune`
	// does what it is told.
	AutoMinAge = time.Hour
	// OpenGrace: a kept token makes its run open until its deadline plus
	// this; after it the host has reverted (or needs `status --abort`,
	// which needs no token).
	OpenGrace = 24 * time.Hour
)

// File names in a run folder.
const (
	ObjectsDir  = "objects"
	lockFile    = ".lock"
	trashPrefix = ".trash-"
	refSuffix   = ".snapshot.ref"
	oldSuffix   = ".snapshot.json"
	txSuffix    = ".tx.json"
)

// ErrNoSnapshot: the run folder holds no snapshot for the host.
var ErrNoSnapshot = errors.New("no snapshot in the run folder")

// Root is $XDG_STATE_HOME/lifeline/runs, or ~/.local/state/lifeline/runs.
func Root() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("runs: no home folder: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "lifeline", "runs"), nil
}

var runIDRe = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// IsRunID reports whether name is a run folder's name (session.NewTxID).
func IsRunID(name string) bool { return runIDRe.MatchString(name) }

// runTime is when the run started, from its id.
func runTime(id string) (time.Time, bool) {
	if !IsRunID(id) {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", id[:16])
	return t, err == nil
}

// Ref is a host's entry for its snapshot in a run folder.
type Ref struct {
	SHA   string    `json:"sha256"`
	Taken time.Time `json:"taken"`
	Bytes int64     `json:"bytes"` // the object's size
}

// object is what is stored by content: the parts, not when they were taken.
type object struct {
	Parts []wire.Part `json:"parts"`
}

func encodeObject(s *wire.Snapshot) ([]byte, string, error) {
	parts := s.Parts
	if parts == nil {
		parts = []wire.Part{}
	}
	b, err := json.Marshal(object{Parts: parts})
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// Lock is a held flock.
type Lock struct{ f *os.File }

// Close releases the lock. Safe on nil.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	return l.f.Close() // closing the only fd releases the flock
}

func flock(path string, how int) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Hold creates the run folder (0700) and holds its lock shared until
// Close: while it is held, no prune removes the run.
func Hold(runDir string) (*Lock, error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	l, err := flock(filepath.Join(runDir, lockFile), syscall.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("run folder %s: lock: %w", runDir, err)
	}
	return l, nil
}

// PutSnapshot stores s for the host (hostFile: session.HostFile of its
// name) in the run folder: the object under runs/objects unless it is
// there already, then the host's ref. Safe for concurrent use, also across
// processes.
func PutSnapshot(runDir, hostFile string, s *wire.Snapshot) (Ref, error) {
	if hostFile == "" || hostFile == "." || hostFile == ".." || strings.ContainsAny(hostFile, "/\x00") {
		return Ref{}, fmt.Errorf("snapshot: %q is not a host file name (session.HostFile)", hostFile)
	}
	b, sha, err := encodeObject(s)
	if err != nil {
		return Ref{}, fmt.Errorf("snapshot of %s: %w", hostFile, err)
	}
	objs := filepath.Join(filepath.Dir(runDir), ObjectsDir)
	hosts := filepath.Join(runDir, "hosts")
	for _, d := range []string{objs, hosts} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return Ref{}, fmt.Errorf("snapshot of %s: %w", hostFile, err)
		}
	}
	// Shared: writers do not wait for each other, only for a sweep, which
	// reads the refs and removes objects while it holds the lock alone.
	l, err := flock(filepath.Join(objs, lockFile), syscall.LOCK_SH)
	if err != nil {
		return Ref{}, fmt.Errorf("snapshot of %s: lock %s: %w", hostFile, objs, err)
	}
	defer l.Close()
	p := filepath.Join(objs, sha+".json")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if err := renameio.WriteFile(p, b, 0o600); err != nil {
			return Ref{}, fmt.Errorf("snapshot of %s: %w", hostFile, err)
		}
	} else if err != nil {
		return Ref{}, fmt.Errorf("snapshot of %s: %w", hostFile, err)
	}
	ref := Ref{SHA: sha, Taken: s.Taken, Bytes: int64(len(b))}
	rb, err := json.Marshal(ref)
	if err != nil {
		return Ref{}, err
	}
	if err := renameio.WriteFile(filepath.Join(hosts, hostFile+refSuffix), append(rb, '\n'), 0o600); err != nil {
		return Ref{}, fmt.Errorf("snapshot of %s: %w", hostFile, err)
	}
	return ref, nil
}

// Snapshot reads the host's snapshot from the run folder, by its ref (the
// object's sha256 checked), or from an old run folder's HOST.snapshot.json.
// ErrNoSnapshot when the run took none for the host.
func Snapshot(runDir, hostFile string) (*wire.Snapshot, error) {
	hosts := filepath.Join(runDir, "hosts")
	rb, err := os.ReadFile(filepath.Join(hosts, hostFile+refSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		b, err := os.ReadFile(filepath.Join(hosts, hostFile+oldSuffix))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (%s)", hostFile, ErrNoSnapshot, runDir)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: snapshot: %w", hostFile, err)
		}
		s := &wire.Snapshot{}
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("%s: snapshot %s: %w", hostFile, filepath.Join(hosts, hostFile+oldSuffix), err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: snapshot: %w", hostFile, err)
	}
	ref, err := parseRef(rb)
	if err != nil {
		return nil, fmt.Errorf("%s: snapshot ref %s: %w", hostFile, filepath.Join(hosts, hostFile+refSuffix), err)
	}
	p := filepath.Join(filepath.Dir(runDir), ObjectsDir, ref.SHA+".json")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: snapshot object: %w", hostFile, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != ref.SHA {
		return nil, fmt.Errorf("%s: snapshot object %s does not match its sha256 (damaged)", hostFile, p)
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("%s: snapshot object %s: %w", hostFile, p, err)
	}
	return &wire.Snapshot{Taken: ref.Taken, Parts: o.Parts}, nil
}

// ReadRef reads the host's snapshot ref (fs.ErrNotExist: none, or an old
// run folder).
func ReadRef(runDir, hostFile string) (Ref, error) {
	b, err := os.ReadFile(filepath.Join(runDir, "hosts", hostFile+refSuffix))
	if err != nil {
		return Ref{}, err
	}
	return parseRef(b)
}

func parseRef(b []byte) (Ref, error) {
	var r Ref
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if len(r.SHA) != 64 || strings.Trim(r.SHA, "0123456789abcdef") != "" {
		return r, fmt.Errorf("bad sha256 %q", r.SHA)
	}
	return r, nil
}

// Run is one run folder.
type Run struct {
	ID    string    `json:"id"`
	Dir   string    `json:"dir"`
	Start time.Time `json:"start"`
	// Hosts: host results; Snapshots: snapshots (refs and old files).
	Hosts     int `json:"hosts"`
	Snapshots int `json:"snapshots"`
	// Bytes: the folder's own files (an old run's snapshots included,
	// objects not).
	Bytes int64 `json:"bytes"`
	// Open says why the run must stay, when it keeps an armed
	// transaction's token ("" when it keeps none).
	Open string `json:"open,omitempty"`
	// Busy: another process holds the run's lock (it is being written).
	Busy bool `json:"busy,omitempty"`
	// Outcomes counts its hosts' outcomes (List with outcomes only).
	Outcomes map[string]int `json:"outcomes,omitempty"`
}

// ListRuns lists the run folders under root, newest first, with no detail
// (ID, Dir, Start): cheap, one directory read. Folders whose name is not a
// run id are not runs, and are never removed.
func ListRuns(root string) ([]Run, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	var out []Run
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if t, ok := runTime(e.Name()); ok {
			out = append(out, Run{ID: e.Name(), Dir: filepath.Join(root, e.Name()), Start: t})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out, nil
}

// Inspect fills r's detail: sizes and counts, whether it is open (a kept
// token, until its deadline + OpenGrace) and busy (its lock held by
// another process; not checked when busy is false), and, with outcomes,
// its hosts' outcomes.
func Inspect(r *Run, now time.Time, busy, outcomes bool) error {
	r.Hosts, r.Snapshots, r.Bytes, r.Open = 0, 0, 0, ""
	if outcomes {
		r.Outcomes = map[string]int{}
	}
	err := filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			r.Bytes += info.Size()
		}
		if filepath.Base(filepath.Dir(p)) != "hosts" {
			return nil
		}
		name := d.Name()
		switch {
		case strings.HasSuffix(name, txSuffix):
			if why := openWhy(p, now); why != "" && r.Open == "" {
				r.Open = why
			}
		case strings.HasSuffix(name, refSuffix) || strings.HasSuffix(name, oldSuffix):
			r.Snapshots++
		case strings.HasSuffix(name, ".json"):
			r.Hosts++
			if outcomes {
				var res struct {
					Outcome string `json:"outcome"`
				}
				if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &res) == nil && res.Outcome != "" {
					r.Outcomes[res.Outcome]++
				} else {
					r.Outcomes["unreadable"]++
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("runs: %s: %w", r.ID, err)
	}
	if busy {
		r.Busy = isBusy(r.Dir)
	}
	return nil
}

// openWhy says why a kept token keeps its run ("" once it is past use).
func openWhy(txFile string, now time.Time) string {
	host := strings.TrimSuffix(filepath.Base(txFile), txSuffix)
	b, err := os.ReadFile(txFile)
	if err != nil {
		return host + ": transaction token unreadable (" + err.Error() + ")"
	}
	var k struct {
		TxID          string    `json:"tx_id"`
		LocalDeadline time.Time `json:"local_deadline"`
	}
	if err := json.Unmarshal(b, &k); err != nil || k.LocalDeadline.IsZero() {
		return host + ": transaction token without a deadline"
	}
	if now.After(k.LocalDeadline.Add(OpenGrace)) {
		return ""
	}
	return fmt.Sprintf("%s: transaction %s armed until %s", host, k.TxID, k.LocalDeadline.UTC().Format(time.RFC3339))
}

// isBusy: another process holds the run's lock.
func isBusy(runDir string) bool {
	l, err := flock(filepath.Join(runDir, lockFile), syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	l.Close()
	return false
}

// Policy says which runs a prune removes: a run goes when it is not among
// the newest Keep, or started more than OlderThan ago, unless it is
// protected (Except, open, busy, younger than MinAge).
type Policy struct {
	Keep      int           // the newest Keep runs stay (0: no count limit)
	OlderThan time.Duration // runs that started longer ago go (0: no age limit)
	MinAge    time.Duration // runs that started less than this ago stay
	Except    string        // the run being written: stays
	Now       time.Time
}

// AutoPolicy is the retention applied after every run: DefaultKeep and
// DefaultOlderThan, unless LIFELINE_RUNS_KEEP / LIFELINE_RUNS_OLDER_THAN
// say otherwise ("0": no limit on that side; both 0: no automatic prune),
// sparing runs of the last AutoMinAge and except.
func AutoPolicy(except string, now time.Time) (Policy, error) {
	p := Policy{Keep: DefaultKeep, OlderThan: DefaultOlderThan, MinAge: AutoMinAge, Except: except, Now: now}
	if v := os.Getenv("LIFELINE_RUNS_KEEP"); v != "" {
		n, err := ParseKeep(v)
		if err != nil {
			return p, fmt.Errorf("LIFELINE_RUNS_KEEP: %w", err)
		}
		p.Keep = n
	}
	if v := os.Getenv("LIFELINE_RUNS_OLDER_THAN"); v != "" {
		d, err := ParseAge(v)
		if err != nil {
			return p, fmt.Errorf("LIFELINE_RUNS_OLDER_THAN: %w", err)
		}
		p.OlderThan = d
	}
	return p, nil
}

// ParseKeep parses a run count (0 or more).
func ParseKeep(s string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != strings.TrimSpace(s) {
		return 0, fmt.Errorf("%q is not a count of runs (0 or more)", s)
	}
	return n, nil
}

// ParseAge parses an age: a Go duration (12h, 90m) or days (30d); "0" is
// no limit.
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 && fmt.Sprint(n) == d {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not an age: want days (30d) or a duration (12h, 90m), 0 for no limit", s)
}

// Decision is what a prune does with one run.
type Decision struct {
	Run
	Remove bool   `json:"remove"`
	Why    string `json:"why"`
}

// Select decides, for runs newest first (as ListRuns gives them, with Open
// and Busy filled in for the runs that matter), which a prune removes and
// why. Pure.
func Select(runs []Run, p Policy) []Decision {
	out := make([]Decision, len(runs))
	for i, r := range runs {
		d := Decision{Run: r}
		var why []string
		if p.Keep > 0 && i >= p.Keep {
			why = append(why, fmt.Sprintf("not among the newest %d", p.Keep))
		}
		if p.OlderThan > 0 && p.Now.Sub(r.Start) > p.OlderThan {
			why = append(why, "older than "+FormatAge(p.OlderThan))
		}
		switch {
		case len(why) == 0:
			d.Why = "within the retention"
		case r.ID == p.Except:
			d.Why = "the run being written"
		case r.Open != "":
			d.Why = "open: " + r.Open
		case r.Busy:
			d.Why = "in use by another lifeline process"
		case p.MinAge > 0 && p.Now.Sub(r.Start) < p.MinAge:
			d.Why = "started less than " + FormatAge(p.MinAge) + " ago"
		default:
			d.Remove, d.Why = true, strings.Join(why, ", ")
		}
		out[i] = d
	}
	return out
}

// FormatAge prints an age as ParseAge reads it.
func FormatAge(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// Report is what a prune did (or, dry, would do).
type Report struct {
	DryRun bool `json:"dry_run"`
	// Removed: the runs removed; Protected: runs the policy would remove
	// but that stay, with why.
	Removed   []Decision `json:"removed"`
	Protected []Decision `json:"protected"`
	// Objects, ObjectBytes: unreferenced snapshot objects removed.
	Objects     int   `json:"objects_removed"`
	ObjectBytes int64 `json:"object_bytes_removed"`
	// Freed: every byte removed (runs, objects, leftovers of an
	// interrupted prune).
	Freed int64 `json:"bytes_freed"`
	// SweepSkipped says why unreferenced objects were not swept (another
	// process held the objects lock): the next prune sweeps them.
	SweepSkipped string `json:"sweep_skipped,omitempty"`
}

// testHook, when set, is called at each step of a prune; an error stops
// the prune there, as a crash would.
var testHook func(step, name string) error

func hook(step, name string) error {
	if testHook == nil {
		return nil
	}
	return testHook(step, name)
}

// Prune applies p to the runs under root, then sweeps the objects that no
// remaining run refers to. dry: decide and count, remove nothing. wait:
// how long to wait for the objects lock (writers hold it while they store
// a snapshot); past it the sweep is skipped (Report.SweepSkipped).
func Prune(root string, p Policy, dry bool, wait time.Duration) (*Report, error) {
	rep := &Report{DryRun: dry, Removed: []Decision{}, Protected: []Decision{}}
	runs, err := ListRuns(root)
	if err != nil {
		return rep, err
	}
	// Detail only for the runs the policy would remove.
	pre := Select(runs, Policy{Keep: p.Keep, OlderThan: p.OlderThan, Now: p.Now})
	for i := range runs {
		if pre[i].Remove {
			if err := Inspect(&runs[i], p.Now, true, false); err != nil {
				return rep, err
			}
		}
	}
	removing := map[string]bool{}
	for _, d := range Select(runs, p) {
		switch {
		case d.Remove:
			rep.Removed = append(rep.Removed, d)
			removing[d.ID] = true
		case pre[indexOf(runs, d.ID)].Remove:
			rep.Protected = append(rep.Protected, d)
		}
	}
	trash, _ := filepath.Glob(filepath.Join(root, trashPrefix+"*"))
	if dry {
		for _, d := range rep.Removed {
			rep.Freed += d.Bytes
		}
		for _, t := range trash {
			rep.Freed += dirBytes(t)
		}
		n, b, err := sweep(root, removing, true, wait)
		rep.Objects, rep.ObjectBytes, rep.Freed = n, b, rep.Freed+b
		if errors.Is(err, errObjectsBusy) {
			rep.SweepSkipped = err.Error()
			err = nil
		}
		return rep, err
	}
	// Leftovers of an interrupted prune first: they are already removed
	// runs.
	for _, t := range trash {
		rep.Freed += dirBytes(t)
		if err := os.RemoveAll(t); err != nil {
			return rep, fmt.Errorf("runs: remove %s: %w", t, err)
		}
	}
	kept := rep.Removed[:0]
	for _, d := range rep.Removed {
		ok, err := remove(root, &d)
		if err != nil {
			rep.Removed = kept
			return rep, err
		}
		if !ok {
			rep.Protected = append(rep.Protected, d)
			continue
		}
		rep.Freed += d.Bytes
		kept = append(kept, d)
	}
	rep.Removed = kept
	n, b, err := sweep(root, nil, false, wait)
	rep.Objects, rep.ObjectBytes, rep.Freed = n, b, rep.Freed+b
	if errors.Is(err, errObjectsBusy) {
		rep.SweepSkipped, err = err.Error(), nil
	}
	return rep, err
}

func indexOf(runs []Run, id string) int {
	for i := range runs {
		if runs[i].ID == id {
			return i
		}
	}
	return -1
}

// remove takes the run's lock alone (false: another process holds it),
// renames the run to trash, then removes the trash.
func remove(root string, d *Decision) (bool, error) {
	l, err := flock(filepath.Join(d.Dir, lockFile), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		d.Why, d.Busy = "in use by another lifeline process", true
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("runs: lock %s: %w", d.Dir, err)
	}
	trash := filepath.Join(root, trashPrefix+d.ID)
	err = os.Rename(d.Dir, trash)
	l.Close()
	if err != nil {
		return false, fmt.Errorf("runs: remove %s: %w", d.Dir, err)
	}
	if err := hook("renamed", d.ID); err != nil {
		return false, err
	}
	if err := os.RemoveAll(trash); err != nil {
		return false, fmt.Errorf("runs: remove %s: %w", trash, err)
	}
	return true, hook("removed", d.ID)
}

var errObjectsBusy = errors.New("another lifeline process is storing snapshots: unreferenced objects are left for the next prune")

// sweep removes (dry: counts) the objects that no run under root refers
// to, the runs in skip aside (dry: the runs a prune would remove). It
// reads every ref before it removes anything, under the objects lock
// (exclusive), and stops without removing anything when a ref cannot be
// read: it cannot know what that one refers to.
func sweep(root string, skip map[string]bool, dry bool, wait time.Duration) (int, int64, error) {
	objs := filepath.Join(root, ObjectsDir)
	if _, err := os.Stat(objs); errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	var l *Lock
	deadline := time.Now().Add(wait)
	for {
		var err error
		l, err = flock(filepath.Join(objs, lockFile), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return 0, 0, fmt.Errorf("runs: lock %s: %w", objs, err)
		}
		if time.Now().After(deadline) {
			return 0, 0, errObjectsBusy
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer l.Close()
	marked, err := mark(root, skip)
	if err != nil {
		return 0, 0, err
	}
	ents, err := os.ReadDir(objs)
	if err != nil {
		return 0, 0, fmt.Errorf("runs: %w", err)
	}
	n, bytes := 0, int64(0)
	for _, e := range ents {
		name := e.Name()
		sha, ok := strings.CutSuffix(name, ".json")
		if !ok || len(sha) != 64 || marked[sha] {
			continue // the lock, a writer's temporary file, or referenced
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if !dry {
			if err := os.Remove(filepath.Join(objs, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, bytes, fmt.Errorf("runs: remove %s: %w", name, err)
			}
			if err := hook("swept", sha); err != nil {
				return n + 1, bytes + info.Size(), err
			}
		}
		n++
		bytes += info.Size()
	}
	return n, bytes, nil
}

// mark reads every ref of every folder under root (any folder but objects
// and trash, run id or not, so that nothing a folder refers to is swept).
func mark(root string, skip map[string]bool) (map[string]bool, error) {
	marked := map[string]bool{}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("runs: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == ObjectsDir || strings.HasPrefix(e.Name(), trashPrefix) || skip[e.Name()] {
			continue
		}
		refs, err := filepath.Glob(filepath.Join(root, e.Name(), "hosts", "*"+refSuffix))
		if err != nil {
			return nil, err
		}
		for _, p := range refs {
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // its run was removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("runs: read %s: %w; nothing swept", p, err)
			}
			r, err := parseRef(bytes.TrimSpace(b))
			if err != nil {
				return nil, fmt.Errorf("runs: %s: %w; nothing swept", p, err)
			}
			marked[r.SHA] = true
		}
	}
	return marked, nil
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// Usage is the size of the run store.
type Usage struct {
	Dir         string `json:"dir"`
	Runs        int    `json:"runs"`
	RunBytes    int64  `json:"run_bytes"`
	Objects     int    `json:"objects"`
	ObjectBytes int64  `json:"object_bytes"`
	Bytes       int64  `json:"bytes"` // everything under Dir
}

// Measure sums the runs' and the objects' sizes.
func Measure(root string, runs []Run) Usage {
	u := Usage{Dir: root, Runs: len(runs)}
	for _, r := range runs {
		u.RunBytes += r.Bytes
	}
	if ents, err := os.ReadDir(filepath.Join(root, ObjectsDir)); err == nil {
		for _, e := range ents {
			if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".json") {
				u.Objects++
				u.ObjectBytes += info.Size()
			}
		}
	}
	u.Bytes = dirBytes(root)
	return u
}

// FormatBytes prints a size for a person (1.2 MiB).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
