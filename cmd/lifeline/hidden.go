//go:build linux

package main

import (
	"os"

	"github.com/lifeline-dev/lifeline/internal/lab"
)

// runHidden runs the re-executed roles of this binary that are not user
// commands: the lab's per-host init process. It returns false when the
// process is an ordinary lifeline invocation.
func runHidden() bool {
	if os.Getenv(lab.InitEnv) != "" {
		lab.RunInit() // never returns
		return true
	}
	return false
}
