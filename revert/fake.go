package revert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// FakeFirewall is a stateful model of a host's firewall for tests: it keeps
// one live ruleset text per format, refuses a configured bad line like a
// trial load would, can fail an apply part-way or a restore, and counts
// calls. With Path set, its state lives in a JSON file that is read before
// and written after every call, so separate helper processes share one
// "kernel" (see OpenFakeFirewall).
//
// It is safe for concurrent use within one process.
type FakeFirewall struct {
	mu   sync.Mutex
	Path string    // optional state file
	S    FakeState // the model; tests may read and set it between calls
	// Hook runs before every call with the method's name (tests use it to
	// simulate a crash by panicking). Not persisted.
	Hook func(method string)
}

// FakeState is the FakeFirewall's model.
type FakeState struct {
	Backends []string `json:"backends"`
	// ValidateDelay: Validate takes this long (a slow trial load).
	ValidateDelay time.Duration     `json:"validate_delay,omitempty"`
	Live          map[Format]string `json:"live"`
	Guard         *Guard            `json:"guard,omitempty"`
	// BadLine: a ruleset with a line containing it fails Validate (and
	// Apply, which then leaves the lines before it applied: a partial apply).
	BadLine string `json:"bad_line,omitempty"`
	// FailApply: the next Apply applies the first half of the lines, then
	// fails (like iptables-restore failing after a COMMIT).
	FailApply bool `json:"fail_apply,omitempty"`
	// FailRestores: the next N Restores fail without changing anything.
	FailRestores int `json:"fail_restores,omitempty"`
	// Unrestorable: ValidateSnapshot refuses every snapshot.
	Unrestorable bool `json:"unrestorable,omitempty"`
	// Uncoverable: a ruleset with a line containing it has a chain the
	// guard cannot cover (GuardPlan reports it Uncovered).
	Uncoverable string `json:"uncoverable,omitempty"`
	// FailGuards: the next N InstallGuard/RemoveGuard/RefreshGuard calls
	// fail without changing anything.
	FailGuards int `json:"fail_guards,omitempty"`
	// GuardWallClock: the guard plans cover an iptables chain whose guard
	// opens by the wall clock (-m time), not an nft one (a countdown).
	GuardWallClock bool              `json:"guard_wall_clock,omitempty"`
	Persisted      map[Format]string `json:"persisted,omitempty"`
	Calls          map[string]int    `json:"calls,omitempty"`
}

var _ Firewall = (*FakeFirewall)(nil)

// NewFakeFirewall returns a fake with every backend and the given live
// rulesets.
func NewFakeFirewall(live map[Format]string) *FakeFirewall {
	f := &FakeFirewall{S: FakeState{
		Backends: []string{"nft", "iptables-nft", "ip6tables-nft"},
		Live:     map[Format]string{},
	}}
	for k, v := range live {
		f.S.Live[k] = v
	}
	return f
}

// OpenFakeFirewall returns a fake whose state lives in path (created with
// NewFakeFirewall's defaults when missing).
func OpenFakeFirewall(path string) *FakeFirewall {
	f := NewFakeFirewall(nil)
	f.Path = path
	return f
}

// SaveState writes the fake's state to its Path.
func (f *FakeFirewall) SaveState() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saveLocked()
}

func (f *FakeFirewall) saveLocked() error {
	if f.Path == "" {
		return nil
	}
	b, err := json.MarshalIndent(f.S, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(f.Path, b, 0o600)
}

// call loads the state, counts the call, runs fn and, for a method that
// changes the "kernel" (Apply, Restore, Persist, the guard operations),
// saves the state. Read-only
// calls do not save, so a concurrent reader process never overwrites a
// writer's change (their counts are then not persisted).
func (f *FakeFirewall) call(name string, fn func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Path != "" {
		b, err := os.ReadFile(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("fake firewall: %w", err)
		default:
			var s FakeState
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("fake firewall: %s: %w", f.Path, err)
			}
			f.S = s
		}
	}
	if f.Hook != nil {
		f.Hook(name)
	}
	if f.S.Calls == nil {
		f.S.Calls = map[string]int{}
	}
	if f.S.Live == nil {
		f.S.Live = map[Format]string{}
	}
	f.S.Calls[name]++
	err := fn()
	switch name {
	case "Apply", "Restore", "Persist", "InstallGuard", "RemoveGuard", "RefreshGuard":
	default:
		return err
	}
	if serr := f.saveLocked(); serr != nil {
		return errors.Join(err, fmt.Errorf("fake firewall: %w", serr))
	}
	return err
}

