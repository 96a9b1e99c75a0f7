//go:build linux

package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initConfig is DIR/hosts/NAME/init.json: what the init needs to know.
type initConfig struct {
	Name    string       `json:"name"`
	Port    int          `json:"port"`
	Backend string       `json:"backend"`
	Links   []linkConfig `json:"links"`
}

// Paths inside a host folder.
const (
	etcUpper = "etc"      // overlay upper layer of /etc
	etcWork  = "etc-work" // overlay work dir
	libDir   = "lib"      // bound on /var/lib/lifeline
)

// opsUID is the uid and gid of the sudo user ops.
const opsUID = 1500

// RunInit is the main of a lab host's init (PID 1 of the host's pid
// namespace). It never returns. Call it first thing in main (or TestMain)
// when [InitEnv] is set.
func RunInit() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("init: ")
	hostDir := os.Getenv(hostDirEnv)
	if hostDir == "" {
		log.Printf("%s is not set: started outside the lab", hostDirEnv)
		os.Exit(2)
	}
	if err := runInit(hostDir); err != nil {
		log.Printf("%v", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runInit(hostDir string) error {
	b, err := os.ReadFile(filepath.Join(hostDir, "init.json"))
	if err != nil {
		return fmt.Errorf("read host config: %w", err)
	}
	var cfg initConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("read host config: %w", err)
	}
	log.Printf("boot %s (pid %d)", cfg.Name, os.Getpid())
	if err := setupMounts(hostDir, cfg); err != nil {
		return err
	}
	if err := configureLinks(cfg.Links); err != nil {
		return err
	}
	// A fresh netns has no ruleset; a reboot empties the old one first.
	marker := filepath.Join(hostMount, "booted")
	if _, err := os.Stat(marker); err == nil {
		if err := resetFirewall(); err != nil {
			log.Printf("reset firewall: %v", err)
		}
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		log.Printf("write boot marker: %v", err)
	}
	if err := loadPersistedFirewall(); err != nil {
		log.Printf("load persisted firewall: %v", err)
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, sigStopSSHD, sigStartSSHD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	s := &sshdProc{log: filepath.Join(hostMount, "sshd.log")}
	if err := s.start(); err != nil {
		log.Printf("start sshd: %v", err)
	}
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			s.reapAll()
		case sigStopSSHD:
			s.stop()
		case sigStartSSHD:
			if err := s.start(); err != nil {
				log.Printf("start sshd: %v", err)
			}
		case syscall.SIGTERM, syscall.SIGINT:
			log.Printf("shutting down")
			s.stop()
			return nil
		}
	}
	return nil
}

// hostMount is where the init sees its host folder once /tmp, /run and
// /home are covered (the folder may live under any of them).
const hostMount = "/run/lifeline-lab"

