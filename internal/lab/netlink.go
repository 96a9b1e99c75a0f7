//go:build linux

package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The init configures its links with rtnetlink directly: on this kind of
// machine every process spawn costs tens of milliseconds, and a lab of 100
// hosts must come up within a minute.

// linkConfig is one interface of a host and its addresses (CIDR).
type linkConfig struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

type rtnl struct {
	fd  int
	seq uint32
}

func openRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

func (r *rtnl) Close() error { return unix.Close(r.fd) }

func rtattr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}

// request sends one message and waits for its ack; the error is the
// kernel's errno (e.g. unix.EEXIST).
func (r *rtnl) request(typ, flags uint16, body []byte) error {
	r.seq++
	msg := make([]byte, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], r.seq)
	copy(msg[unix.SizeofNlMsghdr:], body)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("rtnetlink: malformed reply")
			}
			data := b[unix.SizeofNlMsghdr:l]
			b = b[(l+3)&^3:]
			if seq != r.seq || typ != unix.NLMSG_ERROR || len(data) < 4 {
				continue
			}
			if errno := -int32(binary.NativeEndian.Uint32(data[:4])); errno != 0 {
				return unix.Errno(errno)
			}
			return nil
		}
	}
}

func (r *rtnl) linkUp(index int) error {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], unix.IFF_UP)  // flags
	binary.NativeEndian.PutUint32(b[12:], unix.IFF_UP) // change
	return r.request(unix.RTM_NEWLINK, 0, b)
}

func (r *rtnl) addAddr(index int, p netip.Prefix) error {
	fam := byte(unix.AF_INET)
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0], b[1], b[2], b[3] = fam, byte(p.Bits()), unix.IFA_F_NODAD, unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	addr := p.Addr().AsSlice()
	flags := make([]byte, 4)
	binary.NativeEndian.PutUint32(flags, unix.IFA_F_NODAD)
	b = append(b, rtattr(unix.IFA_LOCAL, addr)...)
	b = append(b, rtattr(unix.IFA_ADDRESS, addr)...)
	b = append(b, rtattr(unix.IFA_FLAGS, flags)...)
	return r.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b)
}

// configureLinks brings lo and the host's links up with their addresses.
// Addresses already present (a reboot) are kept.
func configureLinks(links []linkConfig) error {
	r, err := openRtnl()
	if err != nil {
		return err
	}
	defer r.Close()
	all := append([]linkConfig{{Name: "lo"}}, links...)
	for _, lc := range all {
		ifc, err := net.InterfaceByName(lc.Name)
		if err != nil {
			return fmt.Errorf("link %s: %w", lc.Name, err)
		}
		for _, a := range lc.Addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return fmt.Errorf("link %s: %w", lc.Name, err)
			}
			if err := r.addAddr(ifc.Index, p); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add address %s to %s: %w", a, lc.Name, err)
			}
		}
		if err := r.linkUp(ifc.Index); err != nil {
			return fmt.Errorf("set %s up: %w", lc.Name, err)
		}
	}
	return nil
}

// listening reports whether a TCP socket listens on port in the netns of pid
// (read from /proc/PID/net/tcp{,6}: no connection, no process spawned).
func listening(pid, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/" + f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 3 && fs[3] == "0A" && strings.HasSuffix(fs[1], want) {
				return true
			}
		}
	}
	return false
}
