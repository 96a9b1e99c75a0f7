//go:build !lifeline_fakefw

package main

import "github.com/lifeline-dev/lifeline/revert"

// newFirewall drives the host's real nft and iptables tools.
func newFirewall() revert.Firewall { return revert.NewFirewall(revert.FirewallOptions{}) }
