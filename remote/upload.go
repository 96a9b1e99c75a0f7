package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/shquote"
	"github.com/pkg/sftp"
)

// ChecksumError is an upload whose sha256 on the host differs.
type ChecksumError struct {
	Host, Path, Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: %s: sha256 %s after upload, want %s", e.Host, e.Path, e.Got, e.Want)
}

// Upload writes data to dest on r's host atomically: it writes
// dest.tmp-<random>, sets mode, renames over dest, then checks the sha256
// of dest (`sha256sum`). A missing parent directory is created 0700.
//
// With a *Client whose host offers sftp and whose login user can write
// there, it uses sftp (posix-rename when offered); otherwise it streams
// over an exec channel (`umask 077; cat > tmp && chmod && mv -f`), which
// also works through [Sudo].
func Upload(ctx context.Context, r Runner, data []byte, dest string, mode os.FileMode) error {
	if !path.IsAbs(dest) {
		return fmt.Errorf("upload to %s: %q is not an absolute path", r.Host(), dest)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	tmp := dest + ".tmp-" + hex.EncodeToString(rb[:])
	done := false
	if c, ok := r.(*Client); ok {
		if s, err := c.sftpClient(); err == nil {
			err := uploadSFTP(ctx, s, data, tmp, dest, mode)
			switch {
			case err == nil:
				done = true
			case isPermission(err):
				if c.log != nil {
					c.log("%s: sftp upload to %s: %v; falling back to exec", c.name, dest, err)
				}
			default:
				return fmt.Errorf("upload %s to %s: %w", dest, r.Host(), err)
			}
		}
	}
	if !done {
		if err := r.Run(ctx, Cmd{Command: UploadCommand(tmp, dest, mode), Stdin: bytes.NewReader(data)}); err != nil {
			return fmt.Errorf("upload %s to %s: %w", dest, r.Host(), err)
		}
	}
	out, err := Output(ctx, r, "sha256sum "+shquote.Quote(dest), nil)
	if err != nil {
		return fmt.Errorf("verify %s on %s: %w", dest, r.Host(), err)
	}
	got, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if got != want {
		return &ChecksumError{Host: r.Host(), Path: dest, Want: want, Got: got}
	}
	return nil
}

// UploadCommand is the exec-channel upload script (data on stdin).
func UploadCommand(tmp, dest string, mode os.FileMode) string {
	dir := shquote.Quote(path.Dir(dest))
	t := shquote.Quote(tmp)
	return fmt.Sprintf("{ [ -d %[1]s ] || mkdir -p -m 0700 %[1]s; } && umask 077 && cat > %[2]s && chmod %[3]o %[2]s && mv -f %[2]s %[4]s || { rc=$?; rm -f %[2]s; exit $rc; }",
		dir, t, mode.Perm(), shquote.Quote(dest))
}

func uploadSFTP(ctx context.Context, s *sftp.Client, data []byte, tmp, dest string, mode os.FileMode) error {
	errc := make(chan error, 1)
	go func() { errc <- doSFTP(s, data, tmp, dest, mode) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func doSFTP(s *sftp.Client, data []byte, tmp, dest string, mode os.FileMode) (err error) {
	dir := path.Dir(dest)
	if _, err := s.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := s.MkdirAll(dir); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := s.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	f, err := s.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			_ = s.Remove(tmp)
		}
	}()
	// Restrict before writing, set the final mode before the rename.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := s.Chmod(tmp, mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, ok := s.HasExtension("posix-rename@openssh.com"); ok {
		if err := s.PosixRename(tmp, dest); err != nil {
			return fmt.Errorf("rename %s: %w", tmp, err)
		}
		return nil
	}
	if err := s.Remove(dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", dest, err)
	}
	if err := s.Rename(tmp, dest); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

func isPermission(err error) bool {
	var se *sftp.StatusError
	return errors.Is(err, os.ErrPermission) || (errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxPermissionDenied)
}
