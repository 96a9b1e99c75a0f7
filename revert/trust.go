package revert

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Trust: the helper runs as root and acts on what it finds in the state
// folder (records, snapshots, rulesets, the current pointer) and in its
// own folder. Anything another user could have written there is never
// acted on. The rule, for every folder and file the engine reads:
//
//   - it is not a symlink, and is a directory (folders) or a regular file;
//   - it is owned by root, or by the user the helper runs as;
//   - it has no write bit for group or others.
//
// Repair: the state folder, its tx root and the helper folder are
// tightened to 0700 when they are root's own and only their mode is too
// open. That is safe because every file the engine later reads from them
// is checked again by the rule above: what another user may have put there
// in the meantime is theirs and is refused, and the helper checks its own
// file and hash. Anything else (a symlink, another owner, a tx folder or
// record writable by others) is refused with CodeUnsafePath naming the
// path: the operator decides what it holds.

// trustReason says why fi (the Lstat of a path) cannot be trusted, "" when
// it can; modeOnly is true when only the group/other write bits are wrong.
func trustReason(fi fs.FileInfo, dir bool) (why string, modeOnly bool) {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "is a symlink", false
	case dir && !fi.IsDir():
		return "is not a directory", false
	case !dir && !fi.Mode().IsRegular():
		return "is not a regular file", false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("is owned by uid %d, not root", st.Uid), false
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Sprintf("is writable by group or others (mode %04o)", perm), true
	}
	return "", false
}

// unsafePath is the refusal for path.
func unsafePath(path, why string) *Error {
	return &Error{Code: CodeUnsafePath, Message: fmt.Sprintf(
		"%s %s: lifeline does not act on what another user could have written; nothing was done", path, why)}
}

// SecureDir checks the folder dir by the trust rule, repairing a folder
// that is root's own but too open (chmod 0700; repaired says so). It
// returns an error wrapping fs.ErrNotExist when dir does not exist, and an
// *Error with CodeUnsafePath for anything it will not repair.
func SecureDir(dir string) (repaired string, err error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	why, modeOnly := trustReason(fi, true)
	switch {
	case why == "":
		return "", nil
	case !modeOnly:
		return "", unsafePath(dir, why)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("repair %s (%s): %w", dir, why, err)
	}
	return fmt.Sprintf("%s %s: repaired (chmod 0700)", dir, why), nil
}

// trustedDir checks a folder without repairing it (tx folders).
func trustedDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if why, _ := trustReason(fi, true); why != "" {
		return unsafePath(dir, why)
	}
	return nil
}

// readTrusted reads a file the engine acts on: the file and its folder
// must pass the trust rule (never repaired). A missing file is an error
// wrapping fs.ErrNotExist, as with os.ReadFile.
func readTrusted(path string) ([]byte, error) {
	if err := trustedDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, unsafePath(path, "is a symlink")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if why, _ := trustReason(fi, false); why != "" {
		return nil, unsafePath(path, why)
	}
	return io.ReadAll(f)
}

// secure checks the state folder and its tx root (when they exist) by the
// trust rule, repairing a too-open mode; it returns what it repaired.
func (s store) secure() ([]string, error) {
	var fixed []string
	for _, d := range []string{s.dir, s.txRoot()} {
		w, err := SecureDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fixed, err
		}
		if w != "" {
			fixed = append(fixed, w)
		}
	}
	return fixed, nil
}
