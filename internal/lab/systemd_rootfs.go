//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The systemd hosts boot a debootstrapped Debian root, built once per
// machine into a cache folder and shared read-only (the lower layer of every
// host's overlay).

// RootfsCacheEnv overrides the folder that holds the cached systemd root
// file systems ([DefaultRootfsCache]).
const RootfsCacheEnv = "LIFELINE_LAB_ROOTFS_CACHE"

// DefaultRootfsCache is where [EnsureSystemdRootfs] keeps its roots.
const DefaultRootfsCache = "/var/cache/lifeline-lab/bookworm-systemd"

// rootfsVersion changes whenever the build below changes in a way the
// package list does not show: a new value builds a new root.
const rootfsVersion = "1"

// Debian suite and mirror of the systemd hosts' root.
const (
	rootfsSuite  = "bookworm"
	rootfsMirror = "http://deb.debian.org/debian"
)

// rootfsPackages are installed on top of debootstrap's minbase variant.
var rootfsPackages = []string{
	"systemd", "systemd-sysv", "dbus", "openssh-server", "nftables", "iptables",
	"iproute2", "sudo", "procps", "util-linux", "python3", // the e2e tests read tx records with python3's json
}

// systemdPrereqHint is what to install for systemd hosts.
const systemdPrereqHint = "apt-get install systemd-container mmdebstrap (or debootstrap)"

// rootfsKey names a root by what went into it.
func rootfsKey() string {
	sum := sha256.Sum256([]byte(rootfsVersion + "\n" + rootfsSuite + "\n" + rootfsMirror + "\n" + strings.Join(rootfsPackages, ",")))
	return hex.EncodeToString(sum[:])[:12]
}

// rootfsCacheDir is the cache folder ($LIFELINE_LAB_ROOTFS_CACHE or the
// default).
func rootfsCacheDir() string {
	if d := os.Getenv(RootfsCacheEnv); d != "" {
		return d
	}
	return DefaultRootfsCache
}

