package revert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lifeline-dev/lifeline/internal/rtnl"
	"github.com/lifeline-dev/lifeline/internal/shquote"
	"golang.org/x/sys/unix"
)

// Loads and their errors: trial loads in a private network namespace,
// mapping a tool's error back to the operator's line, finding the rule the
// kernel refused, reading the kernel's reason from its log.

// maxQuoted is how many bytes of one line of input an Error quotes.
const maxQuoted = 200

// quoteSafe makes text that quotes input safe to print and small: it cuts
// it after limit bytes (at a character boundary) with a note of the full
// length, and writes control bytes (other than tab) and invalid UTF-8 as
// \xNN, so that an error never carries a terminal escape or megabytes of a
// ruleset.
func quoteSafe(s string, limit int) string {
	full := len(s)
	cut := false
	if full > limit {
		s = s[:limit]
		if i := lastRuneStart(s); !utf8.FullRuneInString(s[i:]) {
			s = s[:i] // a character cut in half
		}
		cut = true
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20 && r != '\t', r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, s[i])
			n = 1
		case r >= 0x80 && r < 0xa0, r == 0x200b, r >= 0x200e && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			fmt.Fprintf(&b, `\u%04x`, r) // C1 controls, bidi and zero-width
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	if cut {
		fmt.Fprintf(&b, "... (cut, %d bytes in all)", full)
	}
	return b.String()
}

