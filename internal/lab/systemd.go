//go:build linux

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Init kinds of a lab host ([Host.Init]).
const (
	InitLab     = ""        // the lab's own small init (RunInit)
	InitSystemd = "systemd" // systemd as PID 1 in a systemd-nspawn container
)

// Paths inside a systemd host's folder.
const (
	rootUpper = "root"      // overlay upper layer of the container's /
	rootWork  = "root-work" // overlay work dir
	rootMerge = "rootfs"    // mountpoint of the overlay (in nspawn's private mount namespace only)
)

// systemdBootTimeout bounds a systemd host's boot until sshd listens.
const systemdBootTimeout = 90 * time.Second

// prepareSystemdHost (re)creates DIR/hosts/NAME for a systemd host: the
// overlay's upper layer with the host's keys, sshd_config, hostname,
// machine-id, lab key and persisted baseline ruleset.
func prepareSystemdHost(h *Host, labPub string) (hostKeys, error) {
	if err := os.RemoveAll(h.Dir); err != nil {
		return nil, fmt.Errorf("clean %s: %w", h.Dir, err)
	}
	upper := filepath.Join(h.Dir, rootUpper)
	for _, d := range []string{rootWork, rootMerge} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// The upper layer's directories give the merged ones their modes.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"", 0o755}, {"etc", 0o755}, {"etc/ssh", 0o755}, {"etc/ssh/lab_authorized_keys", 0o755}, {"root", 0o700}, {"root/.ssh", 0o700}} {
		p := filepath.Join(upper, d.path)
		if err := os.MkdirAll(p, d.mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return nil, err
		}
	}
	var keys hostKeys
	for _, k := range []struct {
		file string
		priv any
	}{{"ssh_host_ed25519_key", newEd25519()}, {"ssh_host_ecdsa_key", newECDSA()}} {
		pub, err := writeKey(filepath.Join(upper, "etc", "ssh", k.file), k.priv, "root@"+h.Name)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(pub)
		keys = append(keys, f[0]+" "+f[1])
	}
	machineID := make([]byte, 16)
	if _, err := rand.Read(machineID); err != nil {
		return nil, err
	}
	files := []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"etc/ssh/sshd_config", 0o644, sshdConfig(h.Port)},
		{"etc/ssh/lab_authorized_keys/root", 0o644, labPub + "\n"},
		{"root/.ssh/authorized_keys", 0o600, labPub + "\n"},
		{"etc/hostname", 0o644, h.Name + "\n"},
		{"etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + h.Name + "\n"},
		{"etc/machine-id", 0o444, hex.EncodeToString(machineID) + "\n"},
		{"etc/nftables.conf", 0o755, nftBaseline(h.Port)},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(upper, f.path), []byte(f.data), f.mode); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// systemdNetns configures the host's links from outside, in its netns,
// before the first boot: the address outlives container reboots as the
// netns does, like a static config on a real host.
func (l *Lab) systemdNetns(ctx context.Context, h *Host) error {
	var b strings.Builder
	b.WriteString("link set lo up\n")
	for _, lc := range hostLinks(h) {
		for _, a := range lc.Addrs {
			fmt.Fprintf(&b, "address add %s dev %s nodad\n", a, lc.Name)
		}
		fmt.Fprintf(&b, "link set %s up\n", lc.Name)
	}
	if err := runIP(ctx, strings.NewReader(b.String()), "-n", h.Netns, "-batch", "-"); err != nil {
		return fmt.Errorf("configure network of systemd host %s: %w", h.Name, err)
	}
	return nil
}

