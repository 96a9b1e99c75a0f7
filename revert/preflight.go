package revert

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/lifeline-dev/lifeline/internal/trace"
	"github.com/lifeline-dev/lifeline/wire"
	"golang.org/x/sys/unix"
)

// Preflighter is a Firewall that can evaluate a candidate ruleset against
// the operator's SSH paths before anything changes (the host firewall
// can; a firewall that cannot makes every path undecided).
type Preflighter interface {
	// Preflight loads what Apply(ruleset) would leave into a private
	// network namespace that mirrors each path (the host's interface,
	// its addresses, sshd's port, a peer owning the path's source), sends
	// data on a flow established before the load and opens a new
	// connection through it, and names the rule or policy that dropped a
	// flow that failed. Changes nothing live. An error means the sandbox
	// could not load the candidate at all.
	Preflight(ctx context.Context, format Format, ruleset string, paths []SSHPath) (*PreflightReport, error)
	// ValidatePreflight is Validate and Preflight in one sandbox: the
	// candidate's load into the sandbox is its trial load (an *Error with
	// CodeInvalidRuleset when it does not load, as Validate's). When the
	// sandbox cannot be built, it validates as Validate does and the paths
	// are undecided. The report's Took leaves out the candidate's load,
	// which validation needs anyway.
	ValidatePreflight(ctx context.Context, format Format, ruleset string, paths []SSHPath) (*PreflightReport, error)
}

var _ Preflighter = (*hostFirewall)(nil)

// Probe timing on a veth pair: a handshake or an echo takes well under a
// millisecond, so a flow that has not completed within probeTimeout was
// dropped; a failure is probed again, traced, with confirmTimeout, so that
// a busy host cannot turn a slow answer into a refusal.
const (
	probeTimeout   = 150 * time.Millisecond
	confirmTimeout = 400 * time.Millisecond
	traceSettle    = 40 * time.Millisecond
)

// Names inside the sandbox: the bootstrap table that switches conntrack on
// (so the flow opened before the candidate's load stays established), the
// client end of each path's link, the peers of the other links.
const (
	pfTable     = "lifeline_preflight"
	pfClientFmt = "llpfc%d"
	pfPeerFmt   = "llpf%d"
)

// PathsOf is the one path of an operator (begin's and the preflight's
// default): from the operator's address to the host's.
func PathsOf(op Operator) []SSHPath {
	if op.Addr == "" || op.HostAddr == "" {
		return nil
	}
	return []SSHPath{{Name: "direct", Src: op.Addr, SrcPort: op.SrcPort, Dst: op.HostAddr, Port: op.SSHPort}}
}

// pfLoad is one load into the sandbox.
type pfLoad struct {
	what string   // "candidate", "live nft", ...
	cmd  []string // the tool and its arguments (reads text on stdin)
	text string
	// ipt: the backend whose save -c counts packets per rule; lines maps
	// (table, chain, k-th rule) to the operator's line (candidate only).
	ipt   *iptBackend
	lines map[string]int
	// src: the operator's nft ruleset (candidate only), to find a traced
	// rule's line in
	src string
	lf  *loadFile // the candidate's load file (its trial load's)
}

func (f *hostFirewall) Preflight(ctx context.Context, format Format, ruleset string, paths []SSHPath) (*PreflightReport, error) {
	return f.evaluate(ctx, format, ruleset, paths, false)
}

func (f *hostFirewall) ValidatePreflight(ctx context.Context, format Format, ruleset string, paths []SSHPath) (*PreflightReport, error) {
	return f.evaluate(ctx, format, ruleset, paths, true)
}

