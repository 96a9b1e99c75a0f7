package helperbin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestGetOncePerProcess: many hosts asking at once for the same helper
// read and hash it once and share the result; another source (a different
// $LIFELINE_HELPER_AMD64) is a load of its own, and a failed load is
// remembered too.
func TestGetOncePerProcess(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	for p, data := range map[string]string{one: "helper one", two: "helper two"} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, path string
		wantLoads  int64 // loads this step adds
		wantData   string
		wantErr    bool
	}{
		{"first host", one, 1, "helper one", false},
		{"same file again", one, 0, "helper one", false},
		{"another file", two, 1, "helper two", false},
		{"back to the first", one, 0, "helper one", false},
		{"missing file", filepath.Join(dir, "none"), 1, "", true},
		{"missing file again", filepath.Join(dir, "none"), 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("LIFELINE_HELPER_AMD64", tt.path)
			before := reads.Load()
			var wg sync.WaitGroup
			got := make([]*Helper, 16)
			errs := make([]error, len(got))
			for i := range got {
				wg.Add(1)
				go func() { defer wg.Done(); got[i], errs[i] = Get("amd64") }()
			}
			wg.Wait()
			if n := reads.Load() - before; n != tt.wantLoads {
				t.Errorf("%d loads, want %d", n, tt.wantLoads)
			}
			for i := range got {
				if (errs[i] != nil) != tt.wantErr {
					t.Fatalf("Get: %v, want error %v", errs[i], tt.wantErr)
				}
				if tt.wantErr {
					continue
				}
				if got[i] != got[0] {
					t.Fatalf("hosts got different *Helper values")
				}
				sum := sha256.Sum256([]byte(tt.wantData))
				if string(got[i].Data) != tt.wantData || got[i].SHA256 != hex.EncodeToString(sum[:]) {
					t.Fatalf("Get = %q %s, want %q and its sha256", got[i].Data, got[i].SHA256, tt.wantData)
				}
			}
		})
	}
	if _, err := Get("mips"); err == nil {
		t.Error("Get(mips) did not fail")
	}
}

// BenchmarkGet: the cost per host once the helper was loaded.
func BenchmarkGet(b *testing.B) {
	p := filepath.Join(b.TempDir(), "h")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Setenv("LIFELINE_HELPER_AMD64", p)
	for b.Loop() {
		if _, err := Get("amd64"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad: what every host paid before Get cached (read + hash).
func BenchmarkLoad(b *testing.B) {
	p := filepath.Join(b.TempDir(), "h")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := load("amd64", "LIFELINE_HELPER_AMD64", p); err != nil {
			b.Fatal(err)
		}
	}
}