// startSystemd boots the host's container: in a private mount namespace
// (so the root overlay vanishes with it, also after a crash) it mounts the
// overlay and execs systemd-nspawn, which joins the host's netns. It returns
// the pid of systemd-nspawn; the container's PID 1 is found with
// [containerInit].
func startSystemd(rootfs string, h *Host) (int, error) {
	logf, err := os.OpenFile(filepath.Join(h.Dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open console log: %w", err)
	}
	defer logf.Close()
	merged := filepath.Join(h.Dir, rootMerge)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, filepath.Join(h.Dir, rootUpper), filepath.Join(h.Dir, rootWork))
	// nspawn --keep-unit runs the container in nspawn's own cgroup: give
	// each host its own, or (started from the root cgroup) every
	// container's systemd shares one "payload" tree, removes the others'
	// unit cgroups, and units fail at boot ("Failed to attach to cgroup").
	script := `set -e
for h in ` + strings.Join(cgroupHierarchies(), " ") + `; do
  mkdir -p "$h/` + cgroupParent + `/$3"
  echo $$ > "$h/` + cgroupParent + `/$3/cgroup.procs"
done
mount -t overlay overlay -o "$1" "$2"
exec systemd-nspawn --quiet --boot --register=no --keep-unit --console=read-only \
  --capability=CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_ADMIN \
  --network-namespace-path="/run/netns/$3" --machine="$3" --hostname="$4" -D "$2"`
	// The machine name is unique on the machine (nspawn keeps state under
	// /run/systemd/nspawn by that name); the hostname is the host's.
	cmd := exec.Command("unshare", "--mount", "--propagation=private", "--", "/bin/sh", "-c", script, "sh", opts, merged, h.Netns, h.Name)
	cmd.Env = []string{
		hostDirEnv + "=" + h.Dir, // marks the process as this host's (teardown)
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
	}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start systemd-nspawn for %s: %w", h.Name, err)
	}
	go func() { _ = cmd.Wait() }() // reap it when it exits (crash, reboot, down) while we live
	return cmd.Process.Pid, nil
}

// cgroupParent is the folder, in each cgroup hierarchy nspawn uses, that
// holds one cgroup per systemd host (named after its netns).
const cgroupParent = "lifeline-lab"

// cgroupHierarchies are the cgroup mounts systemd-nspawn places a container
// in: the unified hierarchy, plus name=systemd on a hybrid (v1) machine.
func cgroupHierarchies() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"} // unified only
	}
	var out []string
	for _, h := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// removeCgroups removes the (empty, once the container died) cgroup trees
// of the systemd hosts whose netns names match the glob, deepest first.
func removeCgroups(netnsGlob string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		roots, _ := filepath.Glob(filepath.Join(h, cgroupParent, netnsGlob))
		for _, root := range roots {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
				}
			}
		}
		_ = os.Remove(filepath.Join(h, cgroupParent)) // only when no other lab uses it
	}
	return errors.Join(errs...)
}

// nspawnPropagate is where systemd-nspawn keeps a folder per machine name;
// it cannot remove it itself when /run is not a tmpfs.
const nspawnPropagate = "/run/systemd/nspawn/propagate"