func (f *hostFirewall) evaluate(ctx context.Context, format Format, ruleset string, paths []SSHPath, validate bool) (*PreflightReport, error) {
	start := time.Now()
	b, err := f.backendFor(ctx, format)
	if err != nil {
		return nil, err
	}
	loads, err := f.preflightLoads(ctx, b, ruleset)
	if err != nil {
		return nil, err
	}
	rep := &PreflightReport{}
	var ok []SSHPath
	for _, p := range paths {
		if why := checkPath(p); why != "" {
			rep.Paths = append(rep.Paths, undecided(p, FlowEstablished, why), undecided(p, FlowNew, why))
			continue
		}
		ok = append(ok, p)
	}
	loaded := false
	var candLoad time.Duration
	if len(ok) > 0 {
		var vs []PathVerdict
		vs, loaded, candLoad, err = f.sandboxProbe(ctx, ok, loads, b)
		if err != nil {
			return nil, err
		}
		if caveats := unmirrorable(format, ruleset); len(caveats) > 0 {
			for i := range vs {
				if vs[i].Verdict == PreflightUndecided {
					continue
				}
				was := "passed"
				if vs[i].Verdict == PreflightLockout {
					was = "dropped it (" + vs[i].Decider() + ")"
				}
				vs[i].Verdict = PreflightUndecided
				vs[i].Reason = fmt.Sprintf("the sandbox %s, but the ruleset matches on what the sandbox cannot reproduce: %s", was, strings.Join(caveats, "; "))
			}
		}
		rep.Paths = append(rep.Paths, vs...)
	}
	if validate && !loaded {
		v0 := time.Now()
		if err := f.Validate(ctx, format, ruleset); err != nil {
			return nil, err
		}
		candLoad = time.Since(v0)
	}
	var all []string
	for _, v := range rep.Paths {
		all = append(all, v.Verdict)
	}
	rep.Verdict = wire.Worst(all...)
	if len(rep.Paths) == 0 {
		rep.Verdict = PreflightUndecided
		rep.Paths = append(rep.Paths, PathVerdict{Flow: FlowNew, Verdict: PreflightUndecided, Reason: "no SSH path to evaluate (the operator's connection named no host address)"})
	}
	rep.Took = Duration(time.Since(start) - candLoad)
	return rep, nil
}

func undecided(p SSHPath, flow, why string) PathVerdict {
	return PathVerdict{Path: p, Flow: flow, Verdict: PreflightUndecided, Reason: why}
}

func checkPath(p SSHPath) string {
	src, err1 := netip.ParseAddr(p.Src)
	dst, err2 := netip.ParseAddr(p.Dst)
	switch {
	case err1 != nil || err2 != nil:
		return fmt.Sprintf("the path's addresses %q -> %q are not IP addresses", p.Src, p.Dst)
	case src.Unmap().Is4() != dst.Unmap().Is4():
		return fmt.Sprintf("the path mixes IPv4 and IPv6 (%s -> %s)", p.Src, p.Dst)
	case src.Unmap() == dst.Unmap():
		return "the connection comes from the host itself: the sandbox cannot mirror a path over loopback"
	case p.Port <= 0 || p.Port > 65535:
		return fmt.Sprintf("sshd's port %d is out of range", p.Port)
	}
	return ""
}

// preflightLoads is what Apply(ruleset) leaves, as loads into an empty
// namespace: the live tables of every other backend in use, then the
// candidate (nft: on top of the live native tables, as Apply does).
func (f *hostFirewall) preflightLoads(ctx context.Context, cand backend, ruleset string) ([]pfLoad, error) {
	hf, err := f.facts(ctx)
	if err != nil {
		return nil, err
	}
	var loads []pfLoad
	for _, ob := range hf.all {
		if ob == cand || !slices.Contains(hf.active, ob.name()) {
			continue
		}
		if _, isNft := ob.(*nftBackend); isNft && cand.format() == FormatNft {
			continue
		}
		p, _, err := ob.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		l := pfLoad{what: "live " + ob.name(), text: p.Text}
		switch x := ob.(type) {
		case *nftBackend:
			l.cmd = x.loadCmd()
		case *iptBackend:
			l.cmd, l.ipt = x.loadCmd(false), x
		}
		loads = append(loads, l)
	}
	lf, err := cand.build(ctx, ruleset, nil)
	if err != nil {
		return nil, err
	}
	switch x := cand.(type) {
	case *nftBackend:
		blocks, err := x.listNative(ctx)
		if err != nil {
			return nil, err
		}
		var pre strings.Builder
		for _, blk := range blocks {
			pre.WriteString(blk.text)
		}
		if pre.Len() > 0 {
			// the live native tables, then the candidate on top (its
			// declared tables replace theirs), as Apply leaves them
			loads = append(loads, pfLoad{what: "live nft", cmd: x.loadCmd(), text: pre.String()})
		}
		loads = append(loads, pfLoad{what: "candidate", cmd: x.loadCmd(), text: lf.String(), src: ruleset, lf: lf})
	case *iptBackend:
		loads = append(loads, pfLoad{what: "candidate", cmd: x.loadCmd(false), text: lf.String(), ipt: x, lines: iptRuleLines(lf), lf: lf})
	}
	return loads, nil
}

