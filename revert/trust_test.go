package revert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrustStateDir: a state folder (or tx root) a verb would read is
// checked first: root's own but too open is tightened with a warning; a
// symlink or another owner is refused naming the path, and nothing is done
// (no begin, no tx folder, the firewall as it was).
func TestTrustStateDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, h *harness)
		code    string      // "" = the verb runs
		msg     string      // in the error or the warning
		wantDir os.FileMode // of the state dir and tx root after a begin that ran
	}{
		{"clean", func(*testing.T, *harness) {}, "", "", 0o700},
		{"state dir 0777", func(t *testing.T, h *harness) { chmod(t, h.dir, 0o777) }, "", " is writable by group or others (mode 0777): repaired (chmod 0700)", 0o700},
		{"tx root 0757", func(t *testing.T, h *harness) { mkdir(t, filepath.Join(h.dir, "tx"), 0o757) }, "", "/tx is writable by group or others (mode 0757): repaired", 0o700},
		{"state dir owned by another user", func(t *testing.T, h *harness) { chown(t, h.dir, 4242) }, CodeUnsafePath, " is owned by uid 4242, not root", 0},
		{"state dir a symlink", func(t *testing.T, h *harness) {
			real := h.dir + ".real"
			mkdir(t, real, 0o700)
			if err := os.RemoveAll(h.dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, h.dir); err != nil {
				t.Fatal(err)
			}
		}, CodeUnsafePath, " is a symlink", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			before := h.live()
			mkdir(t, h.dir, 0o700)
			tt.setup(t, h)
			rep := h.do(VerbBegin, beginReq("tx1"))
			if tt.code != "" {
				if rep.Error == nil || rep.Error.Code != tt.code || !strings.Contains(rep.Error.Message, h.dir+tt.msg) {
					t.Fatalf("begin: error %v, want %s naming %s%s", rep.Error, tt.code, h.dir, tt.msg)
				}
				if h.live() != before {
					t.Fatalf("the firewall changed after the refusal")
				}
				if _, err := os.Lstat(filepath.Join(h.dir, "tx", "tx1")); err == nil {
					t.Fatalf("a tx folder was created after the refusal")
				}
				return
			}
			h.mustOK(rep, StateArmed)
			if tt.msg != "" && (len(rep.Warnings) == 0 || !strings.Contains(strings.Join(rep.Warnings, "\n"), tt.msg)) {
				t.Fatalf("warnings %q, want one with %q", rep.Warnings, tt.msg)
			}
			for _, d := range []string{h.dir, filepath.Join(h.dir, "tx")} {
				if fi, err := os.Lstat(d); err != nil || fi.Mode().Perm() != tt.wantDir {
					t.Fatalf("%s: %v %v, want mode %04o", d, fi.Mode(), err, tt.wantDir)
				}
			}
		})
	}
}

// TestTrustTxFolder: a tx folder or record another user could have
// written is never acted on: the next begin (which settles the current
// tx) and status refuse naming the path, and the firewall stays.
func TestTrustTxFolder(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, txDir string)
		msg   string
	}{
		{"tx folder 0777", func(t *testing.T, d string) { chmod(t, d, 0o777) }, "/tx/tx1 is writable by group or others (mode 0777)"},
		{"tx folder of another user", func(t *testing.T, d string) { chown(t, d, 4242) }, "/tx/tx1 is owned by uid 4242, not root"},
		{"record 0666", func(t *testing.T, d string) { chmod(t, filepath.Join(d, recordFile), 0o666) }, "/tx/tx1/record.json is writable by group or others (mode 0666)"},
		{"record a symlink", func(t *testing.T, d string) {
			rec := filepath.Join(d, recordFile)
			if err := os.Rename(rec, rec+".real"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(rec+".real", rec); err != nil {
				t.Fatal(err)
			}
		}, "/tx/tx1/record.json is a symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := h.mustOK(h.do(VerbBegin, beginReq("tx1")), StateArmed)
			h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
			h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
			live := h.live()
			tt.setup(t, filepath.Join(h.dir, "tx", "tx1"))
			for _, rep := range []*Report{h.do(VerbBegin, beginReq("tx2")), h.do(VerbStatus, &Request{TxID: "tx1"})} {
				if rep.Error == nil || rep.Error.Code != CodeUnsafePath || !strings.Contains(rep.Error.Message, h.dir+tt.msg) {
					t.Fatalf("%s: error %v, want %s naming %s%s", rep.Verb, rep.Error, CodeUnsafePath, h.dir, tt.msg)
				}
			}
			if h.live() != live {
				t.Fatalf("the firewall changed after the refusal")
			}
			if _, err := os.Lstat(filepath.Join(h.dir, "tx", "tx2")); err == nil {
				t.Fatalf("begin created tx2 after the refusal")
			}
		})
	}
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, m); err != nil {
		t.Fatal(err)
	}
	chmod(t, p, m)
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}
