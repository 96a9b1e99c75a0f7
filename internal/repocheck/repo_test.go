package repocheck

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// root is the module root (the folder with go.mod).
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

// maxLines bounds every non-test Go file: past it, a file holds more than
// one concern and should be split by concern.
const maxLines = 600

func TestNoGoFileOverMaxLines(t *testing.T) {
	r := root(t)
	err := filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "lab", "dist", "bin":
				if p != r {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if n := bytes.Count(b, []byte("\n")); n > maxLines {
			rel, _ := filepath.Rel(r, p)
			t.Errorf("%s has %d lines, more than %d: split it by concern", rel, n, maxLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWorkstationDependsOnNoHostCode: the lifeline binary, built for
// macOS and Linux, depends on no host-side package of ours (revert: the
// helper's engine) nor on the netlink libraries, and on the lab only on
// Linux.
// The protocol crosses through package wire alone.
func TestWorkstationDependsOnNoHostCode(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("the go command is needed for this test: put it on PATH")
	}
	const mod = "github.com/lifeline-dev/lifeline/"
	for _, goos := range []string{"darwin", "linux"} {
		cmd := exec.Command("go", "list", "-deps", "./cmd/lifeline")
		cmd.Dir = root(t)
		cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GOOS=%s go list: %v", goos, err)
		}
		deps := map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			deps[sc.Text()] = true
		}
		if !deps[mod+"wire"] || !deps[mod+"session"] {
			t.Fatalf("GOOS=%s: go list -deps looks wrong: %s", goos, out)
		}
		banned := []string{mod + "revert", "github.com/google/nftables", "github.com/mdlayher/netlink"}
		if goos != "linux" {
			// the lab (and its go-iptables, for the lab's own NAT) is Linux-only
			banned = append(banned, mod+"internal/lab", "github.com/coreos/go-iptables/iptables")
		}
		for _, b := range banned {
			if deps[b] {
				t.Errorf("GOOS=%s: the workstation binary depends on %s", goos, b)
			}
		}
	}
}
