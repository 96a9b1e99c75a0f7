// Package history is lifeline's local record of each host's firewall
// state: one folder per host under $XDG_STATE_HOME/lifeline/history (or
// ~/.local/state/lifeline/history), holding the states seen, stored by
// content (the sha256 of ruleset.Canonical: an unchanged host is stored
// once however often it is read), and an append-only index of when each
// was seen, by whom, and from which transaction.
//
//	history/HOST/objects/SHA256.json   one state (the counter-free model)
//	history/HOST/index.jsonl           one Entry per line, oldest first
//
// `lifeline snapshot` records what it reads; apply, exec and shell record
// the state after each confirm (Kind confirmed, with the tx id). diff and
// drift compare the live state with an entry.
package history

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dev/lifeline/ruleset"
)

// Entry kinds.
const (
	KindSnapshot  = "snapshot"  // lifeline snapshot
	KindConfirmed = "confirmed" // the state right after a confirmed transaction
)

// Entry is one sighting of a state.
type Entry struct {
	// ID is the first 12 hex digits of SHA: how commands name it.
	ID       string    `json:"id"`
	SHA      string    `json:"sha256"`
	Time     time.Time `json:"time"`               // workstation clock, UTC
	HostTime time.Time `json:"host_time,omitzero"` // the host's clock when it listed the state
	Who      string    `json:"who"`                // user@workstation run ID
	Kind     string    `json:"kind"`
	TxID     string    `json:"tx_id,omitempty"`
	Tables   int       `json:"tables"`
	Rules    int       `json:"rules"`
}

// Store is the history folder.
type Store struct {
	Dir string
	mu  sync.Mutex // serialises index appends of this process
}

// ErrNotFound: no entry matches.
var ErrNotFound = errors.New("not in the history")

// DefaultDir is $XDG_STATE_HOME/lifeline/history, or
// ~/.local/state/lifeline/history.
func DefaultDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("history: no home folder: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "lifeline", "history"), nil
}

// Open returns the store at dir.
func Open(dir string) *Store { return &Store{Dir: dir} }

func (s *Store) hostDir(hostFile string) string { return filepath.Join(s.Dir, hostFile) }

// Address is the content address of a state.
func Address(rs *ruleset.Ruleset) string {
	sum := sha256.Sum256(rs.Canonical())
	return hex.EncodeToString(sum[:])
}

// Record stores rs for the host (hostFile: the host's name made safe for a
// file name, session.HostFile) and appends e to its index, with ID, SHA,
// Tables and Rules filled in. An object already stored is not written
// again (stored false). A snapshot equal to the host's latest entry adds
// no entry (appended false): the history lists changes, not reads; a
// confirmed transaction's entry is always added, it names the tx.
func (s *Store) Record(hostFile string, rs *ruleset.Ruleset, e Entry) (out Entry, stored, appended bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.SHA = Address(rs)
	e.ID = e.SHA[:12]
	e.Tables, e.Rules = count(rs)
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	dir := s.hostDir(hostFile)
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o700); err != nil {
		return e, false, false, fmt.Errorf("history: %w", err)
	}
	obj := filepath.Join(dir, "objects", e.SHA+".json")
	if _, err := os.Stat(obj); errors.Is(err, os.ErrNotExist) {
		b, err := json.Marshal(rs.Strip())
		if err != nil {
			return e, false, false, fmt.Errorf("history: %w", err)
		}
		if err := writeFileAtomic(obj, b); err != nil {
			return e, false, false, fmt.Errorf("history: %w", err)
		}
		stored = true
	} else if err != nil {
		return e, false, false, fmt.Errorf("history: %w", err)
	}
	if e.Kind == KindSnapshot {
		if es, err := s.list(dir); err == nil && len(es) > 0 && es[len(es)-1].SHA == e.SHA {
			return es[len(es)-1], stored, false, nil
		}
	}
	line, err := json.Marshal(e)
	if err != nil {
		return e, stored, false, fmt.Errorf("history: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "index.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return e, stored, false, fmt.Errorf("history: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return e, stored, false, fmt.Errorf("history: %w", err)
	}
	if err := f.Close(); err != nil {
		return e, stored, false, fmt.Errorf("history: %w", err)
	}
	return e, stored, true, nil
}

func count(rs *ruleset.Ruleset) (tables, rules int) {
	for _, t := range rs.Tables {
		tables++
		for _, c := range t.Chains {
			rules += len(c.Rules)
		}
	}
	return tables, rules
}

// List returns the host's entries, oldest first (none: an empty list).
func (s *Store) List(hostFile string) ([]Entry, error) {
	return s.list(s.hostDir(hostFile))
}

func (s *Store) list(dir string) ([]Entry, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var es []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// a torn last line (a crash mid-append) loses that entry only
			continue
		}
		es = append(es, e)
	}
	return es, nil
}

// Find resolves ref among the host's entries: "" or "latest" (the newest),
// "confirmed" (the newest KindConfirmed), or a prefix of at least 4 hex
// digits of an entry's SHA (the newest such entry; two different states
// sharing the prefix is an error naming both).
func (s *Store) Find(hostFile, ref string) (Entry, error) {
	es, err := s.List(hostFile)
	if err != nil {
		return Entry{}, err
	}
	ref = strings.ToLower(strings.TrimSpace(ref))
	switch ref {
	case "", "latest":
		if len(es) == 0 {
			return Entry{}, fmt.Errorf("no entry: %w", ErrNotFound)
		}
		return es[len(es)-1], nil
	case KindConfirmed:
		for i := len(es) - 1; i >= 0; i-- {
			if es[i].Kind == KindConfirmed {
				return es[i], nil
			}
		}
		return Entry{}, fmt.Errorf("no confirmed transaction recorded: %w", ErrNotFound)
	}
	if len(ref) < 4 || strings.Trim(ref, "0123456789abcdef") != "" {
		return Entry{}, fmt.Errorf("%q is not a snapshot id (4 to 64 hex digits, latest or confirmed): %w", ref, ErrNotFound)
	}
	var found *Entry
	for i := len(es) - 1; i >= 0; i-- {
		if strings.HasPrefix(es[i].SHA, ref) {
			if found != nil && found.SHA != es[i].SHA {
				return Entry{}, fmt.Errorf("snapshot id %s is ambiguous: %s and %s; give more digits", ref, found.ID, es[i].ID)
			}
			if found == nil {
				found = &es[i]
			}
		}
	}
	if found == nil {
		return Entry{}, fmt.Errorf("snapshot %s: %w", ref, ErrNotFound)
	}
	return *found, nil
}

// Load returns the state an entry names, checking its content address.
func (s *Store) Load(hostFile string, e Entry) (*ruleset.Ruleset, error) {
	b, err := os.ReadFile(filepath.Join(s.hostDir(hostFile), "objects", e.SHA+".json"))
	if err != nil {
		return nil, fmt.Errorf("history: snapshot %s: %w", e.ID, err)
	}
	rs := &ruleset.Ruleset{}
	if err := json.Unmarshal(b, rs); err != nil {
		return nil, fmt.Errorf("history: snapshot %s is corrupt: %w", e.ID, err)
	}
	if got := Address(rs); got != e.SHA {
		return nil, fmt.Errorf("history: snapshot %s is corrupt: its content hashes to %s", e.ID, got[:12])
	}
	return rs, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