// removeNspawnState removes what systemd-nspawn left of the lab's machines
// (named after their netns, ll<ID>-sNN).
func removeNspawnState(id string) error {
	left, err := filepath.Glob(filepath.Join(nspawnPropagate, nsPrefix(id)+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range left {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// containerInit returns the root-namespace pid of the PID 1 that lives in
// the host's netns, or 0.
func containerInit(netns string) int {
	want, ok := netnsInode(netns)
	if !ok {
		return 0
	}
	for _, pid := range allPIDs() {
		if ino, ok := procNetnsInode(pid); !ok || ino != want {
			continue
		}
		if nsPID1(pid) && pidRunning(pid) {
			return pid
		}
	}
	return 0
}

// nsPID1 reports whether pid is PID 1 of its own (nested) pid namespace.
func nsPID1(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			return len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	return false
}

// bootSystemd starts the container and records its pids; it returns once
// systemd runs (not yet sshd: see waitSystemdSSHD).
func (l *Lab) bootSystemd(ctx context.Context, h *Host) error {
	rootfs := l.Rootfs
	if !rootfsComplete(rootfs) {
		return fmt.Errorf("systemd host %s: root %s is missing (hint: lifeline lab up builds it again)", h.Name, rootfs)
	}
	npid, err := startSystemd(rootfs, h)
	if err != nil {
		return err
	}
	var ipid int
	err = pollUntil(ctx, 30*time.Second, func() bool {
		ipid = containerInit(h.Netns)
		return ipid != 0 || !pidRunning(npid)
	}, fmt.Sprintf("wait for systemd host %s's PID 1", h.Name))
	if err == nil && ipid == 0 {
		err = fmt.Errorf("systemd-nspawn exited (see %s)", filepath.Join(h.Dir, "console.log"))
	}
	if err != nil {
		_ = syscall.Kill(npid, syscall.SIGKILL)
		return fmt.Errorf("boot systemd host %s: %w", h.Name, err)
	}
	l.mu.Lock()
	h.InitPID, h.NspawnPID = ipid, npid
	l.mu.Unlock()
	return nil
}

// waitSystemdSSHD returns once the host's sshd listens, or fails when the
// container exits or systemdBootTimeout passes.
func (l *Lab) waitSystemdSSHD(ctx context.Context, h *Host) error {
	ctx, cancel := context.WithTimeout(ctx, systemdBootTimeout)
	defer cancel()
	for {
		pid := l.initPID(h)
		if !initAlive(pid, h.Netns) {
			return fmt.Errorf("systemd host %s: container exited (see %s)", h.Name, filepath.Join(h.Dir, "console.log"))
		}
		if listening(pid, h.Port) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("systemd host %s: sshd does not listen on port %d: %w (hint: journalctl -u ssh in the container; console log %s)", h.Name, h.Port, ctx.Err(), filepath.Join(h.Dir, "console.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// crashSystemd SIGKILLs the container's PID 1 (the kernel kills its pid
// namespace) and then systemd-nspawn, and waits until both are gone.
func (l *Lab) crashSystemd(ctx context.Context, h *Host) error {
	l.mu.Lock()
	ipid, npid := h.InitPID, h.NspawnPID
	l.mu.Unlock()
	if initAlive(ipid, h.Netns) {
		if err := syscall.Kill(ipid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("crash systemd host %s: kill PID 1 (%d): %w", h.Name, ipid, err)
		}
	}
	if isLabInit(npid, h.Dir) {
		// nspawn exits by itself once its payload died; give it a moment.
		_ = pollUntil(ctx, 5*time.Second, func() bool { return !pidRunning(npid) }, "")
		_ = syscall.Kill(npid, syscall.SIGKILL)
	}
	if err := pollUntil(ctx, 10*time.Second, func() bool { return !pidRunning(ipid) && !pidRunning(npid) },
		fmt.Sprintf("crash systemd host %s", h.Name)); err != nil {
		return err
	}
	if err := errors.Join(os.RemoveAll(filepath.Join(nspawnPropagate, h.Netns)), removeCgroups(h.Netns)); err != nil {
		return fmt.Errorf("crash systemd host %s: %w", h.Name, err)
	}
	return nil
}

// Reboot reboots a host and returns once sshd answers again. A systemd host
// runs `systemctl reboot`: systemd stops its units and the container exits
// (systemd-nspawn does not restart it by itself), then the lab boots it
// again on the same overlay, as the host's firmware would. A host with the
// lab's init has no orderly shutdown: it is crashed and booted.
func (l *Lab) Reboot(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if h.Init != InitSystemd {
		if err := l.Crash(ctx, host); err != nil {
			return err
		}
		return l.Boot(ctx, host)
	}
	ipid := l.initPID(h)
	if !initAlive(ipid, h.Netns) {
		return fmt.Errorf("reboot lab host %s: not running (hint: Boot it)", host)
	}
	// The command may lose its container under it: its error says nothing.
	_, _ = l.Exec(ctx, host, "systemctl", "reboot")
	if err := pollUntil(ctx, 60*time.Second, func() bool { return !pidRunning(ipid) }, fmt.Sprintf("reboot lab host %s: wait for the shutdown", host)); err != nil {
		return err
	}
	if err := l.crashSystemd(ctx, h); err != nil { // reap nspawn when it lingers
		return err
	}
	return l.Boot(ctx, host)
}

// Journal returns the host's journal lines of the units matching pattern
// (journalctl -u PATTERN -o cat), for tests: systemd hosts only.
func (l *Lab) Journal(ctx context.Context, host, pattern string) (string, error) {
	h, err := l.host(host)
	if err != nil {
		return "", err
	}
	if h.Init != InitSystemd {
		return "", fmt.Errorf("journal of lab host %s: it does not run systemd", host)
	}
	out, err := l.Exec(ctx, host, "journalctl", "--no-pager", "-o", "short-monotonic", "-u", pattern)
	return string(out), err
}
