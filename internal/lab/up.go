//go:build linux

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// ErrPrereq is returned when the machine cannot run a lab (not root, a tool
// missing). Not worth retrying.
var ErrPrereq = errors.New("lab prerequisites missing")

// prereqHint is the package list that provides every tool the lab uses.
const prereqHint = "apt-get install openssh-server openssh-client iptables nftables iproute2 sudo util-linux"

// CheckPrereqs reports whether this machine can run a lab: root, and the
// tools sshd, sftp-server, ip, nsenter, nft, iptables-legacy, iptables-nft
// and sudo. The error wraps [ErrPrereq] and says what to install.
func CheckPrereqs() error {
	var missing []string
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the lab needs root (network, mount and pid namespaces)", ErrPrereq)
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/lib/openssh/sftp-server"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, t := range []string{"ip", "nsenter", "nft", "iptables-legacy", "ip6tables-legacy", "iptables-nft", "sudo", "ssh-keygen"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found (hint: %s)", ErrPrereq, strings.Join(missing, ", "), prereqHint)
	}
	return nil
}

// names of a lab's kernel objects.
func bridgeName(id string) string      { return "llb" + id }
func vethName(id string, n int) string { return fmt.Sprintf("llv%s%d", id, n) }
func nsPrefix(id string) string        { return "ll" + id + "-" }
func switchNetns(id string) string     { return nsPrefix(id) + "sw" }

