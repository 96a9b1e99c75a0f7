//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/sync/errgroup"
)

// Backends a host can use; BackendMixed cycles the three over the hosts.
const (
	BackendNft            = "nft"
	BackendIptablesNft    = "iptables-nft"
	BackendIptablesLegacy = "iptables-legacy"
	BackendMixed          = "mixed"
)

// MaxHosts is the largest lab: every host needs an address in one /24.
const MaxHosts = 250

// Options configure [Up].
type Options struct {
	Dir     string    // lab folder; default "./lab"; keep it short (socket paths)
	Hosts   int       // number of hosts, 1..MaxHosts; default 3
	Backend string    // nft | iptables-nft | iptables-legacy | mixed (default)
	InitExe string    // binary re-executed as each host's init; default os.Executable()
	Log     io.Writer // progress lines; nil: quiet

	// Systemd adds that many hosts named s01.. that boot systemd as PID 1
	// in a systemd-nspawn container (backend nft, user root, front
	// network). Their Debian root is built once per machine and cached
	// ([EnsureSystemdRootfs]); Hosts + Systemd is at most MaxHosts.
	Systemd int
}

// Lab is a running (or crashed) lab, as recorded in DIR/lab.json.
// Its methods are safe for concurrent use.
type Lab struct {
	ID         string  `json:"id"`
	Dir        string  `json:"dir"`         // absolute
	Bridge     string  `json:"bridge"`      // llb<ID> in the root netns
	SSHConfig  string  `json:"ssh_config"`  // absolute path of DIR/ssh_config
	KnownHosts string  `json:"known_hosts"` // absolute path of DIR/known_hosts
	Key        string  `json:"key"`         // absolute path of the private key DIR/id_ed25519
	Inventory  string  `json:"inventory"`   // absolute path of DIR/inventory.yaml
	Hosts      []*Host `json:"hosts"`

	Subnet4     string `json:"subnet4"`      // front network, e.g. 198.18.7.0/24
	Subnet6     string `json:"subnet6"`      // front network ULA /64
	BackSubnet4 string `json:"back_subnet4"` // back network (switch netns)
	BackSubnet6 string `json:"back_subnet6"`
	SwitchNetns string `json:"switch_netns"`     // ll<ID>-sw
	InitExe     string `json:"init_exe"`         // binary started as each host's init (used by Boot)
	Rootfs      string `json:"rootfs,omitempty"` // cached root of the systemd hosts (lower layer of their overlays)

	mu sync.Mutex // guards Hosts[*].InitPID and lab.json writes
}

// Host is one lab host.
type Host struct {
	Name     string `json:"name"`           // h01..
	Address  string `json:"address"`        // the address ssh_config's HostName uses (back network for the jump-only host)
	Address6 string `json:"address6"`       // IPv6 address on the same network as Address
	Netns    string `json:"netns"`          // ip netns name: ll<ID>-hNN
	Backend  string `json:"backend"`        // nft | iptables-nft | iptables-legacy
	User     string `json:"user"`           // root or ops
	Port     int    `json:"port"`           // 22, 2222 for the jump-only host
	Jump     string `json:"jump"`           // ProxyJump alias, "" when reachable from the machine
	InitPID  int    `json:"init_pid"`       // pid (root pid namespace) of the host's init; 0 when not started
	Init     string `json:"init,omitempty"` // InitLab ("") or InitSystemd
	// NspawnPID is the pid of a systemd host's systemd-nspawn (InitPID is
	// its container's PID 1).
	NspawnPID int    `json:"nspawn_pid,omitempty"`
	Dir       string `json:"dir"` // DIR/hosts/NAME: overlay, logs, /var/lib/lifeline

	// BackAddress and BackAddress6 are the host's addresses on the back
	// network ("" when not attached): tests build multi-hop chains with them.
	BackAddress  string `json:"back_address,omitempty"`
	BackAddress6 string `json:"back_address6,omitempty"`
}

// HostStatus is one host's health as seen by [Lab.Status].
type HostStatus struct {
	Name      string `json:"name"`
	InitAlive bool   `json:"init_alive"` // the recorded init pid runs in the host's netns
	SSHDAlive bool   `json:"sshd_alive"` // an sshd child of the init runs
	Reachable bool   `json:"reachable"`  // the SSH banner arrives at Address:Port (from the jump host's netns when Jump is set)
	Error     string `json:"error,omitempty"`
}

