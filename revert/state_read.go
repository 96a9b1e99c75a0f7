package revert

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// state is the read-only state verb: the whole firewall with counters,
// and the host facts an audit needs. It takes no lock.
func (e *engine) state(ctx context.Context, req *Request, rep *Report) error {
	args := req.Read
	if args == nil {
		args = &StateArgs{}
	}
	return e.phase(rep, "read-state", func() error {
		live, err := e.readState(ctx, args.Candidate, args.Zero)
		rep.Live = live
		return err
	})
}

func (e *engine) readState(ctx context.Context, cand *RulesetChange, zero bool) (*StateReport, error) {
	live, err := e.fw.ReadState(ctx, cand, zero)
	if err != nil {
		return nil, err
	}
	readHostFacts(e.env.ProcDir, &live.Facts)
	return live, nil
}

// readHostFacts fills the facts /proc holds (proc: "/proc" on a real host).
func readHostFacts(proc string, f *HostFacts) {
	note := func(s string) { f.Notes = append(f.Notes, s) }
	flag := func(rel string) bool {
		b, err := os.ReadFile(filepath.Join(proc, rel))
		return err == nil && strings.TrimSpace(string(b)) == "1"
	}
	num := func(rel string) (int, bool) {
		b, err := os.ReadFile(filepath.Join(proc, rel))
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return n, err == nil
	}
	f.IPv4Forward = flag("sys/net/ipv4/ip_forward")
	f.IPv6Forward = flag("sys/net/ipv6/conf/all/forwarding")
	if n, ok := num("sys/net/netfilter/nf_conntrack_max"); ok {
		f.ConntrackMax = n
		f.ConntrackCount, _ = num("sys/net/netfilter/nf_conntrack_count")
	} else {
		note("conntrack is not loaded (no " + filepath.Join(proc, "sys/net/netfilter/nf_conntrack_max") + ")")
	}
	if b, err := os.ReadFile(filepath.Join(proc, "net/if_inet6")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			// address ifindex prefixlen scope flags name; scope 00 is global
			if fs := strings.Fields(l); len(fs) >= 4 && fs[3] == "00" {
				f.IPv6 = true
			}
		}
	}
	ports, err := sshdPorts(proc)
	if err != nil {
		note("sshd's ports unknown: " + err.Error())
	}
	f.SSHPorts = ports
}

// sshdPorts returns the TCP ports on which a process named sshd holds a
// listening socket: the LISTEN sockets of /proc/net/tcp{,6} whose inode
// one of sshd's file descriptors points at.
func sshdPorts(proc string) ([]int, error) {
	listen := map[string]int{} // socket inode -> port
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		fh, err := os.Open(filepath.Join(proc, name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				listen[fs[9]] = int(p)
			}
		}
		fh.Close()
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var ports []int
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(proc, ent.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "sshd" {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, ent.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(proc, ent.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			if p, ok := listen[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")]; ok && !slices.Contains(ports, p) {
				ports = append(ports, p)
			}
		}
	}
	slices.Sort(ports)
	return ports, nil
}
