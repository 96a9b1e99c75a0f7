package main

import (
	"sort"
	"strings"

	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/spf13/cobra"
)

// Shell completion: cobra's `completion` command (bash, zsh, fish,
// powershell) is kept, with a Long text that says how to load it, and
// every argument that names hosts completes from the inventory in use
// (-i or $LIFELINE_INVENTORY): host names, group names, and the pattern
// operators' forms (!group, &group) after a ':' or ','.

// completeTargets completes a TARGET (a pattern) from the inventory.
// A second argument (apply's RULESET, diff's FILE) completes ruleset files.
func completeTargets(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			if strings.Contains(cmd.Use, "RULESET") || strings.Contains(cmd.Use, "FILE") {
				return rulesetExts, cobra.ShellCompDirectiveFilterFileExt
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return targetCompletions(g.inventory, toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// completeHostArgs completes every argument as one host or group name
// (commands that take several: diff HOST HOST).
func completeHostArgs(g *globals, max int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if max > 0 && len(args) >= max {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return targetCompletions(g.inventory, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// targetCompletions lists the names of path's hosts and groups that
// complete the last element of the pattern typed so far. The earlier
// elements are kept as typed, so "web:!d" offers "web:!db".
func targetCompletions(path, typed string) []string {
	if path == "" {
		return nil
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return nil
	}
	cut := strings.LastIndexAny(typed, ":,")
	prefix, last := typed[:cut+1], typed[cut+1:]
	op := ""
	if last != "" && (last[0] == '!' || last[0] == '&') {
		op, last = last[:1], last[1:]
	}
	seen := map[string]bool{}
	var out []string
	add := func(name string) {
		if !seen[name] && strings.HasPrefix(name, last) {
			seen[name] = true
			out = append(out, prefix+op+name)
		}
	}
	for _, h := range inv.Hosts {
		add(h.Name)
	}
	groups := make([]string, 0, len(inv.Groups))
	for name := range inv.Groups {
		groups = append(groups, name)
	}
	sort.Strings(groups)
	for _, name := range groups {
		add(name)
	}
	return out
}

// completeGroups completes one group name (inventory graph GROUP).
func completeGroups(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 || g.inventory == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		inv, err := inventory.Load(g.inventory)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for name := range inv.Groups {
			if strings.HasPrefix(name, toComplete) {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFiles completes file names with one of exts (ruleset files).
func completeFiles(exts ...string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return exts, cobra.ShellCompDirectiveFilterFileExt
	}
}

// rulesetExts are the suffixes ruleset files are written with.
var rulesetExts = []string{"nft", "rules", "v4", "v6", "iptables", "conf", "txt"}

const completionLong = `completion prints a shell script that completes lifeline's commands, flags,
the hosts and groups of the inventory in use (-i or $LIFELINE_INVENTORY) for
every TARGET and HOST argument and --limit, and ruleset files for apply's
RULESET, diff's FILE and drift's --against.

  bash:  source <(lifeline completion bash)
         (for good: lifeline completion bash > /etc/bash_completion.d/lifeline)
  zsh:   source <(lifeline completion zsh)
  fish:  lifeline completion fish | source

Completion reads the inventory each time you press Tab, so it follows edits.`

// setupCompletion wires completion into the finished command tree: the
// TARGET/HOST arguments of every command, ruleset file flags, and the
// completion command's help text.
func setupCompletion(g *globals, root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "completion" && c.Parent() == root {
			c.Long = completionLong
		}
		if c.ValidArgsFunction == nil && c.Runnable() {
			use := c.Use
			switch {
			case strings.Contains(use, "TARGET"):
				c.ValidArgsFunction = completeTargets(g)
			case strings.Contains(use, "HOST"):
				c.ValidArgsFunction = completeHostArgs(g, strings.Count(use, "HOST"))
			case strings.Contains(use, "GROUP"):
				c.ValidArgsFunction = completeGroups(g)
			}
		}
		if c.LocalFlags().Lookup("against") != nil {
			_ = c.RegisterFlagCompletionFunc("against", completeFiles(rulesetExts...))
		}
		if c.LocalFlags().Lookup("limit") != nil {
			_ = c.RegisterFlagCompletionFunc("limit", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return targetCompletions(g.inventory, toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	_ = root.RegisterFlagCompletionFunc("inventory", completeFiles("yaml", "yml", "ini", "cfg", "hosts"))
}
