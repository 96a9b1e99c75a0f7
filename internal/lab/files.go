//go:build linux

package lab

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// writeKey writes an OpenSSH private key (mode 0600) and its .pub and
// returns the public key line.
func writeKey(path string, priv any, comment string) (string, error) {
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", fmt.Errorf("marshal key %s: %w", path, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "", fmt.Errorf("key %s: %w", path, err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment
	_ = os.Remove(path)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(path+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	return pub, nil
}

func newEd25519() any {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return priv
}

func newECDSA() any {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return priv
}

// hostKeys are the public key lines of a host (without comment).
type hostKeys []string

// prepareHostDir (re)creates DIR/hosts/NAME: the /etc overlay's upper layer
// with the host's sshd config, keys, users, sudo, alternatives and
// persisted baseline ruleset; the init config; /var/lib/lifeline.
func prepareHostDir(h *Host, labPub string) (hostKeys, error) {
	if err := os.RemoveAll(h.Dir); err != nil {
		return nil, fmt.Errorf("clean %s: %w", h.Dir, err)
	}
	upper := filepath.Join(h.Dir, etcUpper)
	for _, d := range []string{etcWork, libDir} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	// Upper directories mirror the machine's modes: the merged directory
	// takes its attributes from the upper layer.
	for _, d := range []string{"", "ssh", "ssh/lab_authorized_keys", "sudoers.d", "alternatives", "iptables"} {
		mode := os.FileMode(0o755)
		if fi, err := os.Stat(filepath.Join("/etc", d)); err == nil {
			mode = fi.Mode().Perm()
		}
		p := filepath.Join(upper, d)
		if err := os.MkdirAll(p, mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, mode); err != nil {
			return nil, err
		}
	}
	var keys hostKeys
	for _, k := range []struct {
		file string
		priv any
	}{{"ssh_host_ed25519_key", newEd25519()}, {"ssh_host_ecdsa_key", newECDSA()}} {
		pub, err := writeKey(filepath.Join(upper, "ssh", k.file), k.priv, "root@"+h.Name)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(pub)
		keys = append(keys, f[0]+" "+f[1])
	}
	// Never let a host see the machine's other host keys.
	for _, f := range []string{"ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_dsa_key", "ssh_host_dsa_key.pub"} {
		if _, err := os.Lstat(filepath.Join("/etc/ssh", f)); err == nil {
			if err := unix.Mknod(filepath.Join(upper, "ssh", f), unix.S_IFCHR|0o000, 0); err != nil {
				return nil, fmt.Errorf("whiteout /etc/ssh/%s: %w", f, err)
			}
		}
	}

	// The other backend's persisted rules of the machine must not load at
	// the host's boot.
	foreign := []string{"iptables/rules.v4", "iptables/rules.v6"}
	if h.Backend != BackendNft {
		foreign = []string{"nftables.conf"}
	}
	for _, f := range foreign {
		if _, err := os.Lstat(filepath.Join("/etc", f)); err == nil {
			if err := unix.Mknod(filepath.Join(upper, f), unix.S_IFCHR|0o000, 0); err != nil {
				return nil, fmt.Errorf("whiteout /etc/%s: %w", f, err)
			}
		}
	}

	files := []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"ssh/sshd_config", 0o644, sshdConfig(h.Port)},
		{"ssh/lab_authorized_keys/root", 0o644, labPub + "\n"},
		{"hostname", 0o644, h.Name + "\n"},
	}
	for _, u := range labUsers {
		files = append(files, struct {
			path string
			mode os.FileMode
			data string
		}{"ssh/lab_authorized_keys/" + u.name, 0o644, labPub + "\n"})
		if u.sudoers != "" {
			files = append(files, struct {
				path string
				mode os.FileMode
				data string
			}{"sudoers.d/" + u.name, 0o440, u.sudoers})
		}
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return nil, err
	}
	files = append(files, struct {
		path string
		mode os.FileMode
		data string
	}{"hosts", 0o644, string(hosts) + "127.0.1.1\t" + h.Name + "\n"})
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(upper, f.path), []byte(f.data), f.mode); err != nil {
			return nil, err
		}
	}
	if err := writeAccounts(upper); err != nil {
		return nil, err
	}
	if err := writeAlternatives(upper, h.Backend); err != nil {
		return nil, err
	}
	if err := writeBaseline(upper, h.Backend, h.Port); err != nil {
		return nil, err
	}
	cfg, _ := json.Marshal(initConfig{Name: h.Name, Port: h.Port, Backend: h.Backend, Links: hostLinks(h)})
	if err := os.WriteFile(filepath.Join(h.Dir, "init.json"), cfg, 0o644); err != nil {
		return nil, err
	}
	return keys, nil
}