func (f *FakeFirewall) badLine(ruleset string) (int, string) {
	if f.S.BadLine == "" {
		return 0, ""
	}
	for i, l := range strings.Split(ruleset, "\n") {
		if strings.Contains(l, f.S.BadLine) {
			return i + 1, l
		}
	}
	return 0, ""
}

func (f *FakeFirewall) Detect(ctx context.Context) (*Detect, error) {
	var d *Detect
	err := f.call("Detect", func() error {
		d = &Detect{Backends: slices.Clone(f.S.Backends)}
		for _, fm := range fakeFormats(f.S.Live) {
			if f.S.Live[fm] != "" {
				d.Active = append(d.Active, fakeBackend(fm))
			}
		}
		return nil
	})
	return d, err
}

func fakeBackend(fm Format) string {
	switch fm {
	case FormatIPTables:
		return "iptables-nft"
	case FormatIP6Tables:
		return "ip6tables-nft"
	}
	return string(fm)
}

func fakeFormats(m map[Format]string) []Format {
	var fs []Format
	for k := range m {
		fs = append(fs, k)
	}
	slices.Sort(fs)
	return fs
}

func (f *FakeFirewall) Snapshot(ctx context.Context) (*Snapshot, error) {
	var s *Snapshot
	err := f.call("Snapshot", func() error {
		s = &Snapshot{}
		for _, fm := range fakeFormats(f.S.Live) {
			s.Parts = append(s.Parts, Part{Backend: fakeBackend(fm), Format: fm, Text: f.S.Live[fm]})
		}
		return nil
	})
	return s, err
}

// ReadState lists the fake's iptables families as iptables-save text
// (nft's JSON it cannot produce: an nft family is listed as its text with
// Format "nft", which the workstation's model refuses).
func (f *FakeFirewall) ReadState(ctx context.Context, candidate *RulesetChange, zero bool) (*StateReport, error) {
	var r *StateReport
	err := f.call("ReadState", func() error {
		r = &StateReport{}
		for _, fm := range fakeFormats(f.S.Live) {
			format := string(fm)
			if fm == FormatIPTables || fm == FormatIP6Tables {
				format = StateIptablesSave
			}
			r.Parts = append(r.Parts, StatePart{Source: fakeBackend(fm), Format: format, Text: f.S.Live[fm]})
			if f.S.Live[fm] != "" {
				r.Facts.Active = append(r.Facts.Active, fakeBackend(fm))
			}
		}
		if candidate != nil {
			if line, text := f.badLine(candidate.Text); line > 0 {
				return &Error{Code: CodeInvalidRuleset, Message: "fake: bad line", Line: line, Text: text}
			}
			r.Candidate = []StatePart{{Source: fakeBackend(candidate.Format), Format: StateIptablesSave, Text: candidate.Text}}
		}
		return nil
	})
	return r, err
}

func (f *FakeFirewall) Validate(ctx context.Context, format Format, ruleset string) error {
	return f.call("Validate", func() error {
		time.Sleep(f.S.ValidateDelay)
		if n, l := f.badLine(ruleset); n > 0 {
			return &Error{Code: CodeInvalidRuleset, Message: "trial load failed", Line: n, Text: l}
		}
		return nil
	})
}