func setupMounts(hostDir string, cfg initConfig) error {
	// Hold the host folder by fd: later mounts may hide its path.
	fd, err := unix.Open(hostDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open host dir: %w", err)
	}
	defer unix.Close(fd)
	type mnt struct {
		src, target, fstype string
		flags               uintptr
		data                string
	}
	// The fresh /proc is mounted first, so /proc/self/fd/N names the folder.
	hd := fmt.Sprintf("/proc/self/fd/%d", fd)
	mounts := []mnt{
		{"", "/", "", unix.MS_REC | unix.MS_PRIVATE, ""},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY, ""},
		{"overlay", "/etc", "overlay", 0, fmt.Sprintf("lowerdir=/etc,upperdir=%s,workdir=%s",
			filepath.Join(hostDir, etcUpper), filepath.Join(hostDir, etcWork))},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755,size=64m"},
		{hd, hostMount, "", unix.MS_BIND, ""},
		{hd + "/" + libDir, "/var/lib/lifeline", "", unix.MS_BIND, ""},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777,size=256m"},
		{"tmpfs", "/home", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755,size=64m"},
		{"tmpfs", "/root", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0700,size=64m"},
		{"tmpfs", "/var/log", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755,size=64m"},
	}
	// A fresh sysfs shows this netns's interfaces; drop the inherited one.
	_ = unix.Unmount("/sys", unix.MNT_DETACH)
	for _, m := range mounts {
		if m.target == hostMount || m.target == "/var/lib/lifeline" {
			if err := os.MkdirAll(m.target, 0o700); err != nil {
				return fmt.Errorf("create mountpoint %s: %w", m.target, err)
			}
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype+m.src, m.target, err)
		}
	}
	if err := unix.Sethostname([]byte(cfg.Name)); err != nil {
		return fmt.Errorf("set hostname %s: %w", cfg.Name, err)
	}
	if err := os.Mkdir("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("create /run/sshd: %w", err)
	}
	// login records sshd writes for pty sessions (quiet "lastlog_openseek")
	for _, f := range []string{"/var/log/lastlog", "/var/log/wtmp", "/var/log/btmp"} {
		if err := os.WriteFile(f, nil, 0o664); err != nil {
			return fmt.Errorf("create %s: %w", f, err)
		}
	}
	if err := os.Mkdir("/home/ops", 0o755); err != nil {
		return fmt.Errorf("create /home/ops: %w", err)
	}
	if err := os.Chown("/home/ops", opsUID, opsUID); err != nil {
		return fmt.Errorf("chown /home/ops: %w", err)
	}
	return nil
}

// legacyTables are the built-in chains of each legacy xtables table, used
// to reset it to empty with ACCEPT policies.
var legacyTables = map[string][]string{
	"filter":   {"INPUT", "FORWARD", "OUTPUT"},
	"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":      {"PREROUTING", "OUTPUT"},
	"security": {"INPUT", "FORWARD", "OUTPUT"},
}

// resetFirewall empties every ruleset of the netns, as a reboot does.
func resetFirewall() error {
	var errs []error
	if err := runLogged(nil, "nft", "flush", "ruleset"); err != nil {
		errs = append(errs, err)
	}
	for _, fam := range []struct{ names, restore string }{
		{"/proc/net/ip_tables_names", "iptables-legacy-restore"},
		{"/proc/net/ip6_tables_names", "ip6tables-legacy-restore"},
	} {
		b, err := os.ReadFile(fam.names)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var in strings.Builder
		for _, t := range strings.Fields(string(b)) {
			chains, ok := legacyTables[t]
			if !ok {
				continue
			}
			fmt.Fprintf(&in, "*%s\n", t)
			for _, c := range chains {
				fmt.Fprintf(&in, ":%s ACCEPT [0:0]\n", c)
			}
			in.WriteString("COMMIT\n")
		}
		if err := runLogged(strings.NewReader(in.String()), fam.restore); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loadPersistedFirewall loads the host's persisted rulesets, the way
// nftables.service and iptables-persistent do at boot.
func loadPersistedFirewall() error {
	var errs []error
	for _, p := range []struct{ file, tool string }{
		{"/etc/nftables.conf", "nft"},
		{"/etc/iptables/rules.v4", "iptables-restore"},
		{"/etc/iptables/rules.v6", "ip6tables-restore"},
	} {
		f, err := os.Open(p.file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		args := []string{}
		if p.tool == "nft" {
			args = []string{"-f", "-"}
		}
		if err := runLogged(f, p.tool, args...); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.file, err))
		}
		f.Close()
	}
	return errors.Join(errs...)
}

func runLogged(stdin io.Reader, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// sshdProc is the init's one managed child; every other child (orphans
// re-parented to PID 1) is only reaped.
type sshdProc struct {
	log string
	pid int
}

func (s *sshdProc) start() error {
	if s.pid != 0 {
		return nil
	}
	logf, err := os.OpenFile(s.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	pid, err := syscall.ForkExec("/usr/sbin/sshd", []string{"/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"}, &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		Files: []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return err
	}
	s.pid = pid
	log.Printf("sshd started (pid %d)", pid)
	return nil
}

func (s *sshdProc) stop() {
	if s.pid == 0 {
		return
	}
	pid := s.pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	t := time.AfterFunc(5*time.Second, func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	t.Stop()
	log.Printf("sshd stopped (pid %d, %v)", pid, ws)
	s.pid = 0
	s.reapAll()
}

func (s *sshdProc) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if pid == s.pid {
			log.Printf("sshd exited (pid %d, %v)", pid, ws)
			s.pid = 0
		}
	}
}