// ExecError is a console command ([Lab.Exec]) that ran and failed.
type ExecError struct {
	Host   string
	Argv   []string
	Stderr []byte
	Err    error // *exec.ExitError or the start error
}

func (e *ExecError) Error() string {
	msg := bytes.TrimSpace(e.Stderr)
	if len(msg) > 500 {
		msg = msg[len(msg)-500:]
	}
	return fmt.Sprintf("run %q on lab host %s: %v: %s", e.Argv, e.Host, e.Err, msg)
}

func (e *ExecError) Unwrap() error { return e.Err }

// Errors of the lab's host operations. Neither is worth retrying as is.
var (
	// ErrUnknownHost is returned for a host name the lab does not have.
	ErrUnknownHost = errors.New("no such lab host")
	// ErrSSHDExited is returned by StartSSHD and Boot when sshd quits
	// instead of listening (e.g. a broken sshd_config); the init does not
	// restart it.
	ErrSSHDExited = errors.New("sshd exited instead of listening")
)

// LabID returns the lab ID of a lab folder: the first 6 hex digits of
// sha256 of its absolute path.
func LabID(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("lab dir %s: %w", dir, err)
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:])[:6], nil
}

// Load reads DIR/lab.json written by [Up].
func Load(dir string) (*Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lab dir %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(abs, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("load lab in %s: %w (hint: run `lifeline lab up --dir %s`)", abs, err, dir)
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("load lab in %s: lab.json: %w", abs, err)
	}
	return l, nil
}

func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saveLocked()
}

func (l *Lab) saveLocked() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(l.Dir, "lab.json"), append(b, '\n'), 0o644)
}

// Host returns the host with that name, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func (l *Lab) host(name string) (*Host, error) {
	h := l.Host(name)
	if h == nil {
		return nil, fmt.Errorf("lab %s: %s: %w", l.ID, name, ErrUnknownHost)
	}
	return h, nil
}

func (l *Lab) initPID(h *Host) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return h.InitPID
}

// Exec runs argv as root inside the host's namespaces (net, mount, uts, pid)
// without SSH — the host's console — and returns its stdout. A non-zero exit
// is an [*ExecError] carrying stderr. The host's init must be running.
func (l *Lab) Exec(ctx context.Context, host string, argv ...string) ([]byte, error) {
	h, err := l.host(host)
	if err != nil {
		return nil, err
	}
	pid := l.initPID(h)
	if !initAlive(pid, h.Netns) {
		return nil, fmt.Errorf("run %q on lab host %s: init is not running (hint: Boot it)", argv, host)
	}
	nss := []string{"-n", "-m", "-u", "-p"}
	if h.Init == InitSystemd {
		nss = []string{"-a"} // also its cgroup and ipc namespaces: systemctl, journalctl
	}
	args := append(append([]string{"-t", fmt.Sprint(pid)}, nss...), append([]string{"--"}, argv...)...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &ExecError{Host: host, Argv: argv, Stderr: stderr.Bytes(), Err: err}
	}
	return stdout.Bytes(), nil
}

// StopSSHD stops the host's sshd (the listener; open sessions live on, as on
// a real host) and returns once it is gone. Idempotent.
func (l *Lab) StopSSHD(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	pid := l.initPID(h)
	if !initAlive(pid, h.Netns) {
		return fmt.Errorf("stop sshd on lab host %s: init is not running", host)
	}
	if h.Init == InitSystemd {
		if _, err := l.Exec(ctx, host, "systemctl", "stop", "ssh.service"); err != nil {
			return fmt.Errorf("stop sshd: %w", err)
		}
		return pollUntil(ctx, 10*time.Second, func() bool { return !listening(pid, h.Port) },
			fmt.Sprintf("stop sshd on lab host %s", host))
	}
	if err := syscall.Kill(pid, sigStopSSHD); err != nil {
		return fmt.Errorf("stop sshd on lab host %s: signal init %d: %w", host, pid, err)
	}
	// the listener is gone once nothing listens: the sessions' sshd
	// processes, reparented to the init when the listener exits, live on
	return pollUntil(ctx, 10*time.Second, func() bool { return !listening(pid, h.Port) },
		fmt.Sprintf("stop sshd on lab host %s", host))
}

