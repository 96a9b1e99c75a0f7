//go:build lifeline_faults

package revert

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// faultPointMax bounds a pause: a forgotten arm file delays the helper,
// it never hangs it.
const faultPointMax = 90 * time.Second

// faultPoint pauses the helper at a named point of a verb, for the lab's
// fault matrix (internal/e2e/faults_test.go), and only when the state dir
// holds the arm file faults/POINT (root-only: the state dir is 0700). It
// writes faults/POINT.reached with its pid, then waits until the arm file
// is removed (the test has injected its fault: killed this pid, cut the
// link, crashed the host, ...) or faultPointMax passed. An arm file is
// removed by the test, so each arming pauses one helper once.
func (e *engine) faultPoint(point string) {
	arm := filepath.Join(e.st.dir, "faults", point)
	if _, err := os.Stat(arm); err != nil {
		return
	}
	if err := os.WriteFile(arm+".reached", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return
	}
	e.logf("", "warning", "fault point %s: paused (pid %d) until %s is removed", point, os.Getpid(), arm)
	for end := time.Now().Add(faultPointMax); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(arm); errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
}
