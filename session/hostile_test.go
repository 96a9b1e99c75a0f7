package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/wire"
)

// TestRunStoreStaysInRunDir: whatever a host is called, save writes its
// result and snapshot ref inside RUNDIR/hosts, the snapshot's object in
// RUNDIR/../objects, and nowhere else.
func TestRunStoreStaysInRunDir(t *testing.T) {
	names := []string{
		"h01",
		"../../../../../../../tmp/x",
		"../x",
		"..",
		".",
		"",
		"/abs/x", // joined under the folder: stays inside
		"a/b",
		".hidden",
		"h\x1b[2J\n",
		strings.Repeat("x/../", 60) + "../x", // long: 300 bytes
	}
	// The run folder is 9 levels under the test's root, so that even
	// without the fix these names write inside the root, where the walk
	// below sees them.
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			runDir := filepath.Join(root, "a", "b", "c", "d", "e", "f", "g", "run")
			s := New(nil, Options{RunDir: runDir})
			s.save(&Result{Host: name, Outcome: Confirmed, Snapshot: &wire.Snapshot{}})
			hosts := filepath.Join(runDir, "hosts")
			objects := filepath.Join(filepath.Dir(runDir), "objects") // named by sha256
			var inside []string
			err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				switch filepath.Dir(p) {
				case hosts:
					inside = append(inside, filepath.Base(p))
				case objects:
				default:
					t.Errorf("host %q: wrote %s, outside %s", name, p, hosts)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(inside) != 2 {
				t.Errorf("host %q: files %q, want its result and its snapshot ref", name, inside)
			}
			for _, f := range inside {
				if len(f) > 255 {
					t.Errorf("host %q: file name is %d bytes", name, len(f))
				}
			}
		})
	}
}

func TestHostFile(t *testing.T) {
	tests := []struct{ in, want string }{
		{"h01", "h01"},
		{"web-01.example.com", "web-01.example.com"},
		{"../x", "%%2E%2E%2Fx"},
		{"..", "%%2E%2E"},
		{"", "%"},
		{"a%2Fb", "%a%252Fb"},
		{"h\x1b", "%h%1B"},
	}
	for _, tc := range tests {
		if got := HostFile(tc.in); got != tc.want {
			t.Errorf("HostFile(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if a, b := HostFile(strings.Repeat("/", 300)), HostFile(strings.Repeat("/", 301)); a == b || len(a) > maxHostFile {
		t.Errorf("long names: %q and %q, want distinct, at most %d bytes", a, b, maxHostFile)
	}
}

// TestHostErrorEscapes: a host's error text reaches the terminal escaped.
func TestHostErrorEscapes(t *testing.T) {
	err := &HostError{Host: "h01", Outcome: Refused, Err: errors.New("validate: nft: stdin:1:1: \x1b[2J\x1b]0;owned\a" + strings.Repeat("A", 5000))}
	got := err.Error()
	if strings.ContainsAny(got, "\x1b\a") {
		t.Errorf("HostError.Error() holds raw control characters: %q", got)
	}
	if !strings.HasPrefix(got, `h01: refused: validate: nft: stdin:1:1: \x1b[2J\x1b]0;owned\x07AAA`) {
		t.Errorf("HostError.Error() = %.80q…", got)
	}
	if !strings.HasSuffix(got, "… (5040 bytes)") {
		t.Errorf("HostError.Error() does not end with the cut: …%q", got[len(got)-40:])
	}
}
