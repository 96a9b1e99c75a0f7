package revert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// errLockBusy means another helper process holds the host lock right now
// (a short-lived verb is running). Worth retrying after a moment.
var errLockBusy = errors.New("another lifeline helper is running on this host")

// hostLock is an exclusive flock on STATE/lock. Every verb that changes a
// record or the firewall holds it, so confirm, apply, abort, begin and the
// timer's revert never interleave. The kernel drops it when the process
// dies, so a killed helper never leaves the host locked.
type hostLock struct{ f *os.File }

// lockHost takes the lock, polling until wait has passed or ctx ends.
func lockHost(ctx context.Context, path string, wait time.Duration) (*hostLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	giveUp := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &hostLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(giveUp) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s after %s: %w", path, wait, errLockBusy)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// unlock releases the lock; safe on nil.
func (l *hostLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
