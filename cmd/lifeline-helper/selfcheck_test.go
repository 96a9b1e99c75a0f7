package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSelfCheck: a hash-named helper file passes only when it hashes to
// its name, is a regular file of root (or the test's user) and nobody
// else can write it; a file not named by a hash (run by hand) is not
// checked.
func TestSelfCheck(t *testing.T) {
	data := []byte("helper")
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	tests := []struct {
		name  string
		setup func(t *testing.T, p string) // p: the hash-named path
		want  string                       // "" = passes
	}{
		{"intact", func(t *testing.T, p string) { write(t, p, data, 0o700) }, ""},
		{"one byte changed", func(t *testing.T, p string) { write(t, p, []byte("helpe!"), 0o700) }, "does not match its sha256"},
		{"one byte appended", func(t *testing.T, p string) { write(t, p, append(data, 'x'), 0o700) }, "does not match its sha256"},
		{"mode 0777", func(t *testing.T, p string) { write(t, p, data, 0o777) }, "writable by group or others (mode 0777)"},
		{"mode 0720", func(t *testing.T, p string) { write(t, p, data, 0o720) }, "writable by group or others (mode 0720)"},
		{"symlink", func(t *testing.T, p string) {
			real := filepath.Join(filepath.Dir(p), "real")
			write(t, real, data, 0o700)
			if err := os.Symlink(real, p); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"other owner", func(t *testing.T, p string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			write(t, p, data, 0o700)
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 4242, not root"},
		{"missing", func(t *testing.T, p string) {}, "cannot check it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), sha)
			tt.setup(t, p)
			got := selfCheck(p, p)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("selfCheck = %q, want %q", got, tt.want)
			}
		})
	}
	plain := filepath.Join(t.TempDir(), "lifeline-helper")
	write(t, plain, []byte("anything"), 0o777)
	if got := selfCheck(plain, plain); got != "" {
		t.Errorf("selfCheck of a helper run by hand = %q, want no check", got)
	}
}

// TestMoveAside: the file keeps its content under SHA.tampered-EPOCH.
func TestMoveAside(t *testing.T) {
	p := filepath.Join(t.TempDir(), strings.Repeat("ab", 32))
	write(t, p, []byte("x"), 0o700)
	if err := moveAside(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", p, err)
	}
	m, _ := filepath.Glob(p + ".tampered-*")
	if len(m) != 1 {
		t.Fatalf("moved-aside files: %q", m)
	}
}

// TestSecureHelperDirs: the helper's folder and the state folder above it
// are checked (and a too-open one of root's tightened); another owner is
// refused naming the path.
func TestSecureHelperDirs(t *testing.T) {
	state := filepath.Join(t.TempDir(), "lifeline")
	bin := filepath.Join(state, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, strings.Repeat("cd", 32))
	if fixed, err := secureHelperDirs(exe); err != nil || len(fixed) != 0 {
		t.Fatalf("clean folders: %q %v", fixed, err)
	}
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	fixed, err := secureHelperDirs(exe)
	if err != nil || len(fixed) != 1 || !strings.Contains(fixed[0], bin+" is writable by group or others (mode 0777): repaired") {
		t.Fatalf("too-open %s: %q %v", bin, fixed, err)
	}
	if fi, _ := os.Stat(bin); fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s mode %v after the repair", bin, fi.Mode().Perm())
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(state, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := secureHelperDirs(exe); err == nil || !strings.Contains(err.Error(), state+" is owned by uid 4242") {
			t.Fatalf("state folder of another owner: %v", err)
		}
	}
	if fixed, err := secureHelperDirs(filepath.Join(bin, "lifeline-helper")); err != nil || fixed != nil {
		t.Fatalf("a helper run by hand checks no folder: %q %v", fixed, err)
	}
}

func write(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// TestCalledAs: the hash name the helper was started by wins over the
// resolved executable (which a concurrent move-aside renames).
func TestCalledAs(t *testing.T) {
	sha := strings.Repeat("ef", 32)
	tests := []struct{ arg0, exe, want string }{
		{"/var/lib/lifeline/bin/" + sha, "/var/lib/lifeline/bin/" + sha + ".tampered-1", "/var/lib/lifeline/bin/" + sha},
		{"lifeline-helper", "/usr/local/bin/lifeline-helper", "/usr/local/bin/lifeline-helper"},
		{sha, "/x/" + sha, "/x/" + sha}, // relative: not the wrapper's
		{"/tmp/not-a-hash", "/tmp/not-a-hash", "/tmp/not-a-hash"},
	}
	for _, tt := range tests {
		if got := calledAs(tt.arg0, tt.exe); got != tt.want {
			t.Errorf("calledAs(%q, %q) = %q, want %q", tt.arg0, tt.exe, got, tt.want)
		}
	}
}
