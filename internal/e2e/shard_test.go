package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// TestShardsAndReport: two shards of one rollout over a 10-host lab
// together touch every host exactly once; report merges their --json
// documents (and their run folders) into one answer.
func TestShardsAndReport(t *testing.T) {
	t.Parallel()
	l := labtest.Start(t, labtest.Options{Hosts: 10, InitExe: lifelineBin})
	inv := hostRulesetInventory(t, l)
	dir := t.TempDir()
	seen := map[string]int{}
	var docs, runDirs []string
	for _, shard := range []string{"1/2", "2/2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		stdout, stderr, code := cli(t, ctx, "-i", inv, "--json", "apply", "all", "--shard", shard, "--forks", "5")
		cancel()
		var doc struct {
			applyDoc
			RunDir string `json:"run_dir"`
		}
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != 0 {
			t.Fatalf("shard %s: exit %d (%v)\n%s\n%s", shard, code, err, stdout, stderr)
		}
		for _, r := range doc.Results {
			if r.Outcome != "confirmed" {
				t.Fatalf("shard %s: %s %s: %s", shard, r.Host, r.Outcome, r.Error)
			}
			seen[r.Host]++
		}
		p := filepath.Join(dir, "shard-"+shard[:1]+".json")
		if err := os.WriteFile(p, []byte(stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		docs, runDirs = append(docs, p), append(runDirs, doc.RunDir)
	}
	if len(seen) != len(l.Hosts) {
		t.Fatalf("the two shards touched %d of %d hosts: %v", len(seen), len(l.Hosts), seen)
	}
	for h, n := range seen {
		if n != 1 {
			t.Fatalf("%s was in %d shards", h, n)
		}
	}
	for _, inputs := range [][]string{docs, runDirs} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		stdout, stderr, code := cli(t, ctx, append([]string{"--json", "report"}, inputs...)...)
		cancel()
		var merged applyDoc
		if err := json.Unmarshal([]byte(stdout), &merged); err != nil || code != 0 || !merged.OK || len(merged.Results) != len(l.Hosts) || merged.Counts["confirmed"] != len(l.Hosts) {
			t.Fatalf("report %v: exit %d (%v), ok %v, %d results %v\n%s\n%s", inputs, code, err, merged.OK, len(merged.Results), merged.Counts, stdout, stderr)
		}
	}
}
