package revert

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/lifeline-dev/lifeline/internal/rtnl"
	"github.com/lifeline-dev/lifeline/internal/trace"
	"golang.org/x/sys/unix"
)

// ---- the sandbox ----

type pfFlow struct {
	path  SSHPath
	conns []net.Conn // opened before the candidate: [0] probed, [1] spare for the traced re-run
	src   netip.Addr
	dst   netip.Addr
	iface string // the host's interface that holds dst
}

// sandboxProbe builds the sandbox, loads the candidate and probes every
// path. Setup failures make the paths undecided (with what failed); a
// candidate that does not load is an error.
//
// With caveats (the candidate's matches the sandbox cannot reproduce), the
// kernel's verdicts are not the host's: the ruleset model evaluates each
// flow over what the sandbox's kernel holds, and decides it or says what
// it could not evaluate.
func (f *hostFirewall) sandboxProbe(ctx context.Context, paths []SSHPath, loads []pfLoad, cand backend, caveats []string) (vs []PathVerdict, loaded bool, candLoad time.Duration, err error) {
	allUndecided := func(why string) []PathVerdict {
		var vs []PathVerdict
		for _, p := range paths {
			vs = append(vs, undecided(p, FlowEstablished, why), undecided(p, FlowNew, why))
		}
		return vs
	}
	hostIfs, err := f.hostInterfaces()
	if err != nil {
		return allUndecided("read the host's interfaces: " + err.Error()), false, 0, nil
	}
	flows := make([]*pfFlow, 0, len(paths))
	for _, p := range paths {
		fl := &pfFlow{path: p, src: netip.MustParseAddr(p.Src).Unmap(), dst: netip.MustParseAddr(p.Dst).Unmap()}
		for _, hi := range hostIfs {
			for _, a := range hi.addrs {
				if a.Addr() == fl.dst {
					fl.iface = hi.name
				}
			}
		}
		if fl.iface == "" {
			why := fmt.Sprintf("no interface of the host holds %s (a NAT or a load balancer in front of sshd?): the sandbox cannot mirror the path", p.Dst)
			vs = append(vs, undecided(p, FlowEstablished, why), undecided(p, FlowNew, why))
			continue
		}
		flows = append(flows, fl)
	}
	if len(flows) == 0 {
		return vs, false, 0, nil
	}
	sb, err := newPFSandbox()
	if err != nil {
		return append(vs, allUndecided("build the sandbox: "+err.Error())...), false, 0, nil
	}
	defer sb.close()
	if err := sb.links(hostIfs, flows); err != nil {
		return append(vs, allUndecided("build the sandbox's links: "+err.Error())...), false, 0, nil
	}
	if err := sb.listen(flows); err != nil {
		return append(vs, allUndecided("listen in the sandbox: "+err.Error())...), false, 0, nil
	}
	if err := sb.bootstrap(); err != nil {
		return append(vs, allUndecided("switch conntrack on in the sandbox: "+err.Error())...), false, 0, nil
	}
	for _, fl := range flows {
		if err := sb.open(fl); err != nil {
			return append(vs, allUndecided("open the existing flow in the sandbox before the candidate: "+err.Error())...), false, 0, nil
		}
	}
	for _, l := range loads {
		t0 := time.Now()
		klog := func() []string { return nil }
		if l.lf != nil {
			klog = kernelLog()
		}
		err := sb.s.do(func() error {
			_, _, err := localExec(ctx, []byte(l.text), f.tool(l.cmd[0]), l.cmd[1:]...)
			return err
		})
		kl := klog()
		if l.lf != nil {
			candLoad = time.Since(t0)
		}
		switch {
		case err != nil && l.lf != nil:
			// the candidate's trial load failed: the ruleset is invalid
			return nil, false, 0, cand.explain(ctx, CodeInvalidRuleset, l.lf, err, kl)
		case err != nil:
			return append(vs, allUndecided(fmt.Sprintf("the %s ruleset does not load into the sandbox: %v", l.what, err))...), false, 0, nil
		}
	}
	loaded = true
	for _, fl := range flows {
		for _, flow := range []string{FlowEstablished, FlowNew} {
			v := PathVerdict{Path: fl.path, Flow: flow, Verdict: PreflightPass, Method: PreflightKernel}
			if err := sb.probe(fl, flow, 0, probeTimeout); err != nil {
				v = f.decide(ctx, sb, fl, flow, loads, err)
			}
			if len(caveats) > 0 {
				v = f.modelVerdict(ctx, sb, fl, flow, loads, v, caveats)
			}
			vs = append(vs, v)
		}
	}
	return vs, loaded, candLoad, nil
}

