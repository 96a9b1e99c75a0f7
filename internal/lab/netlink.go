//go:build linux

package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/lifeline-dev/lifeline/internal/rtnl"
)

// The init configures its links with rtnetlink directly: on this kind of
// machine every process spawn costs tens of milliseconds, and a lab of 100
// hosts must come up within a minute.

// linkConfig is one interface of a host and its addresses (CIDR).
type linkConfig struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// configureLinks brings lo and the host's links up with their addresses.
// Addresses already present (a reboot) are kept.
func configureLinks(links []linkConfig) error {
	r, err := rtnl.Open()
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
			if err := r.AddAddr(ifc.Index, p); err != nil {
				return fmt.Errorf("add address %s to %s: %w", a, lc.Name, err)
			}
		}
		if err := r.LinkUp(ifc.Index); err != nil {
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