func lastRuneStart(s string) int {
	i := len(s) - 1
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

// safeError returns e with Text and Message made safe by quoteSafe (Text:
// one line of input; Message: lifeline's words around quoted input).
func safeError(e *Error) *Error {
	if e == nil {
		return nil
	}
	e.Text = quoteSafe(e.Text, maxQuoted)
	e.Message = quoteSafe(e.Message, 4*maxQuoted)
	return e
}

// scratch runs, in a fresh network namespace with veth links named
// like the host's, one load of stdin by loadCmd, then (if non-empty) listCmd.
//
// A load and list whose output a listing memo holds (see fw_proof.go) is
// not run again; a successful one is kept as a memo.
func (f *hostFirewall) scratch(ctx context.Context, stdin []byte, loadCmd, listCmd []string) (string, error) {
	if len(listCmd) == 0 {
		return f.scratchRun(ctx, stdin, loadCmd, nil)
	}
	key, ok := f.trialKey(ctx, "lifeline trial listing 1", loadCmd, listCmd, stdin)
	if ok {
		if out, took, hit := f.memo(key); hit {
			f.lastTrial = took
			return out, nil
		}
	}
	start := time.Now()
	out, err := f.scratchRun(ctx, stdin, loadCmd, listCmd)
	f.lastTrial = time.Since(start)
	if err == nil && ok {
		f.keepMemo(key, out, f.lastTrial)
	}
	return out, err
}

// TrialTook is how long the last listed trial load took, also when a
// memo answered for it (the time the trial took then).
func (f *hostFirewall) TrialTook() time.Duration { return f.lastTrial }

func (f *hostFirewall) scratchRun(ctx context.Context, stdin []byte, loadCmd, listCmd []string) (string, error) {
	ifaces, err := f.interfaces(ctx)
	if err != nil {
		return "", err
	}
	// ipsets are per network namespace: the rules that match them
	// (lifeline's block chain, fail2ban's) load only when they exist
	sets := f.scratchIpsets(ctx, stdin)
	if f.local {
		return f.scratchThread(ctx, ifaces, sets, stdin, loadCmd, listCmd)
	}
	var s strings.Builder
	if len(ifaces) > 0 {
		// one ip process for all links; -force goes on past a name it refuses
		s.WriteString(shquote.Quote(f.tool("ip")) + " -force -batch - >/dev/null 2>&1 <<'LIFELINE_LINKS'\n")
		for n, i := range ifaces {
			// veth, not dummy: kernels without CONFIG_DUMMY (and modules
			// not loadable in a container) refuse dummy links silently
			fmt.Fprintf(&s, "link add name %s type veth peer name llscratch%d\n", i, n)
		}
		s.WriteString("LIFELINE_LINKS\n")
	}
	if sets != "" {
		s.WriteString(shquote.Quote(f.tool("ipset")) + " restore -exist <<'LIFELINE_SETS' || exit $?\n" + sets + "LIFELINE_SETS\n")
	}
	s.WriteString(shquote.Join(loadCmd) + " || exit $?")
	if len(listCmd) > 0 {
		s.WriteString("; exec " + shquote.Join(listCmd))
	}
	return f.run(ctx, stdin, "unshare", "--net", "--", "sh", "-c", s.String())
}

var matchSetRE = regexp.MustCompile(`--match-set\s+(\S+)`)

// scratchIpsets are the create lines (from the live ipset save) of the
// ipsets the load file references, empty, for a scratch namespace.
func (f *hostFirewall) scratchIpsets(ctx context.Context, file []byte) string {
	ms := matchSetRE.FindAllSubmatch(file, -1)
	if len(ms) == 0 || !f.has("ipset") {
		return ""
	}
	want := map[string]bool{}
	for _, m := range ms {
		want[strings.Trim(string(m[1]), `"'`)] = true
	}
	out, err := f.run(ctx, nil, "ipset", "save")
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if fs := strings.Fields(l); len(fs) >= 3 && fs[0] == "create" && want[fs[1]] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// scratchThread is scratch without a shell, unshare or ip process (#12:
// each costs milliseconds, three per trial load): a thread of the helper
// unshares its network namespace, creates the veth links over rtnetlink,
// and starts the load and list tools itself, so that they run in its
// namespace. A link that cannot be created fails the trial loudly (a
// missing interface would refuse a valid ruleset that names it).
func (f *hostFirewall) scratchThread(ctx context.Context, ifaces []string, sets string, stdin []byte, loadCmd, listCmd []string) (string, error) {
	t, err := newNSThread()
	if err != nil {
		return "", fmt.Errorf("trial namespace: %w", err)
	}
	defer t.close()
	if len(ifaces) > 0 {
		err := t.do(func() error {
			r, err := rtnl.Open()
			if err != nil {
				return err
			}
			defer r.Close()
			for n, name := range ifaces {
				if err := r.AddVeth(name, nil, 0, fmt.Sprintf("llscratch%d", n), nil, 0, -1); err != nil {
					return fmt.Errorf("create link %s: %w", name, err)
				}
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("trial namespace: %w", err)
		}
	}
	run := func(stdin []byte, argv []string) (string, error) {
		var out []byte
		err := t.do(func() error {
			ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
			defer cancel()
			var err error
			// never through f.run: what the trial lists must not be cached
			// as the live ruleset, and a trial changes nothing live
			out, _, err = f.opts.Exec(ctx, stdin, argv[0], argv[1:]...)
			return err
		})
		if err != nil {
			return string(out), fmt.Errorf("run %s: %w", filepath.Base(argv[0]), err)
		}
		return string(out), nil
	}
	if sets != "" {
		if out, err := run([]byte(sets), []string{f.tool("ipset"), "restore", "-exist"}); err != nil {
			return out, fmt.Errorf("trial namespace: create the ipsets the rules match: %w", err)
		}
	}
	if out, err := run(stdin, loadCmd); err != nil {
		return out, err
	}
	if len(listCmd) == 0 {
		return "", nil
	}
	return run(nil, listCmd)
}

func (f *hostFirewall) interfaces(ctx context.Context) ([]string, error) {
	if f.local {
		// the helper's own namespace: netlink, no ip process
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		var names []string
		for _, i := range ifs {
			if i.Name != "lo" {
				names = append(names, i.Name)
			}
		}
		return names, nil
	}
	out, err := f.run(ctx, nil, "ip", "-o", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		fs := strings.SplitN(l, ": ", 3)
		if len(fs) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(fs[1]), "@")
		if name != "" && name != "lo" {
			names = append(names, name)
		}
	}
	return names, nil
}

// pointAt points e at line of lf (1-based; 0: none) and makes it safe to
// print.
func pointAt(e *Error, lf *loadFile, line int) *Error {
	if line > 0 && line <= len(lf.lines) {
		l := lf.lines[line-1]
		e.Line, e.Text = l.origin, l.text
		if l.origin == 0 {
			e.Message += " (in a line lifeline added: foreign chains or guard)"
		}
	}
	return safeError(e)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// refusedRule finds, for the iptables table whose COMMIT is
// lf.lines[commit], the index in lf.lines of the first rule the kernel
// refuses: the shortest prefix of the table's rules (after all its chain
// declarations) that fails to load, by bisecting trial loads (trial loads
// its input in a scratch namespace; log2(rules) loads). It returns the
// kernel's log lines of the last failing load. ok is false when even the
// whole table loads on its own (the failure lies elsewhere) or when a load
// cannot run.
func refusedRule(lf *loadFile, commit int, trial func(string) error) (idx int, klog []string, ok bool) {
	start := commit - 1
	for start >= 0 && !strings.HasPrefix(strings.TrimSpace(lf.lines[start].text), "*") {
		start--
	}
	if start < 0 {
		return 0, nil, false
	}
	var head, rules []int
	for i := start + 1; i < commit; i++ {
		if strings.HasPrefix(strings.TrimSpace(lf.lines[i].text), ":") {
			head = append(head, i)
		} else {
			rules = append(rules, i)
		}
	}
	fails := func(k int) (bool, error) {
		var in strings.Builder
		in.WriteString(lf.lines[start].text + "\n")
		for _, i := range head {
			in.WriteString(lf.lines[i].text + "\n")
		}
		for _, i := range rules[:k] {
			in.WriteString(lf.lines[i].text + "\n")
		}
		in.WriteString("COMMIT\n")
		stop := kernelLog()
		err := trial(in.String())
		if l := stop(); err != nil && len(l) > 0 {
			klog = l
		}
		var te *ToolError
		if err != nil && !errors.As(err, &te) {
			return false, err // the load did not run: no answer
		}
		return err != nil, nil
	}
	if bad, err := fails(len(rules)); err != nil || !bad {
		return 0, nil, false
	}
	if bad, err := fails(0); err != nil {
		return 0, nil, false
	} else if bad {
		return start, klog, true // the declarations alone fail
	}
	lo, hi := 0, len(rules) // fails(lo) is false, fails(hi) is true
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		bad, err := fails(mid)
		if err != nil {
			return 0, nil, false
		}
		if bad {
			hi = mid
		} else {
			lo = mid
		}
	}
	return rules[hi-1], klog, true
}

// kernelLog starts reading the kernel log (/dev/kmsg) from its end; the
// returned function reads what was logged since and returns the messages
// of the packet filter (x_tables, ipt_REJECT, xt_*, nf_tables, ...). Best
// effort: without /dev/kmsg it returns nothing. Another process's message
// logged in the same moment can slip in; it is only ever shown as a reason.
func kernelLog() func() []string {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return func() []string { return nil }
	}
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		unix.Close(fd)
		return func() []string { return nil }
	}
	return func() []string {
		defer unix.Close(fd)
		var out []string
		buf := make([]byte, 8192)
		for range 256 {
			n, err := unix.Read(fd, buf)
			if err == unix.EPIPE {
				continue // records overwritten meanwhile
			}
			if err != nil || n <= 0 {
				break
			}
			rec := string(buf[:n])
			_, msg, ok := strings.Cut(rec, ";")
			if !ok {
				continue
			}
			msg, _, _ = strings.Cut(msg, "\n")
			if filterMessage(msg) {
				out = append(out, strings.TrimSpace(msg))
			}
		}
		return out
	}
}

func filterMessage(msg string) bool {
	if strings.Contains(msg, "x_tables") {
		return true
	}
	for _, p := range []string{"ipt_", "ip6t_", "xt_", "ip_tables", "ip6_tables", "nf_tables", "nft_", "ebt_", "arp_tables"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
