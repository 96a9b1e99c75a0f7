package revert

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/wire"
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
		// what the sandbox cannot reproduce: the model decides those paths
		caveats := unmirrorable(b.caveats(), ruleset)
		vs, loaded, candLoad, err = f.sandboxProbe(ctx, ok, loads, b, caveats)
		if err != nil {
			return nil, err
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
		l, err := ob.liveLoad(ctx)
		if err != nil {
			return nil, err
		}
		loads = append(loads, l)
	}
	cl, err := cand.sandboxLoads(ctx, ruleset)
	if err != nil {
		return nil, err
	}
	return append(loads, cl...), nil
}

// ---- what the sandbox cannot reproduce ----

// caveat is a match a sandbox cannot reproduce: re finds it in a line of
// a ruleset (each backend lists those of its syntax).
type caveat struct{ re, what string }

// unmirrorable names the lines of ruleset that match on what the sandbox
// cannot reproduce (the kernel's verdict there would not be the host's).
func unmirrorable(pats []caveat, ruleset string) []string {
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