// SetLink takes the machine side of a directly attached host's link down
// (up=false) or up again. Down, the host's eth0 loses its carrier and every
// packet between the machine and the host is silently lost, in both
// directions: a cut cable. The host keeps its addresses, routes, sockets
// and firewall. Only the lab's own veth is touched.
func (l *Lab) SetLink(ctx context.Context, host string, up bool) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if h.Jump != "" {
		return fmt.Errorf("set link of lab host %s: it is reached through %s, not over its own link", host, h.Jump)
	}
	n := 0
	for i := range l.Hosts {
		if l.Hosts[i].Name == host {
			n = i + 1
		}
	}
	state := "down"
	if up {
		state = "up"
	}
	if err := runIP(ctx, nil, "link", "set", vethName(l.ID, n), state); err != nil {
		return fmt.Errorf("set link of lab host %s %s: %w", host, state, err)
	}
	return nil
}

// StartSSHD starts the host's sshd when it is not running and returns once
// it answers with its SSH banner. Idempotent.
func (l *Lab) StartSSHD(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	pid := l.initPID(h)
	if !initAlive(pid, h.Netns) {
		return fmt.Errorf("start sshd on lab host %s: init is not running (hint: Boot it)", host)
	}
	if h.Init == InitSystemd {
		if _, err := l.Exec(ctx, host, "systemctl", "start", "ssh.service"); err != nil {
			return fmt.Errorf("start sshd: %w", err)
		}
		return l.waitSystemdSSHD(ctx, h)
	}
	if err := syscall.Kill(pid, sigStartSSHD); err != nil {
		return fmt.Errorf("start sshd on lab host %s: signal init %d: %w", host, pid, err)
	}
	return l.waitSSHD(ctx, h)
}

// RotateHostKeys gives the host new host keys and restarts its sshd.
// known_hosts is NOT updated: clients now see a host key mismatch.
func (l *Lab) RotateHostKeys(ctx context.Context, host string) error {
	if _, err := l.host(host); err != nil {
		return err
	}
	script := `set -e; cd /etc/ssh; rm -f ssh_host_ed25519_key ssh_host_ed25519_key.pub ssh_host_ecdsa_key ssh_host_ecdsa_key.pub
ssh-keygen -q -t ed25519 -N '' -C "root@$(hostname)" -f ssh_host_ed25519_key
ssh-keygen -q -t ecdsa -N '' -C "root@$(hostname)" -f ssh_host_ecdsa_key`
	if _, err := l.Exec(ctx, host, "sh", "-c", script); err != nil {
		return fmt.Errorf("rotate host keys: %w", err)
	}
	if err := l.StopSSHD(ctx, host); err != nil {
		return err
	}
	return l.StartSSHD(ctx, host)
}

// Crash SIGKILLs the host's init: the kernel kills its whole pid namespace
// (sshd, sessions, watchdogs). The netns, /etc overlay and /var/lib/lifeline
// stay, so [Lab.Boot] is a reboot. Idempotent.
func (l *Lab) Crash(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if h.Init == InitSystemd {
		return l.crashSystemd(ctx, h)
	}
	pid := l.initPID(h)
	if !initAlive(pid, h.Netns) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("crash lab host %s: kill init %d: %w", host, pid, err)
	}
	if err := pollUntil(ctx, 10*time.Second, func() bool { return !pidRunning(pid) },
		fmt.Sprintf("crash lab host %s", host)); err != nil {
		return err
	}
	// The kernel kills the rest of the pid namespace asynchronously: wait
	// for all of it (the old sshd's listening socket would otherwise make a
	// following Boot believe the new sshd is up).
	return killNetnsProcesses(ctx, []string{h.Netns})
}

