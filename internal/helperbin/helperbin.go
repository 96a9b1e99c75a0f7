// Package helperbin holds the on-host helper binaries embedded in lifeline.
//
// `make build` compiles cmd/lifeline-helper for linux/amd64 and linux/arm64
// (CGO_ENABLED=0, stripped) into bin/ before building lifeline, and go:embed
// puts them into the workstation binary. A plain `go build ./...` on a fresh
// checkout still compiles (bin/ holds a README), but such a lifeline has no
// helper to upload: [Get] then fails with a message that names the make
// target, unless $LIFELINE_HELPER_AMD64 / $LIFELINE_HELPER_ARM64 point at a
// helper binary built by hand.
package helperbin

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

//go:embed bin
var files embed.FS

// Helper is one helper binary and its content address.
type Helper struct {
	Arch   string // GOARCH: amd64, arm64
	Data   []byte
	SHA256 string // hex; the helper's file name on the host
}

// Arch maps `uname -m` to a GOARCH, or "" for an unsupported machine.
func Arch(unameM string) string {
	switch strings.TrimSpace(unameM) {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "armv8l":
		return "arm64"
	}
	return ""
}

// Get returns the helper for arch (a GOARCH). The file is read and hashed
// once per process and source (the embedded file, or the file
// $LIFELINE_HELPER_<ARCH> names at the time of the call): every host of a
// run shares the one *Helper, whose Data callers must not modify. Safe for
// concurrent use.
func Get(arch string) (*Helper, error) {
	if arch != "amd64" && arch != "arm64" {
		return nil, fmt.Errorf("no helper for architecture %q (lifeline ships linux/amd64 and linux/arm64)", arch)
	}
	env := "LIFELINE_HELPER_" + strings.ToUpper(arch)
	key := source{arch, os.Getenv(env)}
	v, _ := cache.LoadOrStore(key, &cached{})
	c := v.(*cached)
	c.once.Do(func() {
		reads.Add(1)
		c.h, c.err = load(arch, env, key.path)
	})
	return c.h, c.err
}

// source is where one helper comes from: an arch and the override path
// ("" = embedded).
type source struct{ arch, path string }

// cached is the one load of a source.
type cached struct {
	once sync.Once
	h    *Helper
	err  error
}

var (
	cache sync.Map     // source → *cached
	reads atomic.Int64 // loads done, for tests
)

func load(arch, env, path string) (*Helper, error) {
	var data []byte
	var err error
	if path != "" {
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read helper from $%s: %w", env, err)
		}
	} else {
		data, err = files.ReadFile("bin/lifeline-helper-linux-" + arch)
		if err != nil {
			return nil, fmt.Errorf("this lifeline was built without the linux/%s helper: run `make build` (it embeds the helpers), or set $%s to a helper built with `make helper`", arch, env)
		}
	}
	sum := sha256.Sum256(data)
	return &Helper{Arch: arch, Data: data, SHA256: hex.EncodeToString(sum[:])}, nil
}
