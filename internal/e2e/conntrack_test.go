package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeline-dev/lifeline/internal/lab/labtest"
)

// conntrackDoc mirrors conntrack's --json document.
type conntrackDoc struct {
	Warn  float64 `json:"warn"`
	Hosts []struct {
		Host      string  `json:"host"`
		Use       float64 `json:"use"`
		NearFull  bool    `json:"near_full"`
		Error     string  `json:"error"`
		Conntrack *struct {
			Loaded     bool  `json:"loaded"`
			Count      int64 `json:"count"`
			Max        int64 `json:"max"`
			Namespaced bool  `json:"namespaced"`
			Entries    *struct {
				Source string `json:"source"`
				Parsed int64  `json:"parsed"`
				States []struct {
					Proto, State string
					Count        int64
				} `json:"states"`
				TopSources []struct {
					Addr  string
					Count int64
				} `json:"top_sources"`
			} `json:"entries"`
			KernelLog *struct {
				Error string `json:"error"`
			} `json:"kernel_log"`
		} `json:"conntrack"`
	} `json:"hosts"`
}

// TestConntrackNearFull: a lab host whose conntrack table really holds
// 85% of the entries the kernel allows (nf_conntrack_max is the machine's
// and read-only in a lab host, so the table is filled, not the limit
// lowered) is reported near full with the states and sources that filled
// it, and conntrack exits 1; its neighbours are below and fine; a higher
// --warn passes; a host that cannot be reached exits 2, named.
//
// The fill: UDP datagrams with distinct ports from two neighbours, sent as
// raw frames on their own links (AF_PACKET: their own conntrack never sees
// them), to a closed port of h02. h02's baseline ruleset uses ct state,
// so each datagram is one unreplied entry there (30 s timeout).
func TestConntrackNearFull(t *testing.T) {
	l := labtest.Start(t, labtest.Options{Hosts: 3, Backend: "nft", InitExe: lifelineBin})
	target, front, back := l.Host("h02"), l.Host("h01"), l.Host("h03") // h03 sits behind h01, on the back network
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _ = l.Exec(ctx, target.Name, "conntrack", "-F")
	})
	max, _ := strconv.ParseInt(strings.TrimSpace(execOn(t, l, target.Name, "cat", "/proc/sys/net/netfilter/nf_conntrack_max")), 10, 64)
	if max <= 0 || max > 1_000_000 {
		t.Fatalf("nf_conntrack_max is %d: this test fills 85%% of it, and wants a limit between 1 and 1,000,000", max)
	}
	want := max * 85 / 100
	fromFront, fromBack := want*3/4, want-want*3/4

	start := time.Now()
	mac := func(ifname string) net.HardwareAddr {
		m, err := net.ParseMAC(strings.TrimSpace(execOn(t, l, target.Name, "cat", "/sys/class/net/"+ifname+"/address")))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	errc := make(chan error, 2)
	go func() {
		errc <- sendUDPFlood(front.Netns, "eth0", front.Address, target.Address, mac("eth0"), int(fromFront), 20000)
	}()
	go func() {
		errc <- sendUDPFlood(back.Netns, "eth0", back.BackAddress, target.BackAddress, mac("eth1"), int(fromBack), 30000)
	}()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	count, _ := strconv.ParseInt(strings.TrimSpace(execOn(t, l, target.Name, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")), 10, 64)
	took := time.Since(start)
	t.Logf("filled %s's table with %d datagrams in %v: %d of %d entries (%.1f%%)", target.Name, want, took.Round(time.Millisecond), count, max, 100*float64(count)/float64(max))
	if took > 20*time.Second {
		t.Fatalf("the fill took %v: the first entries expire after 30s", took)
	}
	if float64(count) < 0.8*float64(max) {
		t.Fatalf("%s holds %d of %d entries after the fill, under 80%%", target.Name, count, max)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	stdout, stderr, code := cli(t, ctx, "-i", l.Inventory, "-F", l.SSHConfig, "--json", "conntrack", "all", "--top", "3")
	t.Logf("conntrack all: exit %d in %v", code, time.Since(t0).Round(time.Millisecond))
	var doc conntrackDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Hosts) != 3 {
		t.Fatalf("conntrack all: exit %d, %v\nstdout: %s\nstderr: %s", code, err, stdout, stderr)
	}
	if code != 1 || doc.Warn != 0.8 {
		t.Errorf("conntrack all: exit %d (want 1), warn %v\n%s", code, doc.Warn, stdout)
	}
	for _, h := range doc.Hosts {
		c := h.Conntrack
		if h.Error != "" || c == nil || !c.Loaded || c.Max != max || !c.Namespaced || c.Entries == nil || c.Entries.Source != "/proc/net/nf_conntrack" {
			t.Fatalf("%s: %+v (error %q)", h.Host, c, h.Error)
		}
		if h.Host != target.Name {
			if h.NearFull || c.Count > 100 {
				t.Errorf("%s: near full %v with %d entries, want an idle table", h.Host, h.NearFull, c.Count)
			}
			continue
		}
		if !h.NearFull || h.Use < 0.8 || c.Count < count*9/10 {
			t.Errorf("%s: near full %v, use %v, count %d", h.Host, h.NearFull, h.Use, c.Count)
		}
		e := c.Entries
		if len(e.States) == 0 || e.States[0].Proto != "udp" || e.States[0].State != "UNREPLIED" || e.States[0].Count < want*9/10 {
			t.Errorf("%s: states %+v, want udp UNREPLIED ~%d first", h.Host, e.States, want)
		}
		if len(e.TopSources) < 2 || e.TopSources[0].Addr != front.Address || e.TopSources[1].Addr != back.BackAddress ||
			e.TopSources[0].Count < fromFront*9/10 || e.TopSources[1].Count < fromBack*9/10 {
			t.Errorf("%s: top sources %+v, want %s ~%d then %s ~%d", h.Host, e.TopSources, front.Address, fromFront, back.BackAddress, fromBack)
		}
	}

	// the text a person reads, with details
	stdout, _, code = cli(t, ctx, "-i", l.Inventory, "-F", l.SSHConfig, "-v", "conntrack", "all")
	if code != 1 || !strings.Contains(stdout, "NEAR-FULL (>= 80%)") || !strings.Contains(stdout, "udp UNREPLIED") || !strings.Contains(stdout, front.Address) {
		t.Errorf("conntrack %s -v: exit %d\n%s", target.Name, code, stdout)
	}
	// audit names the same pitfall, from the same facts
	stdout, stderr, _ = cli(t, ctx, "-F", l.SSHConfig, "--json", "audit", target.Name)
	if !strings.Contains(stdout, `"code": "conntrack-near-full"`) {
		t.Errorf("audit %s with a full table: no conntrack-near-full finding\nstdout: %s\nstderr: %s", target.Name, stdout, stderr)
	}
	stdout, _, _ = cli(t, ctx, "-F", l.SSHConfig, "--json", "audit", front.Name)
	if strings.Contains(stdout, `"code": "conntrack-near-full"`) {
		t.Errorf("audit %s with an idle table: conntrack-near-full\n%s", front.Name, stdout)
	}
	// the threshold is the operator's: at 95% the same table passes
	stdout, _, code = cli(t, ctx, "-F", l.SSHConfig, "conntrack", target.Name, "--warn", "0.95")
	if code != 0 || strings.Contains(stdout, "NEAR-FULL") {
		t.Errorf("conntrack %s --warn 0.95: exit %d (want 0)\n%s", target.Name, code, stdout)
	}

	// an unreachable host: exit 2, named with its cause
	if err := l.StopSSHD(ctx, back.Name); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = cli(t, ctx, "-F", l.SSHConfig, "conntrack", back.Name)
	if code != 2 || !strings.Contains(stdout, back.Name+": ERROR: ") {
		t.Errorf("conntrack %s without its sshd: exit %d (want 2)\nstdout: %s\nstderr: %s", back.Name, code, stdout, stderr)
	}
}

// sendUDPFlood sends n UDP datagrams from src to dst, each with its own
// (source port, destination port) pair from dport0 up, as raw Ethernet
// frames on ifname in network namespace ns (an AF_PACKET socket: the frames
// skip the sender's IP stack and its conntrack). dstMAC is the receiving
// interface's address. The sending thread is discarded afterwards.
func sendUDPFlood(ns, ifname, src, dst string, dstMAC net.HardwareAddr, n, dport0 int) error {
	s4, err := netip.ParseAddr(src)
	if err != nil {
		return err
	}
	d4, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		errc <- func() error {
			f, err := os.Open(filepath.Join("/run/netns", ns))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("enter netns %s: %w", ns, err)
			}
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return fmt.Errorf("%s: %w", ns, err)
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("%s: packet socket: %w", ns, err)
			}
			defer unix.Close(fd)
			return floodFrames(fd, ifi, s4.As4(), d4.As4(), dstMAC, n, dport0)
		}()
	}()
	return <-errc
}

func floodFrames(fd int, ifi *net.Interface, src, dst [4]byte, dstMAC net.HardwareAddr, n, dport0 int) error {
	sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	copy(sa.Addr[:], dstMAC)
	fr := make([]byte, 14+20+8)
	copy(fr[0:6], dstMAC)
	copy(fr[6:12], ifi.HardwareAddr)
	binary.BigEndian.PutUint16(fr[12:], unix.ETH_P_IP)
	ip, udp := fr[14:34], fr[34:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP // IPv4, 20-byte header, ttl, udp
	binary.BigEndian.PutUint16(ip[2:], 28)
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(udp[4:], 8) // length; checksum 0: none (IPv4)
	const ports = 60000                    // source ports 1024..61023 per destination port
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint16(ip[4:], uint16(i))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
		binary.BigEndian.PutUint16(udp[0:], uint16(1024+i%ports))
		binary.BigEndian.PutUint16(udp[2:], uint16(dport0+i/ports))
		for {
			err := unix.Sendto(fd, fr, 0, sa)
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				return fmt.Errorf("send frame %d: %w", i, err)
			}
			break
		}
	}
	return nil
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