// Boot starts a crashed host again: same netns, same /etc overlay and
// /var/lib/lifeline; the firewall is reset to the persisted ruleset, as
// after a reboot. It returns once sshd answers. Booting a running host is an
// error.
func (l *Lab) Boot(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if initAlive(l.initPID(h), h.Netns) {
		return fmt.Errorf("boot lab host %s: already running (hint: Crash it first)", host)
	}
	if h.Init == InitSystemd {
		if err := l.crashSystemd(ctx, h); err != nil { // a lingering nspawn
			return err
		}
		if err := l.bootSystemd(ctx, h); err != nil {
			return err
		}
		if err := l.save(); err != nil {
			return fmt.Errorf("boot lab host %s: record pid: %w", host, err)
		}
		return l.waitSystemdSSHD(ctx, h)
	}
	pid, err := startInit(l.InitExe, h)
	if err != nil {
		return fmt.Errorf("boot lab host %s: %w", host, err)
	}
	l.mu.Lock()
	h.InitPID = pid
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("boot lab host %s: record pid: %w", host, err)
	}
	return l.waitSSHD(ctx, h)
}

// Status reports, per host in order, whether its init and sshd run and
// whether its SSH port answers. It never fails because a host is down.
func (l *Lab) Status(ctx context.Context) ([]HostStatus, error) {
	out := make([]HostStatus, len(l.Hosts))
	var g errgroup.Group
	g.SetLimit(16)
	for i, h := range l.Hosts {
		g.Go(func() error {
			st := HostStatus{Name: h.Name}
			pid := l.initPID(h)
			st.InitAlive = initAlive(pid, h.Netns)
			if st.InitAlive {
				st.SSHDAlive = len(sshdChildren(pid)) > 0
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := l.probeSSH(cctx, h); err != nil {
				st.Error = err.Error()
			} else {
				st.Reachable = true
			}
			out[i] = st
			return nil
		})
	}
	_ = g.Wait()
	return out, ctx.Err()
}

// probeSSH reads the SSH banner at the host's address the way a client
// reaches it: from the root netns, or from the jump host's netns.
func (l *Lab) probeSSH(ctx context.Context, h *Host) error {
	ns := ""
	if h.Jump != "" {
		j := l.Host(h.Jump)
		if j == nil {
			return fmt.Errorf("jump host %s of %s not in lab", h.Jump, h.Name)
		}
		ns = j.Netns
	}
	return sshBanner(ctx, ns, h.Address, h.Port)
}

// waitListening returns once the host's sshd listens on its port (seen in
// the host's /proc/net/tcp: probing with a connection would cost an sshd
// re-exec per try), or fails when the init dies or 30 s pass.
func (l *Lab) waitListening(ctx context.Context, h *Host) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		pid := l.initPID(h)
		if !pidRunning(pid) {
			return fmt.Errorf("lab host %s: init exited (see %s)", h.Name, filepath.Join(h.Dir, "init.log"))
		}
		if listening(pid, h.Port) && len(sshdChildren(pid)) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab host %s: sshd does not listen on port %d: %w (see %s)", h.Name, h.Port, ctx.Err(), filepath.Join(h.Dir, "sshd.log"))
		case <-time.After(delay):
		}
	}
}

// waitSSHD is waitListening that fails fast when no sshd runs for a few
// seconds (a broken sshd_config makes it exit at once; the init restarts
// nothing).
func (l *Lab) waitSSHD(ctx context.Context, h *Host) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pid := l.initPID(h)
	go func() {
		// Before exec the child still has the init's name: allow a grace.
		var gone time.Time
		for ctx.Err() == nil {
			switch {
			case len(sshdChildren(pid)) > 0:
				gone = time.Time{}
			case gone.IsZero():
				gone = time.Now()
			case time.Since(gone) > 3*time.Second:
				cancel(fmt.Errorf("lab host %s: %w (see %s)", h.Name, ErrSSHDExited, filepath.Join(h.Dir, "sshd.log")))
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	err := l.waitListening(ctx, h)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrSSHDExited) {
		return cause
	}
	return err
}

func pollUntil(ctx context.Context, limit time.Duration, cond func() bool, what string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for delay := time.Millisecond; ; delay = min(delay*2, 50*time.Millisecond) {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// writeFileAtomic replaces path with data (mode as given) through a fsynced
// temporary file renamed over it (renameio).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return renameio.WriteFile(path, data, mode, renameio.WithStaticPermissions(mode))
}
