//go:build !lifeline_fakefw

package main

import (
	"path/filepath"

	"github.com/lifeline-dev/lifeline/revert"
)

// newFirewall drives the host's real nft and iptables tools, keeping
// trial-load proofs in the state folder.
func newFirewall(stateDir string) revert.Firewall {
	return revert.NewFirewall(revert.FirewallOptions{ProofDir: filepath.Join(stateDir, "proofs")})
}
