package revert

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// The preflight's sandbox is built with rtnetlink and thread-private
// network namespaces: every process spawned costs milliseconds, and the
// preflight rides on begin, whose cost the operator waits for.

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

// rtnl is a minimal rtnetlink client, opened in the namespace of the
// thread that opens it.
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

func u32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// request sends one message and waits for its ack; the error is the
// kernel's errno.
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

func ifinfo(index int, flags, change uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	binary.NativeEndian.PutUint32(b[12:], change)
	return b
}

// addVeth creates the veth pair name (mac, index) / peer (peerMAC,
// peerIndex); with peerNS >= 0 the peer is created in that namespace (a
// file descriptor). A nil MAC or a 0 index lets the kernel choose.
//
// Across namespaces the two ends must not get the same ifindex: the kernel
// then takes the link's carrier change for a non-stacked device's and
// applies it (the qdisc that lets packets out) up to a second late, which
// drops the first SYN and costs a retransmit.
func (r *rtnl) addVeth(name string, mac net.HardwareAddr, index int, peer string, peerMAC net.HardwareAddr, peerIndex, peerNS int) error {
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

func (r *rtnl) linkUp(index int) error {
	return r.request(unix.RTM_NEWLINK, 0, ifinfo(index, unix.IFF_UP, unix.IFF_UP))
}

func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addAddr adds p to the link (no duplicate address detection: the
// sandbox's addresses are usable at once).
func (r *rtnl) addAddr(index int, p netip.Prefix) error {
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

// addHostRoute routes the one address a out of the link.
func (r *rtnl) addHostRoute(index int, a netip.Addr) error {
	b := make([]byte, 12) // rtmsg
	b[0], b[1] = family(a), byte(a.BitLen())
	b[4], b[5], b[6], b[7] = unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_LINK, unix.RTN_UNICAST
	b = append(b, rtattr(unix.RTA_DST, a.AsSlice())...)
	b = append(b, rtattr(unix.RTA_OIF, u32(uint32(index)))...)
	err := r.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
	return err
}

// addNeigh pins a's link-layer address on the link: no ARP or neighbour
// discovery, which a candidate ruleset may drop, is needed to reach it.
func (r *rtnl) addNeigh(index int, a netip.Addr, mac net.HardwareAddr) error {
	b := make([]byte, 12) // ndmsg
	b[0] = family(a)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint16(b[8:], unix.NUD_PERMANENT)
	b = append(b, rtattr(unix.NDA_DST, a.AsSlice())...)
	b = append(b, rtattr(unix.NDA_LLADDR, mac)...)
	return r.request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
}
