//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/lab"
)

func init() { subcommands = append(subcommands, newLabCmd) }

func newLabCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a disposable fleet of real SSH hosts on this machine (root, Linux)",
		Long: `The lab starts N disposable hosts on this machine: each is its own network,
mount, uts and pid namespace with a real OpenSSH sshd, its own host keys and
an /etc overlay, on a private bridge (198.18.0.0/16, never your routes). Hosts
cycle through the nft, iptables-nft and iptables-legacy backends; h02 logs in
as the sudo user ops; with 3 hosts or more the last one is reachable only
through h01 (ProxyJump). The lab writes an inventory, ssh_config, known_hosts
and key into its folder, and never touches this machine's firewall.

--systemd N adds hosts s01.. whose PID 1 is systemd: systemd-nspawn
containers of a Debian 12 root that the first use builds once per machine
(a few minutes; cached in /var/cache/lifeline-lab, or $LIFELINE_LAB_ROOTFS_CACHE).

Needs root and: apt-get install openssh-server iptables nftables iproute2 sudo
(for --systemd also: systemd-container mmdebstrap)`,
	}
	cmd.AddCommand(newLabUpCmd(g), newLabDownCmd(g), newLabStatusCmd(g), newLabRootfsCmd(g))
	return cmd
}

type labUpOptions struct {
	dir     string
	hosts   int
	backend string
	systemd int
}

func newLabUpCmd(g *globals) *cobra.Command {
	o := &labUpOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the lab's hosts (an earlier lab in the same folder is replaced)",
		Long: `up starts --hosts N hosts h01..hNN (h001.. from 100) on a private bridge in
198.18.0.0/16, each with an IPv4 and an IPv6 address, and writes into --dir an
inventory.yaml, ssh_config, known_hosts and key for them. The shape of the
lab depends on N:

  N = 1 or 2   every host is reachable directly on port 22
  N >= 3       h01 and h02 and the last host also sit on a back network; the
               last host listens on port 2222 of the back network only, so
               it is reachable only through h01 (ProxyJump h01): the jump
               host case

  users        every host logs in as root, except h02, which logs in as the
               sudo user ops (NOPASSWD): the sudo case
  backends     --backend mixed (the default) cycles h01 nft, h02 iptables-nft,
               h03 iptables-legacy, h04 nft, ...; --backend X gives every
               host X
  --systemd M  adds M hosts s01.. after them whose PID 1 is systemd (nft, root,
               direct): systemd-nspawn containers of a cached Debian 12 root

An earlier lab in the same folder is stopped first. The hosts never touch
this machine's firewall, routes or sysctls. lifeline lab down removes them;
lifeline lab status lists them. See docs/lab.md.`,
		Example: `  lifeline lab up
  lifeline lab up --dir /tmp/lab --hosts 10 --backend iptables-legacy
  lifeline lab up --hosts 3 --json
  lifeline lab up --hosts 2 --systemd 1
  lifeline -i lab/inventory.yaml run all -- hostname`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLabUp(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "lab", "lab folder: inventory, ssh_config, known_hosts, key and host state")
	f.IntVar(&o.hosts, "hosts", 3, fmt.Sprintf("number of hosts (1..%d)", lab.MaxHosts))
	f.StringVar(&o.backend, "backend", lab.BackendMixed, "firewall backend of the hosts: nft, iptables-nft, iptables-legacy or mixed (cycles the three)")
	f.IntVar(&o.systemd, "systemd", 0, "also start N hosts s01.. that boot systemd as PID 1 (systemd-nspawn, nft); the first use builds a cached Debian root (a few minutes, needs systemd-container and mmdebstrap or debootstrap)")
	return cmd
}