// iptRuleLines maps "table/chain/k" (k-th rule of the chain, from 1) of an
// iptables load file to the operator's line.
func iptRuleLines(lf *loadFile) map[string]int {
	m := map[string]int{}
	n := map[string]int{}
	table := ""
	for _, l := range lf.lines {
		t := strings.TrimSpace(l.text)
		if name, ok := strings.CutPrefix(t, "*"); ok {
			table = name
			continue
		}
		if rest, ok := strings.CutPrefix(t, ":"); ok && l.origin > 0 {
			m[table+"/"+strings.Fields(rest)[0]+"/0"] = l.origin // the chain's policy
			continue
		}
		if rest, ok := strings.CutPrefix(t, "-A "); ok {
			chain := strings.Fields(rest)[0]
			key := table + "/" + chain
			n[key]++
			m[key+"/"+strconv.Itoa(n[key])] = l.origin
		}
	}
	return m
}

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
func (f *hostFirewall) sandboxProbe(ctx context.Context, paths []SSHPath, loads []pfLoad, cand backend) (vs []PathVerdict, loaded bool, candLoad time.Duration, err error) {
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
			vs = append(vs, v)
		}
	}
	return vs, loaded, candLoad, nil
}

// decide probes a failed flow again (on the spare connection, with a
// longer timeout) while nft traces it and the iptables counters count it,
// and names what dropped it.
func (f *hostFirewall) decide(ctx context.Context, sb *pfSandbox, fl *pfFlow, flow string, loads []pfLoad, first error) PathVerdict {
	v := PathVerdict{Path: fl.path, Flow: flow, Method: PreflightKernel}
	var before []string
	for _, l := range loads {
		if l.ipt != nil {
			before = append(before, sb.save(ctx, f, l.ipt))
		}
	}
	var events []TraceEvent
	var probeErr error
	if f.has("nft") {
		events, probeErr = sb.traced(ctx, f, fl, func() error { return sb.probe(fl, flow, 1, confirmTimeout) })
	} else {
		probeErr = sb.probe(fl, flow, 1, confirmTimeout)
	}
	if probeErr == nil {
		v.Verdict = PreflightPass
		v.Reason = fmt.Sprintf("the first probe failed (%v) but the second, slower one passed: a busy host, not a rule", first)
		return v
	}
	v.Verdict = PreflightLockout
	i := 0
	for _, l := range loads {
		if l.ipt == nil {
			continue
		}
		after := sb.save(ctx, f, l.ipt)
		if d, ok := iptDecider(before[i], after, l.lines); ok {
			v.Table, v.Chain, v.Rule, v.Line, v.Policy, v.Reason = l.ipt.family()+" "+d.table, d.chain, d.rule, d.line, d.policy, d.reason
			return v
		}
		i++
	}
	for _, ev := range events {
		if ev.Table == pfTable || !dropVerdict(ev.Verdict) || (ev.Kind != "rule" && ev.Kind != "policy") {
			continue
		}
		v.Table, v.Chain = ev.Family+" "+ev.Table, ev.Chain
		if ev.Kind == "policy" {
			v.Policy = true
			v.Line = nftPolicyLine(loads, ev)
		} else {
			v.Rule = ev.Rule
			v.Line = nftRuleLine(loads, ev)
		}
		return v
	}
	v.Reason = fmt.Sprintf("the flow failed in the sandbox (%v), but neither the nft trace nor the iptables counters named the rule that dropped it", probeErr)
	return v
}

func dropVerdict(v string) bool {
	w, _, _ := strings.Cut(v, " ")
	return w == "drop" || w == "reject"
}

// nftRuleLine finds the operator's line of a traced rule: the line of the
// candidate whose text is the rule as nft printed it, inside the block of
// its chain when the file has one.
func nftRuleLine(loads []pfLoad, ev TraceEvent) int {
	for _, l := range loads {
		if l.what != "candidate" || l.src == "" {
			continue
		}
		table, chain, any := "", "", 0
		for i, line := range strings.Split(l.src, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[0] == "table":
				table, chain = f[1]+" "+strings.Trim(f[2], `"{`), ""
				if len(f) == 3 && !strings.HasSuffix(f[2], "{") {
					table = "" // table F N without a block
				}
				continue
			case len(f) >= 2 && f[0] == "chain":
				chain = strings.Trim(f[1], `"{`)
				continue
			}
			text := strings.Join(f, " ")
			if text != ev.Rule {
				continue
			}
			if table == ev.Family+" "+ev.Table && chain == ev.Chain {
				return i + 1
			}
			if any == 0 {
				any = i + 1
			}
		}
		return any
	}
	return 0
}

