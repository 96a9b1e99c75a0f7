package revert

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"
)

// Persist writes what the kernel holds now for format's family (not the
// operator's file: that could be empty, or hold text the tools read
// differently) where the boot-time loader reads it (the backend's bootPath
// and bootText), and keeps the previous boot file beside it as
// FILE.lifeline.bak. It returns the file written and the backup, when there
// was a previous file. ruleset only tells the engine's fakes what was
// confirmed; the host's tools are the truth.
func (f *hostFirewall) Persist(ctx context.Context, format Format, ruleset string) ([]string, error) {
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return nil, fmt.Errorf("persist: %w", err)
	}
	path := b.bootPath()
	text, mode, err := b.bootText(ctx)
	if err != nil {
		return nil, fmt.Errorf("persist: %w", err)
	}
	full := filepath.Join(f.root(), path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return nil, fmt.Errorf("persist %s: %w", path, err)
	}
	written := []string{path}
	if st, err := os.Stat(full); err == nil {
		mode = st.Mode().Perm()
		old, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("persist %s: keep previous file: %w", path, err)
		}
		if err := writeAtomic(full+".lifeline.bak", old, mode); err != nil {
			return nil, fmt.Errorf("persist %s: keep previous file: %w", path, err)
		}
		written = append(written, path+".lifeline.bak")
	}
	if err := writeAtomic(full, []byte(text), mode); err != nil {
		return nil, fmt.Errorf("persist %s: %w", path, err)
	}
	return written, nil
}

// withoutForeign drops from iptables-save output the declarations and rules
// of foreign chains and the rules that jump into them.
func withoutForeign(save string, isForeign func(string) bool) string {
	var b strings.Builder
	for _, l := range splitLines(save) {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, ":") {
			if f := strings.Fields(t[1:]); len(f) > 0 && isForeign(f[0]) {
				continue
			}
		} else if strings.HasPrefix(t, "-") && (isForeign(ruleChain(t)) || isForeign(ruleTarget(t))) {
			continue
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// writeAtomic replaces path with data (mode, umask ignored) atomically
// (github.com/google/renameio/v2: a temporary file in the same directory,
// fsynced, renamed over path), then fsyncs the directory so that the
// rename itself survives a crash (renameio v2.0.2 does not).
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	// not renameio.WriteFile: it would keep an existing file's mode
	t, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(mode))
	if err != nil {
		return err
	}
	defer t.Cleanup()
	if _, err := t.Write(data); err != nil {
		return err
	}
	if err := t.CloseAtomicallyReplace(); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// root is the file system root persist and boot configs are under.
func (f *hostFirewall) root() string {
	if f.opts.Root == "" {
		return "/"
	}
	return f.opts.Root
}

// BootEqual trial-loads the boot config into a scratch namespace and
// compares what it leaves with the live tables it declares (nft: every
// native table, as the boot file replaces them all).
func (f *hostFirewall) BootEqual(ctx context.Context, format Format) (bool, string, error) {
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return false, "", fmt.Errorf("boot config: %w", err)
	}
	path := b.bootPath()
	text, err := os.ReadFile(filepath.Join(f.root(), path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", fmt.Errorf("%s: %w", path, ErrNoBootConfig)
	}
	if err != nil {
		return false, "", err
	}
	got, live, order, err := b.applied(ctx, string(text), false)
	if err != nil {
		return false, "", fmt.Errorf("load boot config %s: %w", path, err)
	}
	var x, y strings.Builder
	for _, k := range order {
		if _, inBoot := got[k]; inBoot || b.bootCoversAll() {
			x.WriteString(live[k])
			y.WriteString(got[k])
		}
	}
	d := unifiedDiff("live", path, x.String(), y.String())
	return d == "", d, nil
}
