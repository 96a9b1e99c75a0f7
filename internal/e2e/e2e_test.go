// Package e2e holds lifeline's end-to-end tests: the built lifeline binary
// against a lab of real sshds and real kernel rulesets (root, Linux).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/internal/lab"
)

var (
	lifelineBin string
	helperBin   string
	repoRoot    string
	stateHome   string
)

func TestMain(m *testing.M) {
	if os.Getenv(lab.InitEnv) != "" {
		lab.RunInit()
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "lle2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	stateHome = filepath.Join(dir, "state")
	lifelineBin = filepath.Join(dir, "lifeline")
	helperBin = filepath.Join(dir, "lifeline-helper")
	builds := [][]string{
		// lifeline_faults: the fault matrix's pause points (faults_test.go),
		// inert unless a test arms one in the host's state dir
		{"build", "-trimpath", "-tags", "lifeline_faults", "-ldflags=-s -w", "-o", helperBin, "./cmd/lifeline-helper"},
		{"build", "-o", lifelineBin, "./cmd/lifeline"},
	}
	for _, b := range builds {
		cmd := exec.Command("go", b...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n%s", strings.Join(b, " "), err, out)
			return 1
		}
	}
	return m.Run()
}

// result mirrors the fields of apply's --json document the tests read.
type result struct {
	Host          string        `json:"host"`
	Outcome       string        `json:"outcome"`
	Phase         string        `json:"phase"`
	TxID          string        `json:"tx_id"`
	Error         string        `json:"error"`
	Hint          string        `json:"hint"`
	Deadline      time.Time     `json:"deadline"`
	Diff          string        `json:"diff"`
	Connections   int           `json:"ssh_connections"`
	RoundTrips    int           `json:"round_trips"`
	HostProcesses int           `json:"host_processes"`
	Uploaded      int64         `json:"bytes_uploaded"`
	Took          time.Duration `json:"took_ns"`
	GuardChains   []string      `json:"guard_chains"`
	Warnings      []string      `json:"warnings"`
	Reboot        bool          `json:"reboot"`
	Path          string        `json:"path"`
	Timings       []struct {
		Phase string        `json:"phase"`
		Took  time.Duration `json:"took_ns"`
	} `json:"timings"`
	Holder *struct {
		TxID   string `json:"tx_id"`
		Origin string `json:"origin"`
	} `json:"holder"`
}

type applyDoc struct {
	RunID   string         `json:"run_id"`
	OK      bool           `json:"ok"`
	Counts  map[string]int `json:"counts"`
	Results []result       `json:"results"`
}

// cli runs the lifeline binary and returns stdout, stderr and the exit code.
func cli(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	return cliEnv(t, ctx, []string{"XDG_STATE_HOME=" + stateDir(t)}, args...)
}

// cliEnv is cli with env added to the process's environment.
func cliEnv(t *testing.T, ctx context.Context, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, lifelineBin, args...)
	cmd.Env = append(append(os.Environ(), "LIFELINE_HELPER_"+strings.ToUpper(runtime.GOARCH)+"="+helperBin), env...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run lifeline %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// stateDir is lifeline's XDG_STATE_HOME (run folders) for every test.
func stateDir(*testing.T) string { return stateHome }

// apply runs `lifeline apply --json` and decodes the one host's result.
func apply(t *testing.T, l *lab.Lab, cfg, host, ruleset string, extra ...string) (result, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"-F", cfg, "--json", "apply", host, filepath.Join(repoRoot, "testdata", "rulesets", ruleset)}, extra...)
	stdout, stderr, code := cli(t, ctx, args...)
	var doc applyDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Results) != 1 {
		t.Fatalf("apply %s %s: exit %d, unreadable JSON (%v)\nstdout: %s\nstderr: %s", host, ruleset, code, err, stdout, stderr)
	}
	return doc.Results[0], stderr, code
}

// liveRuleset is the host's whole ruleset, as its own tools print it, minus
// counters and generated comments: what "byte-for-byte unchanged" compares.
func liveRuleset(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, host, "sh", "-c", "nft list ruleset; for t in iptables-legacy-save ip6tables-legacy-save; do $t 2>/dev/null; done")
	if err != nil {
		t.Fatalf("%s: read live ruleset: %v\n%s", host, err, out)
	}
	return normalize(string(out))
}