// nftPolicyLine finds the operator's line that sets the traced chain's
// policy (0: the chain is not the file's, or its policy is the default).
func nftPolicyLine(loads []pfLoad, ev TraceEvent) int {
	for _, l := range loads {
		if l.what != "candidate" || l.src == "" {
			continue
		}
		table, chain := "", ""
		for i, line := range strings.Split(l.src, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[0] == "table":
				table, chain = f[1]+" "+strings.Trim(f[2], `"{`), ""
			case len(f) >= 2 && f[0] == "chain":
				chain = strings.Trim(f[1], `"{`)
			}
			if table == ev.Family+" "+ev.Table && chain == ev.Chain && strings.Contains(line, "policy ") {
				return i + 1
			}
		}
	}
	return 0
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
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves the namespace with the goroutine
		fd, err := unix.Open(f.opts.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		ifs, err := listInterfaces()
		ch <- res{ifs, err}
	}()
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
		r, err := openRtnl()
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.linkUp(1); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		for n, hi := range hostIfs {
			k, onPath := pathIf[hi.name]
			if !onPath {
				// best effort, like the trial load's links: a name the
				// kernel refuses only matters to a rule that names it
				_ = r.addVeth(hi.name, nil, fmt.Sprintf(pfPeerFmt, n), nil, -1)
				continue
			}
			if err := r.addVeth(hi.name, pfServerMAC, fmt.Sprintf(pfClientFmt, k), pfClientMAC, sb.c.fd); err != nil {
				return fmt.Errorf("create link %s: %w", hi.name, err)
			}
			ifc, err := net.InterfaceByName(hi.name)
			if err != nil {
				return err
			}
			for _, a := range hi.addrs {
				if err := r.addAddr(ifc.Index, a); err != nil {
					return fmt.Errorf("address %s on %s: %w", a, hi.name, err)
				}
			}
			if err := r.linkUp(ifc.Index); err != nil {
				return err
			}
			for _, fl := range flows {
				if fl.iface != hi.name {
					continue
				}
				if err := r.addHostRoute(ifc.Index, fl.src); err != nil {
					return fmt.Errorf("route %s via %s: %w", fl.src, hi.name, err)
				}
				if err := r.addNeigh(ifc.Index, fl.src, pfClientMAC); err != nil {
					return fmt.Errorf("neighbour %s on %s: %w", fl.src, hi.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return sb.c.do(func() error {
		r, err := openRtnl()
		if err != nil {
			return err
		}
		defer r.Close()
		if err := r.linkUp(1); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		for iface, k := range pathIf {
			name := fmt.Sprintf(pfClientFmt, k)
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			if err := r.linkUp(ifc.Index); err != nil {
				return err
			}
			for _, fl := range flows {
				if fl.iface != iface {
					continue
				}
				if err := r.addAddr(ifc.Index, netip.PrefixFrom(fl.src, fl.src.BitLen())); err != nil {
					return fmt.Errorf("address %s on the client: %w", fl.src, err)
				}
				if err := r.addHostRoute(ifc.Index, fl.dst); err != nil {
					return fmt.Errorf("route %s on the client: %w", fl.dst, err)
				}
				if err := r.addNeigh(ifc.Index, fl.dst, pfServerMAC); err != nil {
					return fmt.Errorf("neighbour %s on the client: %w", fl.dst, err)
				}
			}
		}
		return nil
	})
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
		dial := func(port int) error {
			return sb.c.do(func() (err error) {
				d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: fl.src.AsSlice(), Port: port}}
				c, err = d.Dial("tcp", netip.AddrPortFrom(fl.dst, uint16(fl.path.Port)).String())
				return err
			})
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
		if err := mon.Start(); err != nil {
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

// ---- naming the rule from iptables counters ----

type iptDecision struct {
	table, chain, rule string
	line               int
	policy             bool
	reason             string
}

var iptCountRE = regexp.MustCompile(`^\[(\d+):\d+\] (.*)$`)
var iptPolicyRE = regexp.MustCompile(`^:(\S+) (\S+) \[(\d+):\d+\]$`)

type iptCount struct {
	table, chain, text string
	k                  int // k-th rule of the chain, from 1; 0 for a policy
	policy             string
	pkts               int64
}

func iptCounts(save string) []iptCount {
	var out []iptCount
	table := ""
	n := map[string]int{}
	for _, l := range strings.Split(save, "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "*"); ok {
			table = name
			continue
		}
		if m := iptPolicyRE.FindStringSubmatch(l); m != nil {
			p, _ := strconv.ParseInt(m[3], 10, 64)
			out = append(out, iptCount{table: table, chain: m[1], policy: m[2], pkts: p})
			continue
		}
		if m := iptCountRE.FindStringSubmatch(l); m != nil {
			rest, ok := strings.CutPrefix(m[2], "-A ")
			if !ok {
				continue
			}
			chain := strings.Fields(rest)[0]
			n[table+"/"+chain]++
			p, _ := strconv.ParseInt(m[1], 10, 64)
			out = append(out, iptCount{table: table, chain: chain, text: m[2], k: n[table+"/"+chain], pkts: p})
		}
	}
	return out
}

// iptTableOrder is the order the tables see a packet in (hook priority).
var iptTableOrder = map[string]int{"raw": 0, "mangle": 1, "nat": 2, "filter": 3, "security": 4}

// iptDecider names the rule (DROP or REJECT) or the chain policy (DROP)
// whose packet counter rose between two saves: what dropped the probe.
func iptDecider(before, after string, lines map[string]int) (iptDecision, bool) {
	b := iptCounts(before)
	a := iptCounts(after)
	if len(a) != len(b) {
		return iptDecision{}, false
	}
	var rules, policies, nat []int
	for i := range a {
		if a[i].pkts <= b[i].pkts {
			continue
		}
		switch tgt := ruleTarget(a[i].text); {
		case a[i].k > 0 && (tgt == "DROP" || tgt == "REJECT"):
			rules = append(rules, i)
		case a[i].k > 0 && (tgt == "DNAT" || tgt == "REDIRECT"):
			nat = append(nat, i)
		case a[i].k == 0 && a[i].policy == "DROP":
			policies = append(policies, i)
		}
	}
	order := func(is []int) {
		slices.SortStableFunc(is, func(x, y int) int { return iptTableOrder[a[x].table] - iptTableOrder[a[y].table] })
	}
	order(rules)
	order(policies)
	if len(rules) > 0 {
		c := a[rules[0]]
		return iptDecision{table: c.table, chain: c.chain, rule: c.text, line: lines[c.table+"/"+c.chain+"/"+strconv.Itoa(c.k)]}, true
	}
	if len(policies) > 0 {
		c := a[policies[0]]
		return iptDecision{table: c.table, chain: c.chain, policy: true, line: lines[c.table+"/"+c.chain+"/0"]}, true
	}
	if len(nat) > 0 {
		c := a[nat[0]]
		return iptDecision{table: c.table, chain: c.chain, rule: c.text, line: lines[c.table+"/"+c.chain+"/"+strconv.Itoa(c.k)],
			reason: "the rule redirects the connection away from sshd"}, true
	}
	return iptDecision{}, false
}

// ---- what the sandbox cannot reproduce ----

var unmirrorableNft = []struct{ re, what string }{
	{`\bmeta\s+(skuid|skgid)\b|\b(skuid|skgid)\b`, "the socket's user or group (skuid/skgid)"},
	{`\bcgroup\b|\bsocket\s+cgroupv2\b`, "a cgroup"},
	{`\b(meta|ct)\s+mark\b|\bmark\s+set\b`, "a packet or connection mark set elsewhere"},
	{`\b(add|update)\s+@\w+`, "a set filled at runtime by the packet path"},
	{`\bnumgen\s+random\b`, "a random number"},
	{`\bosf\b|\bipsec\b`, "the operating system fingerprint or IPsec state"},
}

var unmirrorableIPT = []struct{ re, what string }{
	{`-m owner\b`, "the socket's owner (-m owner)"},
	{`-m cgroup\b`, "a cgroup (-m cgroup)"},
	{`-m (mark|connmark)\b|--set-x?mark\b`, "a packet or connection mark set elsewhere"},
	{`-m recent\b`, "a list filled at runtime (-m recent)"},
	{`-m set\b`, "an ipset (its members are filled at runtime)"},
	{`-m statistic\b`, "a random or nth match (-m statistic)"},
	{`-m policy\b`, "IPsec policy (-m policy)"},
}

// unmirrorable names the lines of ruleset that match on what the sandbox
// cannot reproduce (the kernel's verdict there would not be the host's).
func unmirrorable(format Format, ruleset string) []string {
	pats := unmirrorableNft
	if format != FormatNft {
		pats = unmirrorableIPT
	}
	var out []string
	for i, l := range strings.Split(ruleset, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		for _, p := range pats {
			if regexp.MustCompile(p.re).MatchString(t) {
				out = append(out, fmt.Sprintf("line %d matches on %s", i+1, p.what))
				break
			}
		}
		if len(out) >= 5 {
			break
		}
	}
	return out
}