func runLabUp(cmd *cobra.Command, g *globals, o *labUpOptions) error {
	if o.hosts < 1 || o.hosts > lab.MaxHosts {
		return usagef("--hosts %d: want 1..%d", o.hosts, lab.MaxHosts)
	}
	if o.systemd < 0 || o.hosts+o.systemd > lab.MaxHosts {
		return usagef("--systemd %d: want 0..%d with --hosts %d", o.systemd, lab.MaxHosts-o.hosts, o.hosts)
	}
	switch o.backend {
	case lab.BackendNft, lab.BackendIptablesNft, lab.BackendIptablesLegacy, lab.BackendMixed:
	default:
		return usagef("--backend %q: want nft, iptables-nft, iptables-legacy or mixed", o.backend)
	}
	var log io.Writer
	if g.verbose {
		log = g.stderr
	}
	if o.systemd > 0 && !g.verbose {
		// the first use builds the root for minutes: say so
		if _, err := lab.EnsureSystemdRootfs(cmd.Context(), g.stderr); err != nil {
			return err
		}
	}
	l, err := lab.Up(cmd.Context(), lab.Options{Dir: o.dir, Hosts: o.hosts, Backend: o.backend, Systemd: o.systemd, Log: log})
	if errors.Is(err, lab.ErrPrereq) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w (hint: logs are in %s; remove the rest with `lifeline lab down --dir %s`)", err, filepath.Join(o.dir, "hosts"), o.dir)
	}
	return g.printer().Result(labHostsJSON(l), func(w io.Writer) error {
		fmt.Fprintf(w, "lab %s is up in %s: %d hosts on %s (bridge %s)\n\n", l.ID, l.Dir, len(l.Hosts), l.Subnet4, l.Bridge)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADDRESS\tBACKEND\tUSER\tVIA\tINIT")
		for _, h := range l.Hosts {
			via := "-"
			if h.Jump != "" {
				via = h.Jump
			}
			addr := h.Address
			if h.Port != 22 {
				addr = fmt.Sprintf("%s:%d", h.Address, h.Port)
			}
			kind := "lab"
			if h.Init != lab.InitLab {
				kind = h.Init
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, addr, h.Backend, h.User, via, kind)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "\nnext: lifeline -i %s run all -- hostname\n      ssh -F %s %s\n", l.Inventory, l.SSHConfig, l.Hosts[len(l.Hosts)-1].Name)
		return err
	})
}

// labHostJSON is one host in `lab up --json`.
type labHostJSON struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Address6 string `json:"address6"`
	Netns    string `json:"netns"`
	Backend  string `json:"backend"`
	User     string `json:"user"`
	Port     int    `json:"port"`
	Jump     string `json:"jump"`
	Init     string `json:"init,omitempty"`
}

// labHostsJSON is `lab up --json`: the list of hosts.
func labHostsJSON(l *lab.Lab) []labHostJSON {
	out := make([]labHostJSON, 0, len(l.Hosts))
	for _, h := range l.Hosts {
		out = append(out, labHostJSON{h.Name, h.Address, h.Address6, h.Netns, h.Backend, h.User, h.Port, h.Jump, h.Init})
	}
	return out
}

// labDirJSON is `lab down --json` and `lab rootfs --json`: the folder
// removed, or the root built.
type labDirJSON struct {
	Dir     string `json:"dir"`
	Removed bool   `json:"removed,omitempty"`
}

func newLabDownCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab: processes, namespaces, links and files (also after a crash)",
		Example: `  lifeline lab down
  lifeline lab down --dir /tmp/lab`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Down(cmd.Context(), dir); err != nil {
				return err
			}
			return g.printer().Result(labDirJSON{Dir: dir, Removed: true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "lab in %s removed\n", dir)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "lab", "lab folder")
	return cmd
}

func newLabStatusCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether each lab host's init and sshd run and its SSH port answers",
		Example: `  lifeline lab status
  lifeline lab status --dir /tmp/lab --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(dir)
			if err != nil {
				return err
			}
			st, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			down := 0
			for _, s := range st {
				if !s.Reachable {
					down++
				}
			}
			err = g.printer().Result(st, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tINIT\tSSHD\tSSH PORT")
				for _, s := range st {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, upDown(s.InitAlive), upDown(s.SSHDAlive), answers(s.Reachable))
				}
				return tw.Flush()
			})
			if err != nil {
				return err
			}
			if down > 0 {
				fmt.Fprintf(g.stderr, "lifeline: %d of %d lab hosts do not answer (hint: lifeline lab up --dir %s starts a fresh lab)\n", down, len(st), dir)
				return failedError{msg: "lab hosts down"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "lab", "lab folder")
	return cmd
}

func upDown(b bool) string {
	if b {
		return "running"
	}
	return "stopped"
}

func answers(b bool) string {
	if b {
		return "answers"
	}
	return "no answer"
}

func newLabRootfsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rootfs",
		Short: "Build (or reuse) the cached Debian root that --systemd hosts boot",
		Long: `rootfs makes sure the Debian 12 root that systemd lab hosts boot from is in
the cache ($LIFELINE_LAB_ROOTFS_CACHE, default /var/cache/lifeline-lab), and
prints its path. The first build takes a few minutes (mmdebstrap, or
debootstrap); later calls return at once. make test runs it before the
tests, so that no test spends its time limit on the build.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := lab.EnsureSystemdRootfs(cmd.Context(), g.stderr)
			if err != nil {
				return err
			}
			return g.printer().Result(labDirJSON{Dir: dir}, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, dir)
				return err
			})
		},
	}
}
