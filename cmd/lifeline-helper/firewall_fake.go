//go:build lifeline_fakefw

package main

import (
	"os"

	"github.com/lifeline-dev/lifeline/revert"
)

// newFirewall (test builds only, -tags lifeline_fakefw) is the stateful
// fake whose "kernel" is the JSON file named by LIFELINE_FAKE_FIREWALL, so
// that the helper and its watchdog share it.
func newFirewall(string) revert.Firewall {
	return revert.OpenFakeFirewall(os.Getenv("LIFELINE_FAKE_FIREWALL"))
}