// GuardPlan covers "inet filter input", and reports "netdev t ing" as
// uncovered when the ruleset holds S.Uncoverable.
func (f *FakeFirewall) GuardPlan(ctx context.Context, format Format, ruleset string, op Operator) (*GuardPlan, error) {
	p := &GuardPlan{Covered: []GuardChain{f.guardChain()}}
	err := f.call("GuardPlan", func() error {
		if f.S.Uncoverable != "" && strings.Contains(ruleset, f.S.Uncoverable) {
			p.Uncovered = append(p.Uncovered, GuardChain{Family: "netdev", Table: "t", Chain: "ing", Hook: "ingress", Reason: "fake: uncoverable"})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// LiveGuardPlan covers "inet filter input", and reports "netdev t ing" as
// uncovered when a live ruleset holds S.Uncoverable.
func (f *FakeFirewall) LiveGuardPlan(ctx context.Context, op Operator) (*GuardPlan, error) {
	p := &GuardPlan{Covered: []GuardChain{f.guardChain()}}
	err := f.call("LiveGuardPlan", func() error {
		for _, fm := range fakeFormats(f.S.Live) {
			if f.S.Uncoverable != "" && strings.Contains(f.S.Live[fm], f.S.Uncoverable) {
				p.Uncovered = append(p.Uncovered, GuardChain{Family: "netdev", Table: "t", Chain: "ing", Hook: "ingress", Reason: "fake: uncoverable"})
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// guardChain is the one chain the fake's guard plans cover.
func (f *FakeFirewall) guardChain() GuardChain {
	if f.S.GuardWallClock {
		return GuardChain{Family: "iptables", Table: "filter", Chain: "INPUT", Hook: "input", WallClock: true}
	}
	return GuardChain{Family: "inet", Table: "filter", Chain: "input", Hook: "input", Type: "filter"}
}

// failGuard consumes one S.FailGuards.
func (f *FakeFirewall) failGuard(op string) error {
	if f.S.FailGuards > 0 {
		f.S.FailGuards--
		return fmt.Errorf("fake: %s failed", op)
	}
	return nil
}

// InstallGuard records g as the live guard (S.Guard); the live rulesets
// stay as they are.
func (f *FakeFirewall) InstallGuard(ctx context.Context, g *Guard) error {
	return f.call("InstallGuard", func() error {
		if g == nil || g.TxID == "" {
			return errors.New("fake: guard without a transaction id")
		}
		if err := f.failGuard("install guard"); err != nil {
			return err
		}
		if f.S.Guard != nil && f.S.Guard.TxID != g.TxID {
			return fmt.Errorf("fake: guard of %s is live, cannot install one for %s", f.S.Guard.TxID, g.TxID)
		}
		c := *g
		f.S.Guard = &c
		return nil
	})
}

// RemoveGuard clears S.Guard when it is txID's; nil when there is none.
func (f *FakeFirewall) RemoveGuard(ctx context.Context, txID string) error {
	return f.call("RemoveGuard", func() error {
		if err := f.failGuard("remove guard"); err != nil {
			return err
		}
		if f.S.Guard != nil && f.S.Guard.TxID == txID {
			f.S.Guard = nil
		}
		return nil
	})
}

// RefreshGuard replaces txID's guard (or installs one) with g.
func (f *FakeFirewall) RefreshGuard(ctx context.Context, g *Guard) error {
	return f.call("RefreshGuard", func() error {
		if g == nil || g.TxID == "" {
			return errors.New("fake: guard without a transaction id")
		}
		if err := f.failGuard("refresh guard"); err != nil {
			return err
		}
		if f.S.Guard != nil && f.S.Guard.TxID != g.TxID {
			return fmt.Errorf("fake: guard of %s is live, cannot refresh one for %s", f.S.Guard.TxID, g.TxID)
		}
		c := *g
		f.S.Guard = &c
		return nil
	})
}

func (f *FakeFirewall) ValidateSnapshot(ctx context.Context, s *Snapshot) error {
	return f.call("ValidateSnapshot", func() error {
		if f.S.Unrestorable {
			return errors.New("fake: snapshot does not load")
		}
		return nil
	})
}

func (f *FakeFirewall) Apply(ctx context.Context, format Format, ruleset string, guard *Guard) error {
	return f.call("Apply", func() error {
		lines := strings.Split(ruleset, "\n")
		if n, _ := f.badLine(ruleset); n > 0 {
			f.S.Live[format] = strings.Join(lines[:n-1], "\n")
			return fmt.Errorf("fake: line %d rejected after the lines before it were applied", n)
		}
		if f.S.FailApply {
			f.S.FailApply = false
			f.S.Live[format] = strings.Join(lines[:len(lines)/2], "\n")
			return errors.New("fake: apply failed part-way")
		}
		f.S.Live[format] = ruleset
		if guard != nil {
			g := *guard
			f.S.Guard = &g
		} else {
			f.S.Guard = nil
		}
		return nil
	})
}

func (f *FakeFirewall) Restore(ctx context.Context, s *Snapshot) error {
	return f.call("Restore", func() error {
		if f.S.FailRestores > 0 {
			f.S.FailRestores--
			return errors.New("fake: restore failed")
		}
		f.S.Live = map[Format]string{}
		for _, p := range s.Parts {
			f.S.Live[p.Format] = p.Text
		}
		f.S.Guard = nil
		return nil
	})
}

func (f *FakeFirewall) Equal(ctx context.Context, s *Snapshot) (bool, string, error) {
	var eq bool
	var diff string
	err := f.call("Equal", func() error {
		want := map[Format]string{}
		for _, p := range s.Parts {
			want[p.Format] = p.Text
		}
		var b strings.Builder
		for _, fm := range fakeFormats(fakeKeys(want, f.S.Live)) {
			if want[fm] != f.S.Live[fm] {
				b.WriteString(fakeDiff(string(fm), f.S.Live[fm], want[fm]))
			}
		}
		if f.S.Guard != nil {
			b.WriteString("guard " + f.S.Guard.TxID + " still installed\n")
		}
		diff = b.String()
		eq = diff == ""
		return nil
	})
	return eq, diff, err
}

func fakeKeys(a, b map[Format]string) map[Format]string {
	m := map[Format]string{}
	for k := range a {
		m[k] = ""
	}
	for k := range b {
		m[k] = ""
	}
	return m
}

func (f *FakeFirewall) Contains(ctx context.Context, format Format, ruleset string) (bool, string, error) {
	var ok bool
	var diff string
	err := f.call("Contains", func() error {
		ok = f.S.Live[format] == ruleset
		if !ok {
			diff = fakeDiff(string(format), f.S.Live[format], ruleset)
		}
		return nil
	})
	return ok, diff, err
}

func (f *FakeFirewall) Diff(ctx context.Context, format Format, ruleset string) (string, error) {
	var diff string
	err := f.call("Diff", func() error {
		if f.S.Live[format] != ruleset {
			diff = fakeDiff(string(format), f.S.Live[format], ruleset)
		}
		return nil
	})
	return diff, err
}

func (f *FakeFirewall) Persist(ctx context.Context, format Format, ruleset string) ([]string, error) {
	var files []string
	err := f.call("Persist", func() error {
		if f.S.Persisted == nil {
			f.S.Persisted = map[Format]string{}
		}
		f.S.Persisted[format] = ruleset
		files = []string{"/etc/fake/" + string(format)}
		return nil
	})
	return files, err
}

func (f *FakeFirewall) BootEqual(ctx context.Context, format Format) (bool, string, error) {
	var eq bool
	var diff string
	err := f.call("BootEqual", func() error {
		boot, ok := f.S.Persisted[format]
		if !ok {
			return ErrNoBootConfig
		}
		eq = boot == f.S.Live[format]
		if !eq {
			diff = fakeDiff(string(format), f.S.Live[format], boot)
		}
		return nil
	})
	return eq, diff, err
}

// fakeDiff is a minimal diff: lines only in from, then lines only in to.
func fakeDiff(name, from, to string) string {
	a, b := strings.Split(from, "\n"), strings.Split(to, "\n")
	var out strings.Builder
	fmt.Fprintf(&out, "--- live %s\n+++ wanted %s\n", name, name)
	for _, l := range a {
		if !slices.Contains(b, l) {
			out.WriteString("-" + l + "\n")
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			out.WriteString("+" + l + "\n")
		}
	}
	return out.String()
}