var (
	counters    = regexp.MustCompile(`\[\d+:\d+\]`)
	nftCounters = regexp.MustCompile(`packets \d+ bytes \d+`)
)

// normalize drops counters and comments and sorts the top-level blocks
// (nft tables, iptables-save tables): a restore may recreate tables in
// another order, which changes no packet's fate.
func normalize(s string) string {
	var blocks []string
	var b strings.Builder
	flush := func() {
		if strings.TrimSpace(b.String()) != "" {
			blocks = append(blocks, b.String())
		}
		b.Reset()
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "table ") || strings.HasPrefix(line, "*") {
			flush()
		}
		line = nftCounters.ReplaceAllString(counters.ReplaceAllString(line, "[0:0]"), "packets 0 bytes 0")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	flush()
	sort.Strings(blocks)
	return strings.Join(blocks, "")
}

// sshWorks proves access with a fresh OpenSSH connection (not lifeline's).
func sshWorks(t *testing.T, cfg, host string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", host, "true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh %s: %v: %s", host, err, out)
	}
	return nil
}

// armed lists what on the host still holds a transaction open: watchdog
// processes and tx records that are not terminal.
func armed(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, host, "sh", "-c", `ps -eo pid,args | awk '$3 == "watchdog"'; python3 -c '
import glob, json
for p in glob.glob("/var/lib/lifeline/tx/*/record.json"):
    s = json.load(open(p)).get("state")
    if s in ("armed", "applied"):
        print(p, s)
'`)
	if err != nil {
		t.Fatalf("%s: %v\n%s", host, err, out)
	}
	return strings.TrimSpace(string(out))
}

// v6Config writes an ssh_config that reaches the front hosts over IPv6 with
// their own known_hosts (recorded with --accept-new on first use).
func v6Config(t *testing.T, l *lab.Lab) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "Include %s\n", l.SSHConfig)
	for _, h := range l.Hosts {
		if h.Address6 == "" || h.Jump != "" {
			continue
		}
		fmt.Fprintf(&b, "Host %s-v6\n  HostName %s\n  User %s\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  ConnectTimeout 5\n",
			h.Name, h.Address6, h.User, h.Port, l.Key, filepath.Join(dir, "known_hosts"))
	}
	p := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startStream starts lifeline with args (which ask for --json-stream) and
// returns the process and a scanner over its stdout; the process is killed
// at cleanup if still running.
func startStream(t *testing.T, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(lifelineBin, args...)
	cmd.Env = append(os.Environ(), "LIFELINE_HELPER_"+strings.ToUpper(runtime.GOARCH)+"="+helperBin, "XDG_STATE_HOME="+stateDir(t))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	return cmd, sc
}

// streamUntil starts `lifeline apply --json-stream` and returns once an
// event matching phase/status arrived; the caller owns the process.
func streamUntil(t *testing.T, cfg, host, ruleset, phase, status string, extra ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	args := append([]string{"-F", cfg, "apply", "--json-stream", host, filepath.Join(repoRoot, "testdata", "rulesets", ruleset)}, extra...)
	cmd, sc := startStream(t, args...)
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		var ev struct {
			Type, Host, Phase, Status, Msg string
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "event" && ev.Phase == phase && ev.Status == status {
			return cmd, sc
		}
	}
	t.Fatalf("apply %s %s: stream ended before %s/%s", host, ruleset, phase, status)
	return nil, nil
}

// watchdogPIDs lists the pids of the lifeline watchdogs running on host.
const watchdogPIDs = `ps -eo pid,args | awk '$3 == "watchdog" {print $1}'`

// signalWatchdogs sends sig (KILL, STOP, ...) to every lifeline watchdog
// on host, from its console; it fails the test when none runs.
func signalWatchdogs(t *testing.T, l *lab.Lab, host, sig string) {
	t.Helper()
	execOn(t, l, host, "sh", "-c", `pids=$(`+watchdogPIDs+`); [ -n "$pids" ] || { echo no watchdog running; exit 1; }; kill -`+sig+` $pids`)
}

// watchdogRunning reports whether a lifeline watchdog runs on host.
func watchdogRunning(t *testing.T, l *lab.Lab, host string) bool {
	t.Helper()
	return strings.TrimSpace(execOn(t, l, host, "sh", "-c", watchdogPIDs)) != ""
}
