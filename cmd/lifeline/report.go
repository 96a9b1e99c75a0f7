package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
)

func init() { subcommands = append(subcommands, newReportCmd) }

func newReportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "report RUN_DIR|RESULT.json...",
		Short: "Merge the results of several runs (the shards of one rollout) into one report",
		Long: `report reads the results of apply or exec runs — run folders
(~/.local/state/lifeline/runs/RUN_ID, printed as run_dir) or the documents
their --json printed — and prints them as one report, with apply's exit
status rules: 0 when every host ended confirmed (or planned, or armed), 1
otherwise. It is how the shards of one rollout (--shard I/N on a CI matrix
or a Kubernetes Indexed Job) become one answer. A host found in two inputs
is reported once, from the input given last, with a warning; it reads only
local files.`,
		Example: `  lifeline report shard-1.json shard-2.json
  lifeline report ~/.local/state/lifeline/runs/20261203T*`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			results, err := readReports(args)
			if err != nil {
				return err
			}
			byHost := map[string]*session.Result{}
			var order []string
			for _, r := range results {
				if _, dup := byHost[r.Host]; dup {
					fmt.Fprintf(g.stderr, "lifeline: warning: %s is in more than one input: reporting the last one\n", textsafe.Escape(r.Host))
				} else {
					order = append(order, r.Host)
				}
				byHost[r.Host] = r
			}
			sort.Strings(order)
			merged := make([]*session.Result, len(order))
			for i, h := range order {
				merged[i] = byHost[h]
			}
			pr := &progress{p: g.printer(), start: time.Now(), now: time.Now}
			pr.done("merged", "", merged)
			if ferr := session.Err(merged); ferr != nil {
				return failedError{ferr.Error()}
			}
			return nil
		},
	}
}

// readReports reads results from run folders (hosts/HOST.json) and --json
// documents.
func readReports(paths []string) ([]*session.Result, error) {
	var out []*session.Result
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, usagef("report: %v", err)
		}
		if st.IsDir() {
			files, _ := filepath.Glob(filepath.Join(p, "hosts", "*.json"))
			n := 0
			for _, f := range files {
				if strings.HasSuffix(f, ".snapshot.json") || strings.HasSuffix(f, ".tx.json") {
					continue
				}
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, fmt.Errorf("report: %w", err)
				}
				r := &session.Result{}
				if err := json.Unmarshal(b, r); err != nil || r.Host == "" {
					return nil, usagef("report: %s is not a host result (%v)", f, err)
				}
				out = append(out, r)
				n++
			}
			if n == 0 {
				return nil, usagef("report: %s holds no host results (hosts/*.json): not a run folder", p)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, usagef("report: %v", err)
		}
		var doc jsonResults
		if err := json.Unmarshal(b, &doc); err != nil || doc.Results == nil {
			return nil, usagef("report: %s is not the --json document of an apply or exec run (%v)", p, err)
		}
		out = append(out, doc.Results...)
	}
	return out, nil
}
