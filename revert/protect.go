package revert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// The protect set beyond the firewall: files a change may touch (sshd's
// config, a netplan file) that begin snapshots and every revert restores,
// and commands every revert runs after them (to make a restored file take
// effect). Kept in the tx folder as protect.json (0600).

const protectFile = "protect.json"

// onRevertTimeout bounds each on-revert command.
const onRevertTimeout = time.Minute

// protectedFile is one file as begin found it.
type protectedFile struct {
	Path   string      `json:"path"`
	Exists bool        `json:"exists"`
	Mode   fs.FileMode `json:"mode,omitempty"`
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
	Data   []byte      `json:"data,omitempty"`
}

type protectSet struct {
	Files    []protectedFile `json:"files,omitempty"`
	OnRevert []string        `json:"on_revert,omitempty"`
}

func (p *protectSet) empty() bool { return p == nil || len(p.Files) == 0 && len(p.OnRevert) == 0 }

func (p *protectSet) size() int64 {
	if p == nil {
		return 0
	}
	var n int64
	for _, f := range p.Files {
		n += 2*int64(len(f.Data)) + 256 // base64 in JSON
	}
	return n
}

// snapshotFiles reads each path: a regular file's content, mode and
// owner, or that it does not exist. A symlink, a folder or a file larger
// than MaxProtectSize is refused: restoring those is not what the
// operator means.
func snapshotFiles(paths []string) ([]protectedFile, error) {
	var out []protectedFile
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, protectedFile{Path: p})
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			dst, _ := os.Readlink(p)
			return nil, fmt.Errorf("protect %s: it is a symlink to %s: protect the file it points to", p, dst)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("protect %s: not a regular file (%s)", p, fi.Mode().Type())
		case fi.Size() > MaxProtectSize:
			return nil, fmt.Errorf("protect %s: %d bytes, more than the %d a protected file may have", p, fi.Size(), MaxProtectSize)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pf := protectedFile{Path: p, Exists: true, Mode: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), Data: data}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			pf.UID, pf.GID = int(st.Uid), int(st.Gid)
		}
		out = append(out, pf)
	}
	return out, nil
}

func (s *store) saveProtect(id string, p *protectSet) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.path(id, protectFile), b, 0o600)
}

// loadProtect is the tx's protect set; nil when it has none.
func (s *store) loadProtect(id string) (*protectSet, error) {
	b, err := readTrusted(s.path(id, protectFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p protectSet
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path(id, protectFile), err)
	}
	return &p, nil
}

// restoreFiles puts every protected file back as begin found it, each
// atomically (a file that did not exist is removed), and checks it.
// Idempotent.
func restoreFiles(files []protectedFile) []error {
	var errs []error
	for _, f := range files {
		if !f.Exists {
			if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s (it did not exist at begin): %w", f.Path, err))
			}
			continue
		}
		if fi, err := os.Lstat(f.Path); err == nil && fi.IsDir() {
			errs = append(errs, fmt.Errorf("restore %s: a folder is there now", f.Path))
			continue
		}
		if err := writeAtomic(f.Path, f.Data, f.Mode); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", f.Path, err))
			continue
		}
		if err := os.Lchown(f.Path, f.UID, f.GID); err != nil {
			errs = append(errs, fmt.Errorf("restore the owner of %s: %w", f.Path, err))
		}
		if got, err := os.ReadFile(f.Path); err != nil || !bytes.Equal(got, f.Data) {
			errs = append(errs, fmt.Errorf("restore %s: it does not read back as it was (%v)", f.Path, err))
		}
	}
	return errs
}

// runOnRevert runs each on-revert command (sh -c, bounded), logging its
// output; a failure is logged and does not stop the next one.
func (e *engine) runOnRevert(ctx context.Context, id string, cmds []string) {
	for _, c := range cmds {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), onRevertTimeout)
		cmd := exec.CommandContext(cctx, "/bin/sh", "-c", c)
		cmd.Dir = "/"
		cmd.WaitDelay = 2 * time.Second
		var outb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &outb, &outb
		err := runCounted(cmd)
		out := outb.Bytes()
		cancel()
		level, status := "info", "ok"
		if err != nil {
			level, status = "warning", err.Error()
		}
		e.logf(id, level, "on-revert %q: %s; output:\n%s", c, status, truncateLines(string(out), 40))
	}
}

// changedFiles names the protected files of tx id that no longer are as
// begin found them (none when it protects no file, or they cannot be read).
func (e *engine) changedFiles(id string) []string {
	ps, err := e.st.loadProtect(id)
	if err != nil || ps == nil {
		return nil
	}
	var out []string
	for _, f := range ps.Files {
		data, err := os.ReadFile(f.Path)
		switch {
		case !f.Exists && errors.Is(err, fs.ErrNotExist):
		case f.Exists && err == nil && bytes.Equal(data, f.Data):
		default:
			out = append(out, f.Path)
		}
	}
	return out
}

// changes is what differs in tx r from its snapshot: the firewall's diff,
// then the protected files that changed.
func (e *engine) changes(ctx context.Context, r *txRecord) string {
	var out string
	if snap, err := e.st.loadSnapshot(r.ID); err == nil {
		if eq, diff, err := e.fw.Equal(ctx, snap); err == nil && !eq {
			out = reverseDiff(diff)
		}
	}
	for _, p := range e.changedFiles(r.ID) {
		out += "changed: " + p + "\n"
	}
	return out
}
