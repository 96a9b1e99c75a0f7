package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/remote"
)

func init() { subcommands = append(subcommands, newSSHConfigCmd) }

func newSSHConfigCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh-config HOST...",
		Short: "Show the SSH settings lifeline will use for hosts, like ssh -G (connects to nothing)",
		Long: `ssh-config prints, for each host, the settings lifeline resolved from
ssh_config — the way OpenSSH's own "ssh -G HOST" prints them, one
"keyword value" per line under ssh -G's lower-case names — and connects to
nothing. Use it to check a host before apply, and to compare with ssh:

  lifeline -F ~/.ssh/config ssh-config web1
  ssh -G -F ~/.ssh/config web1

lifeline reads ssh_config itself with OpenSSH 9.2's rules: Host and every
Match criterion (host, originalhost, user, localuser, localnetwork, exec,
canonical, final, all), Include with globs, first value wins,
CanonicalizeHostname and the final pass, and the tokens (%h %p %r %u %n
%k %d %i %l %L %C %%, ~, ${ENV}) in every keyword that takes them.
identityfile and certificatefile lines show the expanded file names
lifeline will read (ssh -G prints them as written). proxycommand is shown
as written: its tokens are expanded when it runs.

Lines starting with "# note:" name settings lifeline ignores (AddKeysToAgent,
ControlMaster); "# unsupported:" name settings it cannot honour — apply and
every other command refuse such a host instead of connecting differently.

With -i, a host the inventory knows gets the inventory's address, user,
port, jump and key, which act like ssh's command-line options. With --json:
an array with one object per host whose keys are ssh -G's keyword names
(hostname, user, port, identityfile, certificatefile, identityagent,
userknownhostsfile, hostkeyalias, proxyjump, proxycommand, connecttimeout,
...) plus resolver, notes and unsupported.

The exit status is 1 when a host's settings cannot be resolved (a bad
ssh_config line, a name CanonicalizeHostname cannot resolve with
CanonicalizeFallbackLocal no), 2 for a usage error.`,
		Example: `  lifeline ssh-config web1 db1
  lifeline -F lab/ssh_config ssh-config h02 --json
  diff <(lifeline ssh-config web1 | grep -v '^#') <(ssh -G web1)`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSSHConfig(g, args)
		},
	}
}

func runSSHConfig(g *globals, args []string) error {
	inv, hosts, err := resolveTargets(g, strings.Join(args, ","), "")
	if err != nil {
		return err
	}
	d := newDialer(g, inv)
	var docs []remote.Preview
	var errs []error
	for _, h := range hosts {
		hc, err := d.Resolve(targetOf(h))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs = append(docs, hc.Preview())
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return g.printer().Result(docs, func(w io.Writer) error {
		for i, p := range docs {
			if i > 0 {
				fmt.Fprintln(w)
			}
			for _, l := range p.Lines() {
				fmt.Fprintln(w, l)
			}
		}
		return nil
	})
}
