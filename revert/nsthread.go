package revert

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Trial loads and the preflight's sandbox run in thread-private network
// namespaces, their links made over rtnetlink (internal/rtnl): every
// process spawned costs milliseconds, and both ride on begin, whose cost
// the operator waits for.

// nsThread is one goroutine locked to an OS thread that has unshared its
// network namespace: functions given to do run in that namespace (sockets
// they create, processes they start, netlink they speak). The thread is
// never unlocked, so it ends with the goroutine and the namespace goes
// with its last user.
type nsThread struct {
	work chan func()
	fd   int // the namespace (/proc/thread-self/ns/net), for moving links into it
	once sync.Once
	up   chan struct{} // closed once the goroutine is locked to a thread that is not the main one
}

func newNSThread() (*nsThread, error) {
	t := &nsThread{work: make(chan func())}
	ready := make(chan error, 1)
	go t.run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}

// run is the thread's goroutine. Never on the process's main thread: the
// runtime cannot end that one, so it would stay in the sandbox namespace,
// and /proc/self/net (which is the main thread's) would then describe the
// sandbox to every later reader in the process. On the main thread, run
// starts itself again elsewhere, holding the main thread until the new one
// is locked to its own.
func (t *nsThread) run(ready chan error) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		go t.run(ready)
		<-t.started()
		runtime.UnlockOSThread()
		return
	}
	t.markStarted()
	t.body(ready)
}

func (t *nsThread) started() chan struct{} {
	t.once.Do(func() { t.up = make(chan struct{}) })
	return t.up
}

func (t *nsThread) markStarted() { close(t.started()) }

func (t *nsThread) body(ready chan error) {
	// the thread stays locked: it dies with the goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		ready <- fmt.Errorf("unshare the network namespace: %w", err)
		return
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		ready <- fmt.Errorf("open the sandbox namespace: %w", err)
		return
	}
	t.fd = fd
	ready <- nil
	for f := range t.work {
		f()
	}
	unix.Close(fd)
}

// do runs f in the thread's namespace and waits for it.
func (t *nsThread) do(f func() error) error {
	done := make(chan error, 1)
	t.work <- func() { done <- f() }
	return <-done
}

func (t *nsThread) close() { close(t.work) }
