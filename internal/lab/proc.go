//go:build linux

package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Environment of a re-executed init.
const (
	// InitEnv, when set in the environment, makes the binary run as a lab
	// host's init: its main (or TestMain) must call [RunInit] first thing.
	InitEnv = "LIFELINE_LAB_INIT"
	// hostDirEnv carries the host's folder (DIR/hosts/NAME) to the init.
	hostDirEnv = "LIFELINE_LAB_HOST"
)

// Signals the lab sends to a host's init.
const (
	sigStopSSHD  = syscall.SIGUSR1
	sigStartSSHD = syscall.SIGUSR2
)

// startInit starts the host's init in its netns and fresh mount, uts and pid
// namespaces, detached from the caller's session, and returns its pid. The
// caller's process reaps it if it dies while the caller lives.
func startInit(initExe string, h *Host) (int, error) {
	logf, err := os.OpenFile(filepath.Join(h.Dir, "init.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open init log: %w", err)
	}
	defer logf.Close()
	// The child inherits the netns of the OS thread that forks it, and gets
	// fresh mount, uts and pid namespaces: it is PID 1 of its pid namespace.
	cmd := exec.Command(initExe)
	cmd.Env = []string{
		InitEnv + "=1",
		hostDirEnv + "=" + h.Dir,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
	}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID,
		Setsid:     true,
	}
	if err := inNetns(h.Netns, cmd.Start); err != nil {
		return 0, fmt.Errorf("start init %s in netns %s: %w", initExe, h.Netns, err)
	}
	go func() { _ = cmd.Wait() }() // reap it when it dies (Crash, Down) while we live
	return cmd.Process.Pid, nil
}

// procStat returns the state letter and parent pid of pid, from /proc.
func procStat(pid int) (state byte, ppid int, comm string, ok bool) {
	if pid <= 0 {
		return 0, 0, "", false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, "", false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open || closing+4 > len(s) {
		return 0, 0, "", false
	}
	comm = s[open+1 : closing]
	fields := strings.Fields(s[closing+2:])
	if len(fields) < 2 {
		return 0, 0, "", false
	}
	ppid, _ = strconv.Atoi(fields[1])
	return fields[0][0], ppid, comm, true
}

// pidRunning reports whether pid exists and is not a zombie.
func pidRunning(pid int) bool {
	st, _, _, ok := procStat(pid)
	return ok && st != 'Z' && st != 'X'
}

func netnsInode(name string) (uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/run/netns", name), &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

func procNetnsInode(pid int) (uint64, bool) {
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return 0, false
	}
	// "net:[4026532281]"
	link = strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]")
	ino, err := strconv.ParseUint(link, 10, 64)
	return ino, err == nil
}

// initAlive reports whether pid runs and lives in the named netns (so a
// recycled pid is not mistaken for the host's init).
func initAlive(pid int, netns string) bool {
	if !pidRunning(pid) {
		return false
	}
	want, ok := netnsInode(netns)
	if !ok {
		return false
	}
	got, ok := procNetnsInode(pid)
	return ok && got == want
}

func allPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sshdChildren returns the running sshd processes whose parent is the init.
func sshdChildren(initPID int) []int {
	if initPID <= 0 {
		return nil
	}
	var out []int
	for _, pid := range allPIDs() {
		st, ppid, comm, ok := procStat(pid)
		if ok && ppid == initPID && comm == "sshd" && st != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// killNetnsProcesses SIGKILLs every process living in one of the named
// network namespaces (the lab's inits, their sshd and anything entered with
// the console) and waits until they are gone.
func killNetnsProcesses(ctx context.Context, names []string) error {
	inodes := map[uint64]bool{}
	for _, n := range names {
		if ino, ok := netnsInode(n); ok {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	var victims []int
	for _, pid := range allPIDs() {
		if ino, ok := procNetnsInode(pid); ok && inodes[ino] && pid != os.Getpid() {
			victims = append(victims, pid)
		}
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return pollUntil(ctx, 10*time.Second, func() bool {
		for _, pid := range victims {
			if pidRunning(pid) {
				return false
			}
		}
		return true
	}, fmt.Sprintf("kill %d lab processes", len(victims)))
}

// inNetns runs fn on an OS thread that has entered the named netns; the
// thread is discarded afterwards. Sockets created by fn belong to that netns.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		f, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// sshBanner connects to addr:port (from netns ns, or the current one when
// ns is "") and reads the SSH identification line.
func sshBanner(ctx context.Context, ns, addr string, port int) error {
	target := net.JoinHostPort(addr, strconv.Itoa(port))
	var conn net.Conn
	dial := func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		conn = c
		return err
	}
	var err error
	if ns == "" {
		err = dial()
	} else {
		err = inNetns(ns, dial)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read ssh banner from %s: %w", target, err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("read ssh banner from %s: got %q", target, strings.TrimSpace(line))
	}
	return nil
}