func sshdConfig(port int) string {
	return fmt.Sprintf(`# lifeline lab host: generated by lifeline lab up
Port %d
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/lab_authorized_keys/%%u
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
ClientAliveInterval 5
ClientAliveCountMax 3
MaxStartups 100
MaxSessions 50
LogLevel INFO
PidFile /run/sshd.pid
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
`, port)
}

type labUser struct {
	name    string
	uid     int
	home    string
	sudoers string // sudoers.d/NAME, "" for none
}

// labUsers are the login users of every host besides root, all with the
// lab key: ops has passwordless sudo (the usual operator); the others are
// ones lifeline must refuse cleanly, naming the host (issue #14): nosudo
// has no sudo rights, pwsudo has sudo that asks for a password, ttysudo
// has NOPASSWD sudo that requires a tty.
var labUsers = []labUser{
	{"ops", opsUID, "/home/ops", "ops ALL=(ALL:ALL) NOPASSWD: ALL\n"},
	{"nosudo", opsUID + 1, "/", ""},
	{"pwsudo", opsUID + 2, "/", "pwsudo ALL=(ALL:ALL) ALL\n"},
	{"ttysudo", opsUID + 3, "/", "Defaults:ttysudo requiretty\nttysudo ALL=(ALL:ALL) NOPASSWD: ALL\n"},
}

// writeAccounts adds the lab users to copies of the machine's passwd,
// group and shadow, and unlocks root for key logins (sshd without PAM
// refuses accounts whose password starts with "!").
func writeAccounts(upper string) error {
	edit := func(name string, fix func(line string) string, add func(u labUser) string) error {
		src := filepath.Join("/etc", name)
		fi, err := os.Stat(src)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			if slices.ContainsFunc(labUsers, func(u labUser) bool { return strings.HasPrefix(line, u.name+":") }) {
				continue
			}
			if fix != nil {
				line = fix(line)
			}
			out.WriteString(line + "\n")
		}
		for _, u := range labUsers {
			out.WriteString(add(u) + "\n")
		}
		dst := filepath.Join(upper, name)
		if err := os.WriteFile(dst, out.Bytes(), fi.Mode().Perm()); err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		return os.Chown(dst, int(st.Uid), int(st.Gid))
	}
	passwd := func(u labUser) string {
		return fmt.Sprintf("%s:x:%d:%d:lab user %s:%s:/bin/sh", u.name, u.uid, u.uid, u.name, u.home)
	}
	if err := edit("passwd", nil, passwd); err != nil {
		return fmt.Errorf("write passwd: %w", err)
	}
	group := func(u labUser) string { return fmt.Sprintf("%s:x:%d:", u.name, u.uid) }
	if err := edit("group", nil, group); err != nil {
		return fmt.Errorf("write group: %w", err)
	}
	unlockRoot := func(line string) string {
		if rest, ok := strings.CutPrefix(line, "root:!"); ok {
			return "root:*" + strings.TrimLeft(rest, "!*")
		}
		return line
	}
	shadow := func(u labUser) string { return u.name + ":*:19000:0:99999:7:::" }
	if err := edit("shadow", unlockRoot, shadow); err != nil {
		return fmt.Errorf("write shadow: %w", err)
	}
	return nil
}