// Up starts a lab in o.Dir and returns once every host's sshd answers. It
// first removes whatever an earlier lab in the same folder left (processes,
// namespaces, links, files). On failure it removes the namespaces and links
// it made but keeps the host folders (logs) for inspection; [Down] removes
// them.
func Up(ctx context.Context, o Options) (*Lab, error) {
	start := time.Now()
	if o.Dir == "" {
		o.Dir = "lab"
	}
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	if o.Backend == "" {
		o.Backend = BackendMixed
	}
	if o.Hosts < 1 || o.Hosts > MaxHosts {
		return nil, fmt.Errorf("lab up: %d hosts: want 1..%d", o.Hosts, MaxHosts)
	}
	if o.Systemd < 0 || o.Hosts+o.Systemd > MaxHosts {
		return nil, fmt.Errorf("lab up: %d hosts and %d systemd hosts: want at most %d in all", o.Hosts, o.Systemd, MaxHosts)
	}
	switch o.Backend {
	case BackendNft, BackendIptablesNft, BackendIptablesLegacy, BackendMixed:
	default:
		return nil, fmt.Errorf("lab up: unknown backend %q (hint: nft, iptables-nft, iptables-legacy or mixed)", o.Backend)
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", a...)
		}
	}
	if err := CheckPrereqs(); err != nil {
		return nil, err
	}
	rootfs := ""
	if o.Systemd > 0 {
		var err error
		if rootfs, err = EnsureSystemdRootfs(ctx, o.Log); err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
	}
	if o.InitExe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("lab up: find own binary for the hosts' init: %w", err)
		}
		o.InitExe = exe
	}
	initExe, err := filepath.Abs(o.InitExe)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	id, _ := LabID(dir)
	if err := teardown(ctx, id, dir, true); err != nil {
		return nil, fmt.Errorf("lab up: remove stale lab %s: %w", id, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o755); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if err := os.MkdirAll("/var/lib/lifeline", 0o700); err != nil { // mountpoint for the hosts' own dirs
		return nil, fmt.Errorf("lab up: create mountpoint /var/lib/lifeline: %w", err)
	}
	l := &Lab{
		ID: id, Dir: dir, Bridge: bridgeName(id),
		SSHConfig: filepath.Join(dir, "ssh_config"), KnownHosts: filepath.Join(dir, "known_hosts"),
		Key: filepath.Join(dir, "id_ed25519"), Inventory: filepath.Join(dir, "inventory.yaml"),
		SwitchNetns: switchNetns(id), InitExe: initExe, Rootfs: rootfs,
	}
	labPub, err := writeKey(l.Key, newEd25519(), "lifeline-lab-"+id)
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}

	ok := false
	defer func() {
		if !ok {
			_ = teardown(context.WithoutCancel(ctx), id, dir, false)
		}
	}()
	front, err := l.setupBridge(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	back := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, front.Addr().As4()[2], 0}), 24)
	prefix6 := fmt.Sprintf("fd%s:%s:0", id[:2], id[2:6])
	l.Subnet4, l.BackSubnet4 = front.String(), back.String()
	l.Subnet6, l.BackSubnet6 = prefix6+":1::/64", prefix6+":2::/64"
	l.planHosts(o, front, back, prefix6)
	logf("lab %s: bridge %s %s, starting %d hosts", id, l.Bridge, l.Subnet4, len(l.Hosts))

	keys := make([]hostKeys, len(l.Hosts))
	var g errgroup.Group
	g.SetLimit(16)
	for i, h := range l.Hosts {
		g.Go(func() error {
			prepare := prepareHostDir
			if h.Init == InitSystemd {
				prepare = prepareSystemdHost
			}
			k, err := prepare(h, labPub)
			if err != nil {
				return fmt.Errorf("prepare lab host %s: %w", h.Name, err)
			}
			keys[i] = k
			return nil
		})
	}
	if err := errors.Join(g.Wait(), l.setupNet(ctx)); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	for _, h := range l.Hosts {
		if h.Init == InitSystemd {
			g.Go(func() error {
				if err := l.systemdNetns(ctx, h); err != nil {
					return err
				}
				return l.bootSystemd(ctx, h)
			})
			continue
		}
		g.Go(func() error {
			pid, err := startInit(l.InitExe, h)
			if err != nil {
				return fmt.Errorf("lab host %s: %w", h.Name, err)
			}
			l.mu.Lock()
			h.InitPID = pid
			l.mu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	if serr := l.save(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	km := map[string]hostKeys{}
	for i, h := range l.Hosts {
		km[h.Name] = keys[i]
	}
	if err := l.writeClientFiles(km); err != nil {
		return nil, fmt.Errorf("lab up: write client files: %w", err)
	}
	logf("lab %s: %d inits started in %v, waiting for sshd", id, len(l.Hosts), time.Since(start).Round(time.Millisecond))
	for _, h := range l.Hosts {
		if h.Init == InitSystemd {
			g.Go(func() error { return l.waitSystemdSSHD(ctx, h) })
			continue
		}
		g.Go(func() error { return l.waitListening(ctx, h) })
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	logf("lab %s: %d hosts up in %v", id, len(l.Hosts), time.Since(start).Round(time.Millisecond))
	ok = true
	return l, nil
}

// planHosts fills l.Hosts: names, backends, users, ports, addresses.
func (l *Lab) planHosts(o Options, front, back netip.Prefix, prefix6 string) {
	backends := []string{BackendNft, BackendIptablesNft, BackendIptablesLegacy}
	f4, b4 := front.Addr().As4(), back.Addr().As4()
	for i := 1; i <= o.Hosts; i++ {
		name := fmt.Sprintf("h%02d", i)
		if o.Hosts >= 100 {
			name = fmt.Sprintf("h%03d", i)
		}
		h := &Host{
			Name: name, Netns: nsPrefix(l.ID) + name, Backend: o.Backend, User: "root", Port: 22,
			Dir: filepath.Join(l.Dir, "hosts", name),
		}
		if o.Backend == BackendMixed {
			h.Backend = backends[(i-1)%3]
		}
		if i == 2 {
			h.User = "ops"
		}
		if o.Hosts >= 3 && (i == 1 || i == 2 || i == o.Hosts) {
			h.BackAddress = netip.AddrFrom4([4]byte{b4[0], b4[1], b4[2], byte(i + 1)}).String()
			h.BackAddress6 = fmt.Sprintf("%s:2::%x", prefix6, i+1)
		}
		if o.Hosts >= 3 && i == o.Hosts {
			h.Address, h.Address6, h.Port, h.Jump = h.BackAddress, h.BackAddress6, 2222, l.Hosts[0].Name
		} else {
			h.Address = netip.AddrFrom4([4]byte{f4[0], f4[1], f4[2], byte(i + 1)}).String()
			h.Address6 = fmt.Sprintf("%s:1::%x", prefix6, i+1)
		}
		l.Hosts = append(l.Hosts, h)
	}
	for j := 1; j <= o.Systemd; j++ {
		i := o.Hosts + j
		name := fmt.Sprintf("s%02d", j)
		l.Hosts = append(l.Hosts, &Host{
			Name: name, Netns: nsPrefix(l.ID) + name, Backend: BackendNft, User: "root", Port: 22,
			Init: InitSystemd, Dir: filepath.Join(l.Dir, "hosts", name),
			Address:  netip.AddrFrom4([4]byte{f4[0], f4[1], f4[2], byte(i + 1)}).String(),
			Address6: fmt.Sprintf("%s:1::%x", prefix6, i+1),
		})
	}
}

// setupBridge picks a free /24 in 198.18.0.0/16 and creates the lab bridge
// with it, under a machine-wide lock so concurrent labs never pick the same.
func (l *Lab) setupBridge(ctx context.Context) (netip.Prefix, error) {
	lock, err := os.OpenFile("/run/lifeline-lab.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lock subnet choice: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return netip.Prefix{}, fmt.Errorf("lock subnet choice: %w", err)
	}
	used, err := usedPrefixes(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	idb, _ := strconv.ParseUint(l.ID[:2], 16, 8)
	var front netip.Prefix
	for i := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(int(idb) + i), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			front = p
			break
		}
	}
	if !front.IsValid() {
		return netip.Prefix{}, errors.New("no free /24 in 198.18.0.0/16 for the lab bridge (hint: lifeline lab down other labs)")
	}
	gw := netip.AddrFrom4([4]byte{198, 18, front.Addr().As4()[2], 1})
	prefix6 := fmt.Sprintf("fd%s:%s:0", l.ID[:2], l.ID[2:6])
	batch := fmt.Sprintf("link add %[1]s type bridge\nlink set %[1]s type bridge stp_state 0 forward_delay 0 mcast_snooping 0\naddress add %[2]s/24 dev %[1]s\naddress add %[3]s:1::1/64 dev %[1]s nodad\nlink set %[1]s up\n", l.Bridge, gw, prefix6)
	if err := runIP(ctx, strings.NewReader(batch), "-batch", "-"); err != nil {
		return netip.Prefix{}, fmt.Errorf("create bridge %s: %w", l.Bridge, err)
	}
	return front, nil
}

// usedPrefixes lists the IPv4 prefixes routed or addressed on the machine
// (the default route excluded).
func usedPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	b, err := outputIP(ctx, "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(b, &routes); err != nil {
		return nil, fmt.Errorf("parse ip route: %w", err)
	}
	for _, r := range routes {
		if p, err := netip.ParsePrefix(r.Dst); err == nil {
			out = append(out, p)
		} else if a, err := netip.ParseAddr(r.Dst); err == nil {
			out = append(out, netip.PrefixFrom(a, 32))
		}
	}
	b, err = outputIP(ctx, "-j", "-4", "address", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return nil, fmt.Errorf("parse ip address: %w", err)
	}
	for _, ln := range links {
		for _, a := range ln.AddrInfo {
			if addr, err := netip.ParseAddr(a.Local); err == nil {
				out = append(out, netip.PrefixFrom(addr, a.PrefixLen).Masked())
			}
		}
	}
	return out, nil
}

// setupNet creates every host's netns and links: one ip process for the
// root netns and one for the switch (process spawns are expensive).
func (l *Lab) setupNet(ctx context.Context) error {
	var root, sw strings.Builder
	needSwitch := false
	for _, h := range l.Hosts {
		if h.BackAddress != "" {
			needSwitch = true
		}
	}
	if needSwitch {
		fmt.Fprintf(&root, "netns add %s\n", l.SwitchNetns)
		sw.WriteString("link set lo up\nlink add br0 type bridge\nlink set br0 up\n")
	}
	for i, h := range l.Hosts {
		n := i + 1
		fmt.Fprintf(&root, "netns add %s\n", h.Netns)
		if h.Jump == "" {
			fmt.Fprintf(&root, "link add %[1]s type veth peer name eth0 netns %[2]s\nlink set %[1]s master %[3]s up\n", vethName(l.ID, n), h.Netns, l.Bridge)
		}
		if h.BackAddress != "" {
			fmt.Fprintf(&sw, "link add b%[1]d type veth peer name %[2]s netns %[3]s\nlink set b%[1]d master br0 up\n", n, backIf(h), h.Netns)
		}
	}
	if err := runIP(ctx, strings.NewReader(root.String()), "-batch", "-"); err != nil {
		return err
	}
	if needSwitch {
		if err := runIP(ctx, strings.NewReader(sw.String()), "-n", l.SwitchNetns, "-batch", "-"); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
	}
	return nil
}

// backIf is the host's interface on the back network.
func backIf(h *Host) string {
	if h.Jump != "" {
		return "eth0"
	}
	return "eth1"
}

// hostLinks is what the host's init configures at boot.
func hostLinks(h *Host) []linkConfig {
	var links []linkConfig
	if h.Jump == "" {
		links = append(links, linkConfig{Name: "eth0", Addrs: []string{h.Address + "/24", h.Address6 + "/64"}})
	}
	if h.BackAddress != "" {
		links = append(links, linkConfig{Name: backIf(h), Addrs: []string{h.BackAddress + "/24", h.BackAddress6 + "/64"}})
	}
	return links
}

func runIP(ctx context.Context, stdin io.Reader, args ...string) error {
	_, err := ipCmd(ctx, stdin, args...)
	return err
}

func outputIP(ctx context.Context, args ...string) ([]byte, error) { return ipCmd(ctx, nil, args...) }

func ipCmd(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = stdin
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Down removes the lab in dir: its processes, namespaces, links and files.
// It works from kernel object names (ll<ID>-*, llv<ID>*, llb<ID>), not only
// from lab.json, so it also cleans up after a crash or a partial Up.
// Removing an absent lab is not an error.
func Down(ctx context.Context, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	id, _ := LabID(abs)
	if err := teardown(ctx, id, abs, true); err != nil {
		return fmt.Errorf("lab down %s: %w", id, err)
	}
	return nil
}

// teardown kills the lab's processes and deletes its netns and links; with
// files it also removes what Up wrote into dir.
func teardown(ctx context.Context, id, dir string, files bool) error {
	var errs []error
	// Recorded inits first: they may live in a netns whose name is gone.
	var recorded []int
	if l, err := Load(dir); err == nil {
		for _, h := range l.Hosts {
			if isLabInit(h.InitPID, h.Dir) {
				_ = syscall.Kill(h.InitPID, syscall.SIGKILL)
				recorded = append(recorded, h.InitPID)
			}
			if h.Init == InitSystemd {
				// the container's PID 1 dies with its netns below
				if isLabInit(h.NspawnPID, h.Dir) {
					_ = syscall.Kill(h.NspawnPID, syscall.SIGKILL)
					recorded = append(recorded, h.NspawnPID)
				}
			}
		}
	}
	if err := pollUntil(ctx, 10*time.Second, func() bool {
		for _, pid := range recorded {
			if pidRunning(pid) {
				return false
			}
		}
		return true
	}, fmt.Sprintf("kill %d lab inits", len(recorded))); err != nil {
		errs = append(errs, err)
	}
	out, err := outputIP(ctx, "netns", "list")
	if err != nil {
		return err
	}
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix(id)) {
			nss = append(nss, f[0])
		}
	}
	if err := killNetnsProcesses(ctx, nss); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := runIP(ctx, nil, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	b, err := outputIP(ctx, "-j", "link", "show")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return errors.Join(append(errs, fmt.Errorf("parse ip link: %w", err))...)
	}
	for _, ln := range links {
		if strings.HasPrefix(ln.Name, "llv"+id) || ln.Name == bridgeName(id) {
			// A veth also vanishes by itself when its peer's netns goes.
			if err := runIP(ctx, nil, "link", "delete", ln.Name); err != nil && linkExists(ln.Name) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(removeNspawnState(id), removeCgroups(nsPrefix(id)+"*")); err != nil {
		errs = append(errs, err)
	}
	if files {
		for _, f := range []string{"hosts", "lab.json", "ssh_config", "known_hosts", "inventory.yaml", "id_ed25519", "id_ed25519.pub"} {
			if err := os.RemoveAll(filepath.Join(dir, f)); err != nil {
				errs = append(errs, err)
			}
		}
		_ = os.Remove(dir) // only when empty
	}
	return errors.Join(errs...)
}

// isLabInit reports whether pid is a running init of the host in hostDir.
func isLabInit(pid int, hostDir string) bool {
	if !pidRunning(pid) {
		return false
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.Contains(env, []byte("\x00"+hostDirEnv+"="+hostDir+"\x00")) ||
		bytes.HasPrefix(env, []byte(hostDirEnv+"="+hostDir+"\x00"))
}

// linkExists reports whether the root netns has an interface of that name.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}
