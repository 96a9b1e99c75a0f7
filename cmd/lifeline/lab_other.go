//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newLabCmd) }

// newLabCmd stands in for the lab off Linux: the lab is network, mount and
// pid namespaces on this machine, which only Linux has.
func newLabCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "lab",
		Short:              "Run a disposable fleet of real SSH hosts on this machine (needs Linux)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("lab: needs Linux (network namespaces); this is %s/%s: run it on a Linux machine or VM (see the Vagrantfile)", runtime.GOOS, runtime.GOARCH)
		},
	}
}