// CheckSystemdPrereqs reports whether this machine can run systemd hosts:
// the lab's prerequisites plus systemd-nspawn and mmdebstrap or debootstrap. The error
// wraps [ErrPrereq] and says what to install.
func CheckSystemdPrereqs() error {
	if err := CheckPrereqs(); err != nil {
		return err
	}
	var missing []string
	for _, t := range []string{"systemd-nspawn", "unshare", "mount"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	_, mm := exec.LookPath("mmdebstrap")
	_, deb := exec.LookPath("debootstrap")
	if mm != nil && deb != nil {
		missing = append(missing, "mmdebstrap or debootstrap")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found (hint: %s)", ErrPrereq, strings.Join(missing, ", "), systemdPrereqHint)
	}
	return nil
}

// EnsureSystemdRootfs returns the cached Debian root of the systemd hosts,
// building it first when the cache lacks it (minutes: see buildRootfs;
// about 60 MB come from the Debian mirror). The build goes to a
// temporary folder renamed into place when complete, under an exclusive lock
// so concurrent callers build it once. log gets progress lines (nil: quiet).
func EnsureSystemdRootfs(ctx context.Context, log io.Writer) (string, error) {
	if err := CheckSystemdPrereqs(); err != nil {
		return "", err
	}
	cache := rootfsCacheDir()
	final := filepath.Join(cache, rootfsKey())
	if rootfsComplete(final) {
		return final, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("systemd rootfs cache %s: %w", cache, err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("lock systemd rootfs cache: %w", err)
	}
	defer lock.Close()
	if err := flockCtx(ctx, lock, func() {
		if log != nil {
			fmt.Fprintf(log, "lab: waiting for another process that builds the systemd hosts' root in %s\n", cache)
		}
	}); err != nil {
		return "", fmt.Errorf("lock systemd rootfs cache %s: %w", cache, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if rootfsComplete(final) { // another process built it while we waited
		return final, nil
	}
	tmp := final + ".building"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("remove unfinished systemd rootfs %s: %w", tmp, err)
	}
	start := time.Now()
	tool, args := bootstrapCommand(tmp)
	if log != nil {
		fmt.Fprintf(log, "lab: building the systemd hosts' root (%s %s) in %s, once per machine\n", tool, rootfsSuite, final)
	}
	if err := buildRootfs(ctx, tmp, tool, args); err != nil {
		return "", fmt.Errorf("build systemd rootfs in %s: %w (hint: check that %s is reachable)", tmp, err, rootfsMirror)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("install systemd rootfs %s: %w", final, err)
	}
	if log != nil {
		fmt.Fprintf(log, "lab: systemd root built in %v\n", time.Since(start).Round(time.Second))
	}
	// Roots of older keys are dead weight (about 250 MB each). A lab still
	// running on one (its key changed under it) must be brought up again.
	if old, err := filepath.Glob(filepath.Join(cache, "[0-9a-f]*")); err == nil {
		for _, o := range old {
			if o != final && len(filepath.Base(o)) == len(rootfsKey()) {
				_ = os.RemoveAll(o)
			}
		}
	}
	return final, nil
}

// rootfsComplete: the build writes this marker as its last step.
func rootfsComplete(root string) bool {
	_, err := os.Stat(filepath.Join(root, "etc", "lifeline-lab-rootfs"))
	return err == nil
}

// flockCtx takes an exclusive flock, giving up when ctx ends; waiting is
// called once when the lock is held by someone else.
func flockCtx(ctx context.Context, f *os.File, waiting func()) error {
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, time.Second) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if waiting != nil {
			waiting()
			waiting = nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// rootfsSetup runs inside the new root (chroot) after debootstrap: what
// every systemd host shares. Per-host files (keys, hostname, sshd_config,
// machine-id) come from the host's overlay.
const rootfsSetup = `set -eu
# Host keys are made per host; never share the build's.
rm -f /etc/ssh/ssh_host_*
# sshd without PAM refuses a locked root ("!"): allow key logins.
sed -i 's/^root:[^:]*:/root:*:/' /etc/shadow
# A fresh machine-id per host (the overlay); empty means "first boot".
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# The firewall of the persisted config loads at boot, like a real host.
systemctl enable nftables.service
# Quiet, fast boots: nothing here needs these in a lab container.
systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service getty@tty1.service console-getty.service 2>/dev/null || true
systemctl disable ssh.socket 2>/dev/null || true
systemctl enable ssh.service
# The journal stays in memory (the overlay starts clean on every lab up).
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' > /etc/systemd/journald.conf.d/lab.conf
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
echo ` + rootfsVersion + ` > /etc/lifeline-lab-rootfs
`

// buildRootfs bootstraps the root (bootstrapCommand) and runs rootfsSetup
// in it.
func buildRootfs(ctx context.Context, dir, tool string, args []string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := runBuildStep(ctx, 20*time.Minute, nil, tool, args...); err != nil {
		return err
	}
	return runBuildStep(ctx, 2*time.Minute, strings.NewReader(rootfsSetup), "chroot", dir, "/bin/sh", "-s")
}

// bootstrapCommand is the command line that bootstraps the root into dir:
// mmdebstrap when installed (apt's parallel downloads, dpkg with unsafe
// I/O: 1.5 to 4 minutes measured here), else debootstrap (11 minutes: one
// download at a time and an fsync per file).
func bootstrapCommand(dir string) (string, []string) {
	include := "--include=" + strings.Join(rootfsPackages, ",")
	if _, err := exec.LookPath("mmdebstrap"); err == nil {
		return "mmdebstrap", []string{"--variant=minbase", include, "--dpkgopt=force-unsafe-io", "--format=directory", rootfsSuite, dir, rootfsMirror}
	}
	return "debootstrap", []string{"--variant=minbase", include, rootfsSuite, dir, rootfsMirror}
}

func runBuildStep(ctx context.Context, limit time.Duration, stdin io.Reader, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := bytes.TrimSpace(out.Bytes())
		if len(tail) > 1500 {
			tail = tail[len(tail)-1500:]
		}
		return fmt.Errorf("%s: %w: %s", name, err, tail)
	}
	return nil
}