// ---- the sandbox's namespaces ----

type pfSandbox struct {
	s, c      *nsThread
	listeners []net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	accepted  []net.Conn
}

func newPFSandbox() (*pfSandbox, error) {
	s, err := newNSThread()
	if err != nil {
		return nil, err
	}
	c, err := newNSThread()
	if err != nil {
		s.close()
		return nil, err
	}
	return &pfSandbox{s: s, c: c}, nil
}

func (sb *pfSandbox) close() {
	for _, l := range sb.listeners {
		l.Close()
	}
	sb.mu.Lock()
	for _, c := range sb.accepted {
		c.Close()
	}
	sb.mu.Unlock()
	sb.wg.Wait()
	sb.s.close()
	sb.c.close()
}

type hostIf struct {
	name  string
	addrs []netip.Prefix
}

// hostInterfaces lists the host's interfaces (but lo) with their
// addresses: the helper's own namespace's, or FirewallOptions.NetNS's.
func (f *hostFirewall) hostInterfaces() ([]hostIf, error) {
	if f.opts.NetNS == "" {
		return listInterfaces()
	}
	type res struct {
		ifs []hostIf
		err error
	}
	ch := make(chan res, 1)
	var list func(out chan res)
	list = func(out chan res) {
		runtime.LockOSThread() // never unlocked: the thread leaves the namespace with the goroutine
		if unix.Gettid() == unix.Getpid() {
			// never the main thread, which the runtime cannot end (see nsThread)
			inner := make(chan res, 1)
			go list(inner)
			r := <-inner
			runtime.UnlockOSThread() // the main thread never left its namespace
			out <- r
			return
		}
		fd, err := unix.Open(f.opts.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			out <- res{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			out <- res{err: err}
			return
		}
		ifs, err := listInterfaces()
		out <- res{ifs, err}
	}
	go list(ch)
	r := <-ch
	return r.ifs, r.err
}

func listInterfaces() ([]hostIf, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []hostIf
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		hi := hostIf{name: i.Name}
		addrs, err := i.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil {
					hi.addrs = append(hi.addrs, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()))
				}
			}
		}
		out = append(out, hi)
	}
	return out, nil
}

// ifindexes of the path links' two ends (distinct: see addVeth)
const (
	pfServerIndex = 1000
	pfClientIndex = 2000
)

var (
	pfServerMAC = net.HardwareAddr{0x02, 0x6c, 0x6c, 0x70, 0x66, 0x01}
	pfClientMAC = net.HardwareAddr{0x02, 0x6c, 0x6c, 0x70, 0x66, 0x02}
)