// writeAlternatives points the host's iptables alternatives at the backend.
func writeAlternatives(upper, backend string) error {
	suffix := "nft"
	if backend == BackendIptablesLegacy {
		suffix = "legacy"
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, v := range []string{"", "-save", "-restore"} {
			link := filepath.Join(upper, "alternatives", tool+v)
			_ = os.Remove(link)
			if err := os.Symlink("/usr/sbin/"+tool+"-"+suffix+v, link); err != nil {
				return fmt.Errorf("alternative %s: %w", tool+v, err)
			}
		}
	}
	return nil
}

// writeBaseline persists the small baseline ruleset the init loads at boot.
func writeBaseline(upper, backend string, port int) error {
	if backend == BackendNft {
		return os.WriteFile(filepath.Join(upper, "nftables.conf"), []byte(nftBaseline(port)), 0o755)
	}
	rules := fmt.Sprintf(`# lifeline lab baseline: keeps SSH open
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport %d -j ACCEPT
COMMIT
`, port)
	for _, f := range []string{"rules.v4", "rules.v6"} {
		if err := os.WriteFile(filepath.Join(upper, "iptables", f), []byte(rules), 0o640); err != nil {
			return err
		}
	}
	return nil
}

// jumpHost reports whether another host reaches the machine through name.
func jumpHost(hosts []*Host, name string) bool {
	for _, h := range hosts {
		if h.Jump == name {
			return true
		}
	}
	return false
}

// nftBaseline is /etc/nftables.conf of an nft host: it keeps SSH open.
func nftBaseline(port int) string {
	return fmt.Sprintf(`#!/usr/sbin/nft -f
# lifeline lab baseline: keeps SSH open
flush ruleset

table inet filter {
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established,related accept
		tcp dport %d accept
	}
}
`, port)
}

// writeClientFiles writes known_hosts, ssh_config and inventory.yaml.
func (l *Lab) writeClientFiles(keys map[string]hostKeys) error {
	var kh, cfg, inv strings.Builder
	fmt.Fprintf(&cfg, "# lifeline lab %s: generated by `lifeline lab up`\n", l.ID)
	for _, h := range l.Hosts {
		names := h.Address + "," + h.Name
		if h.Port != 22 {
			names = fmt.Sprintf("[%s]:%d,[%s]:%d", h.Address, h.Port, h.Name, h.Port)
		}
		for _, k := range keys[h.Name] {
			fmt.Fprintf(&kh, "%s %s\n", names, k)
		}
		fmt.Fprintf(&cfg, "\nHost %s\n  HostName %s\n  User %s\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 5\n",
			h.Name, h.Address, h.User, h.Port, l.Key, l.KnownHosts)
		if h.Jump != "" {
			fmt.Fprintf(&cfg, "  ProxyJump %s\n", h.Jump)
		}
	}
	fmt.Fprintf(&inv, "# lifeline lab %s: generated by `lifeline lab up`\nssh_config: ssh_config        # relative to this file\nknown_hosts: known_hosts\nhosts:\n", l.ID)
	var front, inner []string
	for _, h := range l.Hosts {
		role := ""
		switch {
		case h.Jump != "":
			role = ", role: inner"
			inner = append(inner, h.Name)
		case jumpHost(l.Hosts, h.Name):
			role = ", role: jump"
			front = append(front, h.Name)
		default:
			front = append(front, h.Name)
		}
		if h.Init == InitSystemd {
			role += ", init: systemd"
		}
		fmt.Fprintf(&inv, "  %s: {labels: {lab: %q, backend: %s%s}}\n", h.Name, l.ID, h.Backend, role)
	}
	inv.WriteString("groups:\n")
	if len(inner) > 0 {
		inv.WriteString("  lab: {children: [front, inner]}\n")
	} else {
		inv.WriteString("  lab: {children: [front]}\n")
	}
	fmt.Fprintf(&inv, "  front: {hosts: [%s]}\n", strings.Join(front, ", "))
	if len(inner) > 0 {
		fmt.Fprintf(&inv, "  inner: {hosts: [%s]}\n", strings.Join(inner, ", "))
	}
	return errors.Join(
		writeFileAtomic(l.KnownHosts, []byte(kh.String()), 0o644),
		writeFileAtomic(l.SSHConfig, []byte(cfg.String()), 0o644),
		writeFileAtomic(l.Inventory, []byte(inv.String()), 0o644),
	)
}
