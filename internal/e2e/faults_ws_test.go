package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// wsRun is one running `lifeline apply --json-stream`.
type wsRun struct {
	cmd    *exec.Cmd
	events chan [2]string
	done   chan struct{}
	res    *result
	killed bool
	mu     sync.Mutex
	lines  []string // the stream, for the log of a failed cell
}

func startWS(t *testing.T, cfg, host, path string, extra ...string) *wsRun {
	// --force: the matrix tests the revert of a lockout, which apply's
	// preflight would refuse before anything changes (TestPreflight covers
	// that); for a good ruleset it changes nothing
	args := append([]string{"-F", cfg, "apply", "--json-stream", host, path, "--force",
		"--confirm-timeout=" + faultTimeout.String(), "--revert-grace=" + faultGrace.String()}, extra...)
	cmd := exec.Command(lifelineBin, args...)
	cmd.Env = append(os.Environ(), "LIFELINE_HELPER_"+strings.ToUpper(runtime.GOARCH)+"="+helperBin, "XDG_STATE_HOME="+stateDir(t))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &wsRun{cmd: cmd, events: make(chan [2]string, 256), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 4<<20), 4<<20)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
			var ev struct {
				Type, Phase, Status string
				applyDoc
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			switch ev.Type {
			case "event":
				select {
				case w.events <- [2]string{ev.Phase, ev.Status}:
				default:
				}
			case "result":
				if len(ev.Results) == 1 {
					w.res = &ev.Results[0]
				}
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			w.mu.Lock()
			t.Logf("lifeline apply %s: stream:\n%s\nstderr:\n%s", host, strings.Join(w.lines, "\n"), stderr.String())
			w.mu.Unlock()
		}
	})
	return w
}

// waitEvent returns once the stream showed phase/status.
func (w *wsRun) waitEvent(want [2]string, limit time.Duration) error {
	tm := time.NewTimer(limit)
	defer tm.Stop()
	for {
		select {
		case ev := <-w.events:
			if ev == want {
				return nil
			}
		case <-w.done:
			return fmt.Errorf("the workstation ended before %s/%s", want[0], want[1])
		case <-tm.C:
			return fmt.Errorf("no %s/%s event within %s", want[0], want[1], limit)
		}
	}
}

func (w *wsRun) kill() {
	w.killed = true
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// wait returns the workstation's report once it exits ("killed" when it
// was, "" with an error when it ran past limit).
func (w *wsRun) wait(limit time.Duration) (*result, error) {
	select {
	case <-w.done:
	case <-time.After(limit):
		return nil, fmt.Errorf("the workstation still runs after %s", limit)
	}
	if w.killed {
		return nil, nil
	}
	if w.res == nil {
		return nil, fmt.Errorf("the workstation exited without a result")
	}
	return w.res, nil
}