// links creates, in the sandbox, a veth named like each host interface:
// those the paths come in on have their peer in the client namespace,
// with the host's addresses on the sandbox end, the path's source on the
// client end, routes and pinned neighbours both ways; the others get a
// local peer (rules naming them must load).
func (sb *pfSandbox) links(hostIfs []hostIf, flows []*pfFlow) error {
	pathIf := map[string]int{} // host interface -> client link number
	for _, fl := range flows {
		if _, ok := pathIf[fl.iface]; !ok {
			pathIf[fl.iface] = len(pathIf)
		}
	}
	err := sb.s.do(func() error {
		r, err := rtnl.Open()
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.LinkUp(1); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		for n, hi := range hostIfs {
			k, onPath := pathIf[hi.name]
			if !onPath {
				// best effort, like the trial load's links: a name the
				// kernel refuses only matters to a rule that names it
				_ = r.AddVeth(hi.name, nil, 0, fmt.Sprintf(pfPeerFmt, n), nil, 0, -1)
				continue
			}
			if err := r.AddVeth(hi.name, pfServerMAC, pfServerIndex+k, fmt.Sprintf(pfClientFmt, k), pfClientMAC, pfClientIndex+k, sb.c.fd); err != nil {
				return fmt.Errorf("create link %s: %w", hi.name, err)
			}
			ifc, err := net.InterfaceByName(hi.name)
			if err != nil {
				return err
			}
			for _, a := range hi.addrs {
				if err := r.AddAddr(ifc.Index, a); err != nil {
					return fmt.Errorf("address %s on %s: %w", a, hi.name, err)
				}
			}
			if err := r.LinkUp(ifc.Index); err != nil {
				return err
			}
			for _, fl := range flows {
				if fl.iface != hi.name {
					continue
				}
				if err := r.AddHostRoute(ifc.Index, fl.src); err != nil {
					return fmt.Errorf("route %s via %s: %w", fl.src, hi.name, err)
				}
				if err := r.AddNeigh(ifc.Index, fl.src, pfClientMAC); err != nil {
					return fmt.Errorf("neighbour %s on %s: %w", fl.src, hi.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := sb.c.do(func() error {
		r, err := rtnl.Open()
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.LinkUp(1); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		for iface, k := range pathIf {
			name := fmt.Sprintf(pfClientFmt, k)
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			if err := r.LinkUp(ifc.Index); err != nil {
				return err
			}
			for _, fl := range flows {
				if fl.iface != iface {
					continue
				}
				if err := r.AddAddr(ifc.Index, netip.PrefixFrom(fl.src, fl.src.BitLen())); err != nil {
					return fmt.Errorf("address %s on the client: %w", fl.src, err)
				}
				if err := r.AddHostRoute(ifc.Index, fl.dst); err != nil {
					return fmt.Errorf("route %s on the client: %w", fl.dst, err)
				}
				if err := r.AddNeigh(ifc.Index, fl.dst, pfServerMAC); err != nil {
					return fmt.Errorf("neighbour %s on the client: %w", fl.dst, err)
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// the kernel lets a new link's packets out only once it has seen its
	// carrier (asynchronously): wait until both ends of every path link
	// run, or the first SYN or its answer is dropped
	deadline := time.Now().Add(time.Second)
	for iface, k := range pathIf {
		for _, end := range []struct {
			t    *nsThread
			name string
		}{{sb.s, iface}, {sb.c, fmt.Sprintf(pfClientFmt, k)}} {
			for {
				var up bool
				_ = end.t.do(func() error {
					ifc, err := net.InterfaceByName(end.name)
					up = err == nil && ifc.Flags&net.FlagRunning != 0
					return nil
				})
				if up || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Microsecond)
			}
		}
	}
	return nil
}

// listen starts an echo listener on each path's sshd address and port.
func (sb *pfSandbox) listen(flows []*pfFlow) error {
	seen := map[netip.AddrPort]bool{}
	for _, fl := range flows {
		ap := netip.AddrPortFrom(fl.dst, uint16(fl.path.Port))
		if seen[ap] {
			continue
		}
		seen[ap] = true
		var l net.Listener
		if err := sb.s.do(func() (err error) { l, err = net.Listen("tcp", ap.String()); return err }); err != nil {
			return err
		}
		sb.listeners = append(sb.listeners, l)
		sb.wg.Add(1)
		go func() {
			defer sb.wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				sb.mu.Lock()
				sb.accepted = append(sb.accepted, c)
				sb.mu.Unlock()
				sb.wg.Add(1)
				go func() {
					defer sb.wg.Done()
					buf := make([]byte, 64)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	return nil
}

// bootstrap switches connection tracking on in the sandbox (a table of
// ours whose one rule reads the conntrack state and decides nothing), so
// that the flow opened before the candidate loads is established when it
// is probed, as the operator's session is on the host.
func (sb *pfSandbox) bootstrap() error {
	c, err := nftables.New(nftables.WithNetNSFd(sb.s.fd))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: pfTable})
	prio := nftables.ChainPriority(-400)
	ch := c.AddChain(&nftables.Chain{Name: "ct", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: &prio})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE}}})
	return c.Flush()
}

// open opens the path's two flows that exist before the candidate loads
// (the operator's session, and a spare for the traced re-run) and checks
// that they echo.
func (sb *pfSandbox) open(fl *pfFlow) error {
	for i := 0; i < 2; i++ {
		port := 0
		if i == 0 {
			port = fl.path.SrcPort
		}
		var c net.Conn
		// a fresh link sometimes drops the very first SYN (the kernel
		// activates a new link's queue asynchronously): rather than wait
		// for TCP's one-second retransmit, dial again after 50 ms
		dial := func(port int) (err error) {
			for try := 0; try < 40; try++ {
				err = sb.c.do(func() (err error) {
					d := net.Dialer{Timeout: 50 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: fl.src.AsSlice(), Port: port}}
					c, err = d.Dial("tcp", netip.AddrPortFrom(fl.dst, uint16(fl.path.Port)).String())
					return err
				})
				if err == nil {
					return nil
				}
			}
			return err
		}
		err := dial(port)
		if err != nil && port != 0 {
			err = dial(0)
		}
		if err != nil {
			return err
		}
		fl.conns = append(fl.conns, c)
		if err := echo(c, 2*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func echo(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("p")); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return err
	}
	return nil
}

// probe sends data on the path's established flow conn (0: the session,
// 1: the spare), or opens a new connection and sends data on it.
func (sb *pfSandbox) probe(fl *pfFlow, flow string, conn int, timeout time.Duration) error {
	if flow == FlowEstablished {
		if err := echo(fl.conns[conn], timeout); err != nil {
			return fmt.Errorf("no echo on the established flow within %s: %w", timeout, err)
		}
		return nil
	}
	var c net.Conn
	err := sb.c.do(func() (err error) {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: fl.src.AsSlice()}}
		c, err = d.Dial("tcp", netip.AddrPortFrom(fl.dst, uint16(fl.path.Port)).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("new connection: %w", err)
	}
	defer c.Close()
	if err := echo(c, timeout); err != nil {
		return fmt.Errorf("no echo on the new connection within %s: %w", timeout, err)
	}
	return nil
}

// traced runs probe while nft traces the path's packets in the sandbox
// and returns the trace's events.
func (sb *pfSandbox) traced(ctx context.Context, f *hostFirewall, fl *pfFlow, probe func() error) ([]TraceEvent, error) {
	ip := "ip"
	if fl.src.Is6() {
		ip = "ip6"
	}
	script := fmt.Sprintf("table %s %s {\n\tchain pre {\n\t\ttype filter hook prerouting priority -350;\n\t\t%s saddr %s tcp dport %d meta nftrace set 1\n\t}\n\tchain out {\n\t\ttype filter hook output priority -350;\n\t\t%s daddr %s tcp sport %d meta nftrace set 1\n\t}\n}\n",
		trace.TableFamily, trace.TableName, ip, fl.src, fl.path.Port, ip, fl.src, fl.path.Port)
	if err := sb.s.do(func() error {
		_, _, err := localExec(ctx, []byte(script), f.tool("nft"), "-f", "-")
		return err
	}); err != nil {
		return nil, probe()
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mon *exec.Cmd
	var lines []string
	done := make(chan struct{})
	err := sb.s.do(func() error {
		mon = exec.CommandContext(mctx, f.tool("nft"), "-a", "monitor", "trace")
		mon.WaitDelay = time.Second
		out, err := mon.StdoutPipe()
		if err != nil {
			return err
		}
		if err := startCounted(mon); err != nil {
			return err
		}
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
		}()
		return nil
	})
	if err != nil {
		return nil, probe()
	}
	time.Sleep(traceSettle) // the monitor subscribes to the trace events
	perr := probe()
	time.Sleep(traceSettle)
	cancel()
	<-done
	_ = mon.Wait()
	rd := trace.Reader{}
	var evs []TraceEvent
	for _, l := range lines {
		if ev, ok := rd.Line(l); ok {
			evs = append(evs, ev)
		}
	}
	return evs, perr
}

// save lists the backend's tables with counters inside the sandbox.
func (sb *pfSandbox) save(ctx context.Context, f *hostFirewall, b *iptBackend) string {
	var out []byte
	_ = sb.s.do(func() (err error) {
		out, _, err = localExec(ctx, nil, f.tool(b.save()), "-c")
		return err
	})
	return string(out)
}
