//go:build linux

// Package rtnl is a minimal rtnetlink client: the few link, address,
// route and neighbour requests the lab's hosts and the helper's trial and
// preflight namespaces need, without a process (every spawn costs
// milliseconds) and without a netlink library. A Conn speaks to the
// network namespace of the thread that opened it.
package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Conn is one rtnetlink socket, in the namespace of the thread that
// opened it.
type Conn struct {
	fd  int
	seq uint32
}

// Open opens a Conn in the calling thread's network namespace.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink: %w", err)
	}
	return &Conn{fd: fd}, nil
}

// Close closes the socket.
func (r *Conn) Close() error { return unix.Close(r.fd) }

func rtattr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}

func u32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// request sends one message and waits for its ack; the error is the
// kernel's errno.
func (r *Conn) request(typ, flags uint16, body []byte) error {
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

func ifinfo(index int, flags, change uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	binary.NativeEndian.PutUint32(b[12:], change)
	return b
}

// AddVeth creates the veth pair name (mac, index) / peer (peerMAC,
// peerIndex); with peerNS >= 0 the peer is created in that namespace (a
// file descriptor). A nil MAC or a 0 index lets the kernel choose.
//
// Across namespaces the two ends must not get the same ifindex: the kernel
// then takes the link's carrier change for a non-stacked device's and
// applies it (the qdisc that lets packets out) up to a second late, which
// drops the first SYN and costs a retransmit.
func (r *Conn) AddVeth(name string, mac net.HardwareAddr, index int, peer string, peerMAC net.HardwareAddr, peerIndex, peerNS int) error {
	pb := ifinfo(peerIndex, 0, 0)
	pb = append(pb, rtattr(unix.IFLA_IFNAME, append([]byte(peer), 0))...)
	if peerMAC != nil {
		pb = append(pb, rtattr(unix.IFLA_ADDRESS, peerMAC)...)
	}
	if peerNS >= 0 {
		pb = append(pb, rtattr(unix.IFLA_NET_NS_FD, u32(uint32(peerNS)))...)
	}
	const vethInfoPeer = 1
	data := rtattr(vethInfoPeer, pb)
	info := append(rtattr(unix.IFLA_INFO_KIND, []byte("veth")), rtattr(unix.IFLA_INFO_DATA, data)...)
	b := ifinfo(index, 0, 0)
	b = append(b, rtattr(unix.IFLA_IFNAME, append([]byte(name), 0))...)
	if mac != nil {
		b = append(b, rtattr(unix.IFLA_ADDRESS, mac)...)
	}
	b = append(b, rtattr(unix.IFLA_LINKINFO, info)...)
	return r.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b)
}

// LinkUp sets the link up.
func (r *Conn) LinkUp(index int) error {
	return r.request(unix.RTM_NEWLINK, 0, ifinfo(index, unix.IFF_UP, unix.IFF_UP))
}

func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// AddAddr adds p to the link, without duplicate address detection (the
// address is usable at once); an address already there is kept.
func (r *Conn) AddAddr(index int, p netip.Prefix) error {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0], b[1], b[2], b[3] = family(p.Addr()), byte(p.Bits()), unix.IFA_F_NODAD, unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	addr := p.Addr().AsSlice()
	b = append(b, rtattr(unix.IFA_LOCAL, addr)...)
	b = append(b, rtattr(unix.IFA_ADDRESS, addr)...)
	b = append(b, rtattr(unix.IFA_FLAGS, u32(unix.IFA_F_NODAD))...)
	err := r.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// AddHostRoute routes the one address a out of the link.
func (r *Conn) AddHostRoute(index int, a netip.Addr) error {
	b := make([]byte, 12) // rtmsg
	b[0], b[1] = family(a), byte(a.BitLen())
	b[4], b[5], b[6], b[7] = unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_LINK, unix.RTN_UNICAST
	b = append(b, rtattr(unix.RTA_DST, a.AsSlice())...)
	b = append(b, rtattr(unix.RTA_OIF, u32(uint32(index)))...)
	err := r.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
	return err
}

// AddNeigh pins a's link-layer address on the link: no ARP or neighbour
// discovery, which a candidate ruleset may drop, is needed to reach it.
func (r *Conn) AddNeigh(index int, a netip.Addr, mac net.HardwareAddr) error {
	b := make([]byte, 12) // ndmsg
	b[0] = family(a)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint16(b[8:], unix.NUD_PERMANENT)
	b = append(b, rtattr(unix.NDA_DST, a.AsSlice())...)
	b = append(b, rtattr(unix.NDA_LLADDR, mac)...)
	return r.request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
}
