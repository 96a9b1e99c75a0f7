package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/ruleset"
)

func init() { subcommands = append(subcommands, newAuditCmd) }

type hostAudit struct {
	Host   string               `json:"host"`
	Report *ruleset.AuditReport `json:"report,omitempty"`
	Error  string               `json:"error,omitempty"`
}

func newAuditCmd(g *globals) *cobra.Command {
	o := &readOptions{}
	cmd := &cobra.Command{
		Use:   "audit TARGET",
		Short: "Backends, counts, owners, shadowed rules and the classic pitfalls of each host's firewall",
		Long: `audit reads every targeted host's whole firewall state and reports, per host:

  - the backends that hold rules (nft, iptables-nft, iptables-legacy, IPv4
    and IPv6), flagging rules in both iptables-legacy and nf_tables;
  - rule counts per table and chain, chain policies, the owners found
    (Docker, kube-proxy with its service and endpoint counts, Calico,
    firewalld, ufw, fail2ban, CrowdSec, lifeline);
  - rules that can never match because an earlier rule of the chain
    catches all their packets (with that rule);
  - the pitfalls from the field, each with why it matters and what to do:

    ssh-not-accepted        an input chain drops what it does not accept and
                            no rule accepts sshd's port explicitly
    no-established-accept   no ct state established,related accept before the drop
    docker-bypasses-input   Docker-published ports skip INPUT (use DOCKER-USER)
    ipv6-open               IPv4 locked down, IPv6 wide open
    forward-open            forwarding on, nothing filters it
    log-without-limit       a LOG rule without a limit
    conntrack-near-full     the conntrack table is 80% full or more
    mixed-backends          rules in iptables-legacy and nf_tables at once
    shadowed-rule           a rule that can never match

sshd's ports come from the host (its listening sockets). --json gives every
finding with its stable code. Nothing changes on any host. Exit status: 0
no finding of severity error, 1 some (or a host could not be read).`,
		Example: `  lifeline -i lab/inventory.yaml audit all
  lifeline -i lab/inventory.yaml --json audit web | jq '.[].report.findings[].code'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAudit(cmd.Context(), g, o, args[0])
		},
	}
	o.flags(cmd)
	return cmd
}

func runAudit(ctx context.Context, g *globals, o *readOptions, pattern string) error {
	reads, rerr := readHosts(ctx, g, o, pattern, nil)
	if reads == nil {
		return rerr
	}
	out := make([]hostAudit, len(reads))
	bad := 0
	for i, r := range reads {
		out[i].Host = r.host.Name
		if r.err != nil {
			out[i].Error = textsafe.Truncate(r.err.Error())
			bad++
			continue
		}
		f := r.st.Facts
		out[i].Report = ruleset.Audit(r.rs, ruleset.Facts{SSHPorts: f.SSHPorts, IPv4Forward: f.IPv4Forward, IPv6Forward: f.IPv6Forward,
			IPv6: f.IPv6, ConntrackCount: f.ConntrackCount, ConntrackMax: f.ConntrackMax})
		for _, fd := range out[i].Report.Findings {
			if fd.Severity == "error" {
				bad++
				break
			}
		}
	}
	if err := g.printer().Result(out, func(w io.Writer) error { return printAudit(w, out, g.verbose) }); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	if bad > 0 {
		return failedError{fmt.Sprintf("%d of %d hosts have errors or could not be read", bad, len(out))}
	}
	return nil
}

func printAudit(w io.Writer, out []hostAudit, verbose bool) error {
	for _, h := range out {
		name := textsafe.Escape(h.Host)
		if h.Error != "" {
			fmt.Fprintf(w, "%s: ERROR %s\n\n", name, oneLine(textsafe.Text(h.Error)))
			continue
		}
		a := h.Report
		mixed := ""
		if a.Mixed {
			mixed = "  MIXED"
		}
		fmt.Fprintf(w, "%s: %d rules in %d tables; backends: %s%s\n", name, a.Rules, len(a.Tables), orDash(strings.Join(a.Backends, ", ")), mixed)
		for _, o := range a.Owners {
			extra := ""
			if o.Owner == ruleset.OwnerKubeProxy {
				extra = fmt.Sprintf(" (%d services, %d endpoints)", a.KubeServices, a.KubeEndpoints)
			}
			fmt.Fprintf(w, "  owner %s: %d tables, %d chains, %d rules%s\n", textsafe.Escape(o.Owner), o.Tables, o.Chains, o.Rules, extra)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range a.Tables {
			for _, c := range t.Chains {
				if !verbose && c.Hook == "" {
					continue
				}
				hook := c.Hook
				if hook == "" {
					hook = "-"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d rules\t%s\n", textsafe.Escape(t.Table), textsafe.Escape(c.Name), hook, orDash(c.Policy), c.Rules, textsafe.Escape(c.Owner))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, n := range a.NotAnalysed {
			fmt.Fprintf(w, "  (shadow analysis skipped: %s)\n", textsafe.Escape(n))
		}
		if len(a.Findings) == 0 {
			fmt.Fprintln(w, "  no findings")
		}
		for _, f := range a.Findings {
			where := strings.TrimSpace(f.Table + " " + f.Chain)
			if where != "" {
				where = " [" + where + "]"
			}
			fmt.Fprintf(w, "  %s %s%s\n", strings.ToUpper(f.Severity), f.Code, textsafe.Escape(where))
			if f.Rule != "" {
				fmt.Fprintf(w, "      rule: %s\n", oneLine(textsafe.Text(f.Rule)))
			}
			fmt.Fprintf(w, "      why:  %s\n      fix:  %s\n", textsafe.Escape(f.Why), textsafe.Escape(f.Fix))
		}
		fmt.Fprintln(w)
	}
	return nil
}
