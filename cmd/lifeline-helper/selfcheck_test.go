package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSelfCheck(t *testing.T) {
	dir := t.TempDir()
	data := []byte("helper")
	sum := sha256.Sum256(data)
	good := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(good, data, 0o700); err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, strings.Repeat("ab", 32))
	if err := os.WriteFile(tampered, append(data, 'x'), 0o700); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "lifeline-helper")
	if err := os.WriteFile(plain, data, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, want string
	}{{good, ""}, {plain, ""}, {tampered, "does not match its sha256"}} {
		if got := selfCheck(tt.path); (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("selfCheck(%s) = %q, want %q", filepath.Base(tt.path), got, tt.want)
		}
	}
}
