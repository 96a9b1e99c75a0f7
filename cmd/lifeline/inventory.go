package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/inventory"
)

func init() { subcommands = append(subcommands, newInventoryCmd) }

func newInventoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Show the hosts and groups an inventory defines",
		Long: `Show what an inventory (-i FILE or $LIFELINE_INVENTORY) resolves to: lifeline's
own YAML, an Ansible INI inventory or an Ansible YAML inventory.

Targets use Ansible's patterns: all, web, web:db (union), web:&prod
(intersection), web:!web03 (exclusion), web* (glob), ~web0[1-3] (regex).`,
	}
	cmd.AddCommand(newInventoryListCmd(g), newInventoryGraphCmd(g))
	return cmd
}

type inventoryListOptions struct {
	limit   string
	sources bool
}

func newInventoryListCmd(g *globals) *cobra.Command {
	o := &inventoryListOptions{}
	cmd := &cobra.Command{
		Use:   "list [TARGET]",
		Short: "List the hosts a target selects, with their resolved settings",
		Long: `list prints the hosts TARGET (default all) selects and the connection settings
lifeline resolved for each from the inventory; --sources (or -v) adds where
every setting came from. ssh_config then fills in what the inventory leaves
unset.

Ansible inventories are read the way Ansible's ssh connection uses them:

  - ssh is given ansible_host (when set) as its destination, so ssh_config's
    Host blocks match that address, not the inventory name (ssh_alias in
    --sources); without ansible_host they match the inventory name
  - the ssh command line is Ansible's: ansible_ssh_args (or Ansible's default
    -C -o ControlMaster=auto -o ControlPersist=60s), then ansible_port,
    ansible_ssh_private_key_file and ansible_user, then
    ansible_ssh_common_args and ansible_ssh_extra_args; as in ssh, the first
    value of an option wins (an -o Port in ansible_ssh_args beats
    ansible_port); -o KEY=VALUE, -p, -l, -i, -J and -F are all read
  - a ProxyCommand "ssh -W %h:%p [-q] [-p P] [-l U] [user@]bastion" is a jump;
    one that gives the hop its own -i key, known_hosts or
    StrictHostKeyChecking, or runs something else, is kept as written
  - what lifeline cannot carry for a host (such a ProxyCommand, a
    StrictHostKeyChecking or UserKnownHostsFile from ssh args, -F,
    ansible_connection=local, become with su/doas or another user, a Jinja
    template other than {{ inventory_hostname }}) is listed as "refused"
    here, naming the variable and its file:line, and any command targeting
    that host refuses to start. A StrictHostKeyChecking=no would weaken what
    lifeline guarantees (the host you confirm on is the host you changed):
    set it, if you must, in the ssh_config for that host`,
		Example: `  lifeline -i hosts.yaml inventory list
  lifeline -i hosts.ini inventory list 'web:!web03' --sources
  lifeline -i hosts.ini inventory list prod --limit 'db*' --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := "all"
			if len(args) == 1 {
				target = args[0]
			}
			return runInventoryList(g, o, target)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.limit, "limit", "", "further limit the hosts (same pattern grammar)")
	f.BoolVar(&o.sources, "sources", false, "show where each setting came from (also with -v)")
	return cmd
}

func newInventoryGraphCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "graph [GROUP]",
		Short: "Draw the group tree, like ansible-inventory --graph",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := "all"
			if len(args) == 1 {
				group = args[0]
			}
			return runInventoryGraph(g, group)
		},
	}
}

// openInventory loads -i; every failure is a usage error (exit 2).
func openInventory(g *globals) (*inventory.Inventory, error) {
	if g.inventory == "" {
		return nil, usagef("no inventory: give -i FILE or set $LIFELINE_INVENTORY")
	}
	inv, err := inventory.Load(g.inventory)
	if err != nil {
		return nil, usageError{err}
	}
	warnInventory(g, inv)
	return inv, nil
}

// warnInventory prints the inventory's warnings (settings lifeline does
// not read) on stderr, escaped: they quote the file.
func warnInventory(g *globals, inv *inventory.Inventory) {
	for _, w := range inv.Warnings {
		fmt.Fprintln(g.stderr, "lifeline: warning: "+textsafe.Escape(w))
	}
}

func runInventoryList(g *globals, o *inventoryListOptions, target string) error {
	inv, err := openInventory(g)
	if err != nil {
		return err
	}
	hosts, warnings, err := inv.SelectWarn(target, o.limit)
	for _, w := range warnings {
		fmt.Fprintln(g.stderr, "lifeline: warning: "+textsafe.Escape(w))
	}
	if err != nil {
		return usageError{err}
	}
	return g.printer().Result(hosts, func(w io.Writer) error {
		writeHostTable(w, hosts)
		if o.sources || g.verbose {
			writeHostSources(w, hosts)
		}
		return nil
	})
}

func runInventoryGraph(g *globals, group string) error {
	inv, err := openInventory(g)
	if err != nil {
		return err
	}
	out, err := inv.GraphFrom(group)
	if err != nil {
		var ue *inventory.UnknownError
		if errors.As(err, &ue) {
			return usagef("unknown group %q%s", ue.Name, didYouMean(ue.Suggestions))
		}
		return usageError{err}
	}
	return g.printer().Result(inv.Groups, func(w io.Writer) error {
		_, err := io.WriteString(w, out)
		return err
	})
}

func didYouMean(s []string) string {
	if len(s) == 0 {
		return " (lifeline inventory graph shows them)"
	}
	return " (did you mean " + strings.Join(s, ", ") + "?)"
}

func writeHostTable(w io.Writer, hosts []*inventory.Host) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tUSER\tPORT\tJUMP\tRULESET\tGROUPS")
	for _, h := range hosts {
		port := ""
		if h.Port != 0 {
			port = strconv.Itoa(h.Port)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, dash(h.Address), dash(h.User),
			dash(port), dash(h.Jump), dash(displayPath(h.Ruleset)), dash(strings.Join(h.Groups, ",")))
	}
	tw.Flush()
}

// writeHostSources prints every setting of every host with where it came from.
func writeHostSources(w io.Writer, hosts []*inventory.Host) {
	for _, h := range hosts {
		fmt.Fprintf(w, "\n%s:\n", h.Name)
		if len(h.Sources) == 0 {
			fmt.Fprintln(w, "  (nothing set: ssh_config and OpenSSH defaults decide)")
			continue
		}
		keys := make([]string, 0, len(h.Sources))
		for k := range h.Sources {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, k := range keys {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", textsafe.Escape(k), dash(oneLine(textsafe.Text(settingValue(h, k)))), textsafe.Escape(h.Sources[k]))
		}
		for _, o := range h.SSHOptions {
			fmt.Fprintf(tw, "  ssh option %s\t%s\t%s\n", textsafe.Escape(o.Key), textsafe.Escape(o.Value), textsafe.Escape(o.From))
		}
		tw.Flush()
		for _, u := range h.Unsupported {
			fmt.Fprintf(w, "  refused: %s\n", textsafe.Escape(u))
		}
	}
}

func settingValue(h *inventory.Host, key string) string {
	switch key {
	case "address":
		return h.Address
	case "user":
		return h.User
	case "port":
		if h.Port == 0 {
			return ""
		}
		return strconv.Itoa(h.Port)
	case "jump":
		return h.Jump
	case "identity_file":
		return displayPath(h.IdentityFile)
	case "ruleset":
		return displayPath(h.Ruleset)
	case "ssh_alias":
		return h.SSHAlias
	case "proxy_command":
		return h.ProxyCommand
	case "connection":
		return h.Connection
	case "become":
		return h.Become
	}
	if n, ok := strings.CutPrefix(key, "vars."); ok {
		return h.Vars[n]
	}
	if n, ok := strings.CutPrefix(key, "labels."); ok {
		return h.Labels[n]
	}
	return ""
}

// displayPath shows an absolute path relative to the working directory when
// it lies below it, so tables stay readable.
func displayPath(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return p
	}
	return rel
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
