package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { subcommands = append(subcommands, newManCmd) }

// newManCmd is `lifeline man --dir DIR`, which `make man` runs: one roff
// page per command, generated from the cobra tree (so from each command's
// Long text, examples and flags), lifeline.1 for the root and
// lifeline-apply.1 and so on below it. Hidden: it is for packagers.
func newManCmd(g *globals) *cobra.Command {
	dir := ""
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write lifeline's man pages (section 1) into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("man: --dir DIR is required (hint: make man writes docs/man)")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "LIFELINE", Section: "1", Source: "lifeline", Manual: "lifeline manual"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man: write pages into %s: %w", dir, err)
			}
			return g.printer().Result(map[string]string{"dir": dir}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "man pages written into %s\n", dir)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "folder to write the pages into")
	return cmd
}
