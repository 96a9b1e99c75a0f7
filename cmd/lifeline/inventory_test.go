package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/inventory"
)

// runInventoryCLI runs lifeline with args from the shared test inventories'
// folder, so that ruleset paths print relative and stable.
func runInventoryCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("LIFELINE_INVENTORY", "")
	t.Chdir("../../testdata/inventories")
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
	root := newRootCmd(g)
	root.SetArgs(args)
	code = exitCode(g, root.Execute()) // before reading stderr: it prints there
	return out.String(), errb.String(), code
}

func TestInventoryCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    string // exact, when set
		outHas     []string
		stderrHave string
	}{
		{
			name: "list a pattern",
			args: []string{"-i", "lifeline.yaml", "inventory", "list", "prod:!web02"},
			wantOut: `HOST   ADDRESS   USER  PORT  JUMP     RULESET        GROUPS
web01  10.0.1.1  root  22    bastion  rules/web.nft  prod,web
db01   10.0.2.1  dba   2222  bastion  rules/db.nft   db,prod
db02   10.0.2.2  root  22    bastion  rules/db.nft   db,prod
`,
			stderrHave: "/testdata/inventories/lifeline.yaml:27: host db01: backend: is not read: lifeline detects each host's firewall backend itself; remove it",
		},
		{
			name:    "list with limit",
			args:    []string{"-i", "ansible.ini", "inventory", "list", "prod", "--limit", "db-even*:!db-even0"},
			outHas:  []string{"db-even2", "db-even6", "admin@bastion", "2200"},
			wantOut: "",
		},
		{
			name:   "sources",
			args:   []string{"-i", "lifeline.yaml", "inventory", "list", "db01", "--sources"},
			outHas: []string{"\ndb01:\n", "port           2222", "host db01 (lifeline.yaml:26)", "jump           bastion", "group prod (lifeline.yaml:33)"},
		},
		{
			name:   "verbose shows sources too",
			args:   []string{"-v", "-i", "lifeline.yaml", "inventory", "list", "h02"},
			outHas: []string{"h02:\n", "defaults (lifeline.yaml:5)"},
		},
		{
			name:    "graph of a group",
			args:    []string{"-i", "ansible.yaml", "inventory", "graph", "web"},
			wantOut: "@web:\n  |--web01.example.com\n  |--web02.example.com\n  |--web03.example.com\n  |--web-canary\n",
		},
		{
			name:   "graph of all",
			args:   []string{"-i", "ansible.ini", "inventory", "graph"},
			outHas: []string{"@all:\n  |--@prod:\n  |  |--@db:\n", "  |--@ungrouped:\n  |  |--bastion\n"},
		},
		{
			name:       "unknown target suggests names",
			args:       []string{"-i", "lifeline.yaml", "inventory", "list", "web3"},
			code:       exitUsage,
			stderrHave: `lifeline: unknown host or group "web3" (did you mean web, web01, web02?)`,
		},
		{
			name:       "unknown graph group",
			args:       []string{"-i", "lifeline.yaml", "inventory", "graph", "prd"},
			code:       exitUsage,
			stderrHave: `lifeline: unknown group "prd" (did you mean prod?)`,
		},
		{
			name:       "no inventory",
			args:       []string{"inventory", "list"},
			code:       exitUsage,
			stderrHave: "lifeline: no inventory: give -i FILE or set $LIFELINE_INVENTORY",
		},
		{
			name:       "missing inventory file",
			args:       []string{"-i", "nope.yaml", "inventory", "list"},
			code:       exitUsage,
			stderrHave: "nope.yaml: no such file or directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runInventoryCLI(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout =\n%s\nwant\n%s", out, tt.wantOut)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if tt.stderrHave != "" && !strings.Contains(errOut, tt.stderrHave) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tt.stderrHave)
			}
		})
	}
}

func TestInventoryListJSON(t *testing.T) {
	out, errOut, code := runInventoryCLI(t, "--json", "-i", "lifeline.yaml", "inventory", "list", "web")
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, errOut)
	}
	var hosts []*inventory.Host
	if err := json.Unmarshal([]byte(out), &hosts); err != nil {
		t.Fatalf("stdout is not a JSON list of hosts: %v\n%s", err, out)
	}
	if len(hosts) != 2 || hosts[0].Name != "web01" || hosts[1].Sources["ruleset"] != "group web (lifeline.yaml:37)" {
		t.Errorf("hosts = %+v", hosts)
	}
}
