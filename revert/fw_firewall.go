package revert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ErrPartialApply means an iptables ruleset with several tables failed
// after its first COMMIT: iptables-restore is atomic per table block only,
// so the tables before the failing one are live. Not worth retrying: the
// engine restores the snapshot at once.
var ErrPartialApply = errors.New("ruleset applied only in part")

// FirewallExec runs one host tool with stdin and returns its output. A
// tool that runs but fails returns a *ToolError.
type FirewallExec func(ctx context.Context, stdin []byte, name string, args ...string) (stdout, stderr []byte, err error)

// ToolError is a host tool that exited non-zero.
type ToolError struct {
	Tool     string
	Args     []string
	ExitCode int
	Stderr   string
}

func (e *ToolError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Sprintf("%s exited %d: %s", e.Tool, e.ExitCode, msg)
}

// FirewallOptions configures NewFirewall. The zero value drives the local
// host's tools.
type FirewallOptions struct {
	// Exec runs the tools; nil runs them locally (os/exec, WaitDelay set).
	// Tests point it at a network namespace (ip netns exec NS ...).
	Exec FirewallExec
	// LookPath finds a tool; nil is exec.LookPath.
	LookPath func(string) (string, error)
	// NetNS is the network namespace (a path like /run/netns/NAME) that the
	// netlink reads go to; "" is the helper's own. Tests set it with Exec.
	NetNS string
	// Tools overrides a tool's path by name ("nft", "iptables-nft-save", ...).
	Tools map[string]string
	// Root prefixes the paths Persist writes ("" is "/").
	Root string
	// Foreign adds chain/table name prefixes of other owners whose chains
	// survive Apply and Restore (besides DOCKER*, KUBE-*, cali-*).
	Foreign []string
	// Log receives diagnostics; nil discards them.
	Log func(format string, args ...any)
	// Timeout bounds each tool run (0: 30s).
	Timeout time.Duration
}

// NewFirewall returns the Firewall that drives the host's nft and iptables
// tools. See buildNft and buildIPTables for the rules about foreign chains.
func NewFirewall(opts FirewallOptions) Firewall {
	f := &hostFirewall{opts: opts}
	if f.opts.LookPath == nil {
		f.opts.LookPath = exec.LookPath
	}
	if f.opts.Log == nil {
		f.opts.Log = func(string, ...any) {}
	}
	if f.opts.Timeout == 0 {
		f.opts.Timeout = 30 * time.Second
	}
	if f.opts.Exec == nil {
		f.opts.Exec = localExec
	}
	return f
}

var _ Firewall = (*hostFirewall)(nil)

type hostFirewall struct {
	opts FirewallOptions

	// reads caches the output of read-only tool runs (saves, nft list,
	// ip link show, --version) for readTTL: one begin reads the same tables
	// for detect, build, snapshot and the foreign-chain merge, and every
	// process spawned costs tens of milliseconds on a busy host. Any other
	// run (a load, a trial load) may change what they read and empties it.
	mu    sync.Mutex
	reads map[string]cachedRead
}

type cachedRead struct {
	out string
	at  time.Time
}

// readTTL bounds how old a cached read may be; the host lock keeps other
// lifeline helpers out meanwhile.
const readTTL = 2 * time.Second

// readOnly reports whether a tool run only reads state.
func readOnly(name string, args []string) bool {
	switch {
	case strings.HasSuffix(name, "-save"):
		return true
	case len(args) == 1 && args[0] == "--version":
		return true
	case name == "nft" && len(args) > 0 && args[0] == "list":
		return true
	case name == "ip" && len(args) == 3 && args[0] == "-o" && args[1] == "link" && args[2] == "show":
		return true
	}
	return false
}

func localExec(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = &ToolError{Tool: name, Args: args, ExitCode: ee.ExitCode(), Stderr: errb.String()}
	}
	return out.Bytes(), errb.Bytes(), err
}

func (f *hostFirewall) tool(name string) string {
	if p, ok := f.opts.Tools[name]; ok {
		return p
	}
	return name
}

func (f *hostFirewall) has(name string) bool {
	if _, ok := f.opts.Tools[name]; ok {
		return true
	}
	_, err := f.opts.LookPath(name)
	return err == nil
}

func (f *hostFirewall) run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	key := ""
	if len(stdin) == 0 && readOnly(name, args) {
		key = name + "\x00" + strings.Join(args, "\x00")
		f.mu.Lock()
		c, ok := f.reads[key]
		f.mu.Unlock()
		if ok && time.Since(c.at) < readTTL {
			return c.out, nil
		}
	} else if name != "unshare" || len(args) == 0 || args[0] != "--net" {
		// a trial load in a private netns changes nothing live: keep the cache
		f.mu.Lock()
		f.reads = nil
		f.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	at := time.Now()
	out, _, err := f.opts.Exec(ctx, stdin, f.tool(name), args...)
	if err != nil {
		return string(out), fmt.Errorf("run %s: %w", name, err)
	}
	if key != "" {
		f.mu.Lock()
		if f.reads == nil {
			f.reads = map[string]cachedRead{}
		}
		f.reads[key] = cachedRead{out: string(out), at: at}
		f.mu.Unlock()
	}
	return string(out), nil
}

// ---- foreign owners ----

var defaultForeign = []string{"DOCKER-", "KUBE-", "cali-", "docker", "kube-", "calico"}

func (f *hostFirewall) isForeign(name string) bool {
	if name == "DOCKER" {
		return true
	}
	for _, p := range slices.Concat(defaultForeign, f.opts.Foreign) {
		if p != "" && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ---- detect ----

// backend names an iptables family + mode ("iptables-nft", ...).
type iptBackend struct {
	name   string // iptables-nft
	format Format
	v6     bool
}

func (b iptBackend) save() string    { return b.name + "-save" }
func (b iptBackend) restore() string { return b.name + "-restore" }

var iptBackends = []iptBackend{
	{"iptables-nft", FormatIPTables, false},
	{"iptables-legacy", FormatIPTables, false},
	{"ip6tables-nft", FormatIP6Tables, true},
	{"ip6tables-legacy", FormatIP6Tables, true},
}

func (f *hostFirewall) Detect(ctx context.Context) (*Detect, error) {
	d := &Detect{UID: os.Getuid(), Arch: runtime.GOARCH, Backends: []string{}, Active: []string{}}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		d.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if exe, err := os.Readlink("/proc/1/exe"); err == nil && filepath.Base(exe) == "systemd" {
		d.Systemd = true
	} else if comm, err := os.ReadFile("/proc/1/comm"); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
		d.Systemd = true
	}
	d.BootID, _ = ReadBootID()
	if f.has("nft") {
		d.Backends = append(d.Backends, "nft")
		native, _, err := f.nftTables(ctx)
		if err != nil {
			return nil, err
		}
		if len(native) > 0 {
			d.Active = append(d.Active, "nft")
		}
	}
	for _, b := range iptBackends {
		if !f.has(b.name) || !f.has(b.save()) || !f.has(b.restore()) {
			continue
		}
		d.Backends = append(d.Backends, b.name)
		ts, err := f.iptSave(ctx, b)
		if err != nil {
			return nil, err
		}
		if iptInUse(ts) {
			d.Active = append(d.Active, b.name)
		}
	}
	return d, nil
}

// iptInUse reports whether tables hold anything: a rule, a user chain or a
// policy other than ACCEPT.
func iptInUse(ts []*iptTable) bool {
	for _, t := range ts {
		if len(t.rules) > 0 {
			return true
		}
		for _, c := range t.chains {
			if c.policy != "ACCEPT" {
				return true
			}
		}
	}
	return false
}

// defaultMode returns "nft" or "legacy" from `iptables --version`.
func (f *hostFirewall) defaultMode(ctx context.Context, v6 bool) string {
	name := "iptables"
	if v6 {
		name = "ip6tables"
	}
	if !f.has(name) {
		return ""
	}
	out, err := f.run(ctx, nil, name, "--version")
	if err != nil {
		return ""
	}
	switch {
	case strings.Contains(out, "(nf_tables)"):
		return "nft"
	case strings.Contains(out, "(legacy)"):
		return "legacy"
	}
	return "legacy" // iptables before 1.8 had no mode and was legacy
}

// backendFor picks the backend the host uses for a family: the one in use;
// when both or none are, the mode of the default iptables binary.
func (f *hostFirewall) backendFor(ctx context.Context, format Format) (iptBackend, error) {
	v6 := format == FormatIP6Tables
	var avail, used []iptBackend
	for _, b := range iptBackends {
		if b.v6 != v6 || !f.has(b.save()) || !f.has(b.restore()) {
			continue
		}
		avail = append(avail, b)
		ts, err := f.iptSave(ctx, b)
		if err != nil {
			return iptBackend{}, err
		}
		if iptInUse(ts) {
			used = append(used, b)
		}
	}
	if len(avail) == 0 {
		return iptBackend{}, &Error{Code: CodeBackend, Message: fmt.Sprintf("no %s backend on this host: install iptables", format)}
	}
	if len(used) == 1 {
		return used[0], nil
	}
	mode := f.defaultMode(ctx, v6)
	if len(used) > 1 {
		f.opts.Log("both %s backends hold rules, using the default %s one", format, mode)
	}
	for _, b := range avail {
		if strings.HasSuffix(b.name, "-"+mode) {
			return b, nil
		}
	}
	return avail[0], nil
}

func (f *hostFirewall) iptSave(ctx context.Context, b iptBackend) ([]*iptTable, error) {
	out, err := f.run(ctx, nil, b.save())
	if err != nil {
		return nil, fmt.Errorf("save %s: %w", b.name, err)
	}
	ts, err := parseIPTables(out)
	if err != nil {
		return nil, fmt.Errorf("parse %s output: %w", b.save(), err)
	}
	return ts, nil
}

// ---- nft tables ----

var xtablesNames = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

// nftTables lists live tables: native non-foreign ones (lifeline's to
// snapshot and replace) and the others (iptables-nft's and foreign ones,
// never touched by nft).
func (f *hostFirewall) nftTables(ctx context.Context) (native, other []nftTableID, err error) {
	all, chains, err := f.nftInventory()
	if err != nil {
		return nil, nil, err
	}
	for _, t := range all {
		xt := xtablesManaged(t, chains)
		if t.family == "arp" && t.name == "filter" || t.family == "bridge" && (t.name == "filter" || t.name == "nat" || t.name == "broute") {
			xt = true // arptables-nft / ebtables-nft
		}
		foreign := f.isForeign(t.name)
		for _, c := range chains {
			if c.table == t && f.isForeign(c.name) {
				foreign = true
			}
		}
		if xt || foreign {
			other = append(other, t)
		} else {
			native = append(native, t)
		}
	}
	return native, other, nil
}

// nftListNative lists the live native nft tables (see nftTables) as blocks.
func (f *hostFirewall) nftListNative(ctx context.Context) ([]nftBlock, error) {
	native, _, err := f.nftTables(ctx)
	if err != nil {
		return nil, fmt.Errorf("read live nft tables: %w", err)
	}
	var blocks []nftBlock
	for _, t := range native {
		out, err := f.run(ctx, nil, "nft", "list", "table", t.family, t.name)
		if err != nil {
			return nil, fmt.Errorf("list nft table %s: %w", t, err)
		}
		blocks = append(blocks, splitNftTables(out)...)
	}
	return blocks, nil
}

// ---- snapshot ----

func (f *hostFirewall) Snapshot(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{Taken: time.Now().UTC()}
	if f.has("nft") {
		blocks, err := f.nftListNative(ctx)
		if err != nil {
			return nil, fmt.Errorf("snapshot nft: %w", err)
		}
		var b strings.Builder
		for _, blk := range blocks {
			b.WriteString(blk.text)
		}
		s.Parts = append(s.Parts, Part{Backend: "nft", Format: FormatNft, Text: b.String()})
	}
	for _, format := range []Format{FormatIPTables, FormatIP6Tables} {
		def, err := f.backendFor(ctx, format)
		var fe *Error
		if errors.As(err, &fe) && fe.Code == CodeBackend {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", format, err)
		}
		for _, b := range iptBackends {
			if b.format != format || !f.has(b.save()) || !f.has(b.restore()) {
				continue
			}
			out, err := f.run(ctx, nil, b.save())
			if err != nil {
				return nil, fmt.Errorf("snapshot %s: %w", b.name, err)
			}
			ts, err := parseIPTables(out)
			if err != nil {
				return nil, fmt.Errorf("snapshot %s: %w", b.name, err)
			}
			if b == def || iptInUse(ts) {
				s.Parts = append(s.Parts, Part{Backend: b.name, Format: format, Text: out})
			}
		}
	}
	if len(s.Parts) == 0 {
		return nil, &Error{Code: CodeBackend, Message: "no firewall tool on this host: install nftables or iptables"}
	}
	return s, nil
}

// ---- request checks: before the lock, the record or any tool run ----

// formatFits refuses a ruleset whose format is not the one of the host's
// active backend, unless the operator chose the format explicitly: an nft
// ruleset on a host whose rules are iptables' (legacy or iptables-nft), or
// an iptables ruleset on a host whose rules are native nft tables, would
// load as a second firewall layer next to the one in use, and every packet
// would have to pass both. A host with no rules at all accepts any format.
func formatFits(req *Request, det *Detect) *Error {
	if req.FormatExplicit || det == nil {
		return nil
	}
	var nftActive bool
	var ipt []string
	for _, a := range det.Active {
		if a == "nft" {
			nftActive = true
		} else {
			ipt = append(ipt, a)
		}
	}
	switch {
	case req.Format == FormatNft && !nftActive && len(ipt) > 0:
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("the host's active firewall is %s, but the ruleset is in nft format: it would load as a second layer beside the active rules; send an iptables-save ruleset, or pass --format nft to load it anyway", strings.Join(ipt, ", "))}
	case req.Format != FormatNft && nftActive && len(ipt) == 0:
		return &Error{Code: CodeBackend, Message: fmt.Sprintf("the host's active firewall is nft (native tables), but the ruleset is in %s format: it would load as a second layer beside the active rules; send an nft ruleset, or pass --format %s to load it anyway", req.Format, req.Format)}
	}
	return nil
}

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

// ---- validation: trial loads in a private network namespace ----

// scratchScript runs, in a fresh network namespace with veth links named
// like the host's, one load of stdin by loadCmd, then (if non-empty) listCmd.
func (f *hostFirewall) scratch(ctx context.Context, stdin []byte, loadCmd, listCmd []string) (string, error) {
	ifaces, err := f.interfaces(ctx)
	if err != nil {
		return "", err
	}
	var s strings.Builder
	if len(ifaces) > 0 {
		// one ip process for all links; -force goes on past a name it refuses
		s.WriteString(shQuote(f.tool("ip")) + " -force -batch - >/dev/null 2>&1 <<'LIFELINE_LINKS'\n")
		for n, i := range ifaces {
			// veth, not dummy: kernels without CONFIG_DUMMY (and modules
			// not loadable in a container) refuse dummy links silently
			fmt.Fprintf(&s, "link add name %s type veth peer name llscratch%d\n", i, n)
		}
		s.WriteString("LIFELINE_LINKS\n")
	}
	s.WriteString(shJoin(loadCmd) + " || exit $?")
	if len(listCmd) > 0 {
		s.WriteString("; exec " + shJoin(listCmd))
	}
	return f.run(ctx, stdin, "unshare", "--net", "--", "sh", "-c", s.String())
}

func (f *hostFirewall) interfaces(ctx context.Context) ([]string, error) {
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

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shQuote(a)
	}
	return strings.Join(q, " ")
}

var (
	nftErrRE        = regexp.MustCompile(`(?m)^[^\n:]*:(\d+):\d+(?:-\d+)?: (Error: .*)$`)
	iptLineRE       = regexp.MustCompile(`(?:Error occurred at line: |line )(\d+)`)
	iptNoChainRE    = regexp.MustCompile(`Chain '([^']+)' does not exist`)
	iptLinePrefixRE = regexp.MustCompile(`^line \d+: `)
	iptBannerRE     = regexp.MustCompile(`^\S+ v[0-9.]+ \([^)]*\):\s*$`)
)

// loadError turns a failed load of lf into an *Error with code, pointing at
// the operator's line when the tool names one.
func loadError(code string, format Format, lf *loadFile, err error) *Error {
	var te *ToolError
	if !errors.As(err, &te) {
		return safeError(&Error{Code: code, Message: err.Error()})
	}
	stderr := strings.TrimSpace(te.Stderr)
	e := &Error{Code: code, Message: firstLine(stderr)}
	line := 0
	if format == FormatNft {
		if m := nftErrRE.FindStringSubmatch(stderr); m != nil {
			line, _ = strconv.Atoi(m[1])
			e.Message = m[2]
		}
	} else {
		for _, l := range strings.Split(stderr, "\n") {
			// iptables-nft prints a bare banner line before a kernel-side error
			if !strings.Contains(l, "Try `") && !strings.HasPrefix(l, "Error occurred") && !iptBannerRE.MatchString(l) {
				// its "line N: " counts lines of the load file, not the operator's
				e.Message = iptLinePrefixRE.ReplaceAllString(strings.TrimSpace(l), "")
				break
			}
		}
		if m := iptLineRE.FindStringSubmatch(stderr); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		// iptables-nft names the COMMIT line for a jump to a missing chain:
		// point at the jump instead.
		if m := iptNoChainRE.FindStringSubmatch(stderr); m != nil && line > 0 && line <= len(lf.lines) && strings.TrimSpace(lf.lines[line-1].text) == "COMMIT" {
			for i := line - 2; i >= 0 && !strings.HasPrefix(lf.lines[i].text, "*"); i-- {
				if ruleTarget(lf.lines[i].text) == m[1] {
					line = i + 1
					break
				}
			}
		}
	}
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

func (f *hostFirewall) Validate(ctx context.Context, format Format, ruleset string) error {
	lf, b, err := f.build(ctx, format, ruleset, nil)
	if err != nil {
		return err
	}
	klog := kernelLog()
	if err := f.trialLoad(ctx, format, b, lf); err != nil {
		return f.explain(ctx, CodeInvalidRuleset, format, b, lf, err, klog())
	}
	klog()
	return nil
}

// explain is loadError plus what the kernel said. A rule the kernel
// refuses (REJECT --reject-with tcp-reset without -p tcp, DNAT in the
// filter table, ...) passes every userspace check: iptables-legacy-restore
// then names only the table's COMMIT (a line lifeline writes), and
// iptables-nft-restore names the rule with nothing but an errno. For a
// COMMIT, explain finds the first rule of that table that the kernel
// refuses by bisecting trial loads of the table's prefixes in scratch
// namespaces (log2(rules) loads), and adds the kernel's own reason from
// its log when it logged one during a failing load.
func (f *hostFirewall) explain(ctx context.Context, code string, format Format, b iptBackend, lf *loadFile, err error, klog []string) *Error {
	e := loadError(code, format, lf, err)
	var te *ToolError
	if format != FormatNft && errors.As(err, &te) {
		line := 0
		if m := iptLineRE.FindStringSubmatch(te.Stderr); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		if line > 0 && line <= len(lf.lines) && strings.TrimSpace(lf.lines[line-1].text) == "COMMIT" && (e.Line == 0 || e.Text == "COMMIT") {
			if i, more, ok := f.refusedRule(ctx, format, b, lf, line-1); ok {
				l := lf.lines[i]
				e.Line, e.Text = l.origin, quoteSafe(l.text, maxQuoted)
				e.Message = "the kernel refused this rule when its table was committed"
				if l.origin == 0 {
					e.Message += " (in a line lifeline added: foreign chains or guard)"
				}
				if len(more) > 0 {
					klog = more
				}
			}
		}
	}
	if len(klog) > 0 {
		e.Message = quoteSafe(e.Message+"; kernel: "+klog[len(klog)-1], 4*maxQuoted)
	} else if format != FormatNft && e.Line > 0 {
		e.Message = quoteSafe(e.Message+" (the kernel gave no reason here; dmesg may have one)", 4*maxQuoted)
	}
	return e
}

// refusedRule finds, for the table whose COMMIT is lf.lines[commit], the
// index in lf.lines of the first rule the kernel refuses: the shortest
// prefix of the table's rules (after all its chain declarations) that
// fails to load. It returns the kernel's log lines of the last failing
// load. ok is false when even the whole table loads on its own (the
// failure lies elsewhere) or when a load cannot run.
func (f *hostFirewall) refusedRule(ctx context.Context, format Format, b iptBackend, lf *loadFile, commit int) (idx int, klog []string, ok bool) {
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
		_, err := f.scratch(ctx, []byte(in.String()), f.loadCmd(format, b), nil)
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

// trialLoad loads lf into a scratch namespace with the backend's tool.
func (f *hostFirewall) trialLoad(ctx context.Context, format Format, b iptBackend, lf *loadFile) error {
	_, err := f.scratch(ctx, []byte(lf.String()), f.loadCmd(format, b), nil)
	return err
}

func (f *hostFirewall) loadCmd(format Format, b iptBackend) []string {
	if format == FormatNft {
		return []string{f.tool("nft"), "-f", "-"}
	}
	return []string{f.tool(b.restore()), "-w", "10"}
}

// build returns the load file for ruleset (with the live foreign chains,
// the flush rewrite and guard) and, for iptables formats, the backend.
func (f *hostFirewall) build(ctx context.Context, format Format, ruleset string, guard *Guard) (*loadFile, iptBackend, error) {
	switch format {
	case FormatNft:
		if !f.has("nft") {
			return nil, iptBackend{}, &Error{Code: CodeBackend, Message: "nft is not installed: install nftables or send an iptables ruleset"}
		}
		native, _, err := f.nftTables(ctx)
		if err != nil {
			return nil, iptBackend{}, err
		}
		return buildNft(ruleset, native, guard, f.opts.Log), iptBackend{}, nil
	case FormatIPTables, FormatIP6Tables:
		b, err := f.backendFor(ctx, format)
		if err != nil {
			return nil, b, err
		}
		user, err := parseIPTables(ruleset)
		if err != nil {
			return nil, b, safeError(&Error{Code: CodeInvalidRuleset, Message: err.Error()})
		}
		live, err := f.iptSave(ctx, b)
		if err != nil {
			return nil, b, err
		}
		if guard != nil && strings.Contains(guard.Addr, ":") != b.v6 {
			f.opts.Log("%s ruleset: operator address %s is of the other family, no guard needed", format, guard.Addr)
			guard = nil
		}
		return buildIPTables(user, live, f.isForeign, guard, b.v6, f.opts.Log), b, nil
	}
	return nil, iptBackend{}, &Error{Code: CodeInvalidRuleset, Message: fmt.Sprintf("unknown format %q: use nft, iptables or ip6tables", format)}
}

func (f *hostFirewall) ValidateSnapshot(ctx context.Context, s *Snapshot) error {
	for _, p := range s.Parts {
		lf, b, err := f.restoreFile(ctx, p)
		if err != nil {
			return err
		}
		if err := f.trialLoad(ctx, p.Format, b, lf); err != nil {
			e := loadError(CodeSnapshot, p.Format, lf, err)
			e.Message = p.Backend + " snapshot does not load: " + e.Message
			return e
		}
	}
	return nil
}

// ---- apply and restore ----

func (f *hostFirewall) Apply(ctx context.Context, format Format, ruleset string, guard *Guard) error {
	if guard != nil && format != FormatNft && guard.Deadline.After(time.Date(2038, 1, 19, 3, 14, 7, 0, time.UTC)) {
		return &Error{Code: CodeInternal, Message: "guard deadline is past 2038-01-19, the limit of iptables -m time"}
	}
	lf, b, err := f.build(ctx, format, ruleset, guard)
	if err != nil {
		return fmt.Errorf("apply %s: %w", format, err)
	}
	return f.load(ctx, format, b, lf, CodeApplyFailed)
}

// load feeds lf to the live host.
func (f *hostFirewall) load(ctx context.Context, format Format, b iptBackend, lf *loadFile, code string) error {
	cmd := f.loadCmd(format, b)
	_, err := f.run(ctx, []byte(lf.String()), cmd[0], cmd[1:]...)
	if err == nil {
		return nil
	}
	e := loadError(code, format, lf, err)
	if format != FormatNft && len(lf.commits) > 1 {
		var te *ToolError
		line := 0
		if errors.As(err, &te) {
			if m := iptLineRE.FindStringSubmatch(te.Stderr); m != nil {
				line, _ = strconv.Atoi(m[1])
			}
		}
		if line == 0 || line > lf.commits[0] {
			return fmt.Errorf("load %s: %w: %w", b.name, ErrPartialApply, e)
		}
	}
	return fmt.Errorf("load %s: %w", format, e)
}

// restoreFile builds the load file that puts part back.
//
// nft: one file that deletes every live native, non-foreign table and
// every table of the snapshot (idiom: works whether it exists) and
// recreates the snapshot's non-foreign tables. iptables: every table of the
// snapshot, plus empty blocks (ACCEPT, no rules) for tables live now but
// absent from it, with the live foreign chains carried over.
func (f *hostFirewall) restoreFile(ctx context.Context, p Part) (*loadFile, iptBackend, error) {
	if p.Format == FormatNft {
		native, _, err := f.nftTables(ctx)
		if err != nil {
			return nil, iptBackend{}, err
		}
		lf := &loadFile{}
		ids := slices.Clone(native)
		blocks := splitNftTables(p.Text)
		var keep []nftBlock
		for _, blk := range blocks {
			if f.isForeign(blk.id.name) {
				f.opts.Log("snapshot table %s is foreign, leaving the live one", blk.id)
				continue
			}
			keep = append(keep, blk)
			if !slices.Contains(ids, blk.id) {
				ids = append(ids, blk.id)
			}
		}
		for _, id := range ids {
			for _, l := range nftIdiom(id) {
				lf.add(l, 0)
			}
		}
		n := 0
		for _, blk := range keep {
			for _, l := range splitLines(blk.text) {
				n++
				lf.add(l, n)
			}
		}
		return lf, iptBackend{}, nil
	}
	var b iptBackend
	for _, c := range iptBackends {
		if c.name == p.Backend {
			b = c
		}
	}
	if b.name == "" || !f.has(b.restore()) {
		return nil, b, &Error{Code: CodeBackend, Message: fmt.Sprintf("backend %s of the snapshot is missing: install iptables", p.Backend)}
	}
	want, err := parseIPTables(p.Text)
	if err != nil {
		return nil, b, &Error{Code: CodeSnapshot, Message: fmt.Sprintf("parse %s snapshot: %v", p.Backend, err)}
	}
	live, err := f.iptSave(ctx, b)
	if err != nil {
		return nil, b, err
	}
	all := append(want, emptyTables(want, live)...)
	return buildIPTables(all, live, f.isForeign, nil, b.v6, f.opts.Log), b, nil
}

func (f *hostFirewall) Restore(ctx context.Context, s *Snapshot) error {
	var errs []error
	for _, p := range s.Parts {
		lf, b, err := f.restoreFile(ctx, p)
		if err == nil {
			err = f.load(ctx, p.Format, b, lf, CodeRevertFailed)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s snapshot: %w", p.Backend, err))
		}
	}
	return errors.Join(errs...)
}

// ---- compare ----

// liveNorm returns the normalised live ruleset of one part's backend.
func (f *hostFirewall) liveNorm(ctx context.Context, format Format, b iptBackend) (string, error) {
	if format == FormatNft {
		blocks, err := f.nftListNative(ctx)
		if err != nil {
			return "", err
		}
		return normNft(blocks), nil
	}
	ts, err := f.iptSave(ctx, b)
	if err != nil {
		return "", err
	}
	return normIPTables(ts, f.isForeign), nil
}

func (f *hostFirewall) partNorm(p Part) (string, error) {
	if p.Format == FormatNft {
		var keep []nftBlock
		for _, blk := range splitNftTables(p.Text) {
			if !f.isForeign(blk.id.name) {
				keep = append(keep, blk)
			}
		}
		return normNft(keep), nil
	}
	ts, err := parseIPTables(p.Text)
	if err != nil {
		return "", err
	}
	return normIPTables(ts, f.isForeign), nil
}

func (f *hostFirewall) Equal(ctx context.Context, s *Snapshot) (bool, string, error) {
	var diffs strings.Builder
	for _, p := range s.Parts {
		var b iptBackend
		for _, c := range iptBackends {
			if c.name == p.Backend {
				b = c
			}
		}
		live, err := f.liveNorm(ctx, p.Format, b)
		if err != nil {
			return false, "", fmt.Errorf("compare %s: %w", p.Backend, err)
		}
		want, err := f.partNorm(p)
		if err != nil {
			return false, "", fmt.Errorf("compare %s: %w", p.Backend, err)
		}
		diffs.WriteString(unifiedDiff("live "+p.Backend, "snapshot "+p.Backend, live, want))
	}
	return diffs.Len() == 0, diffs.String(), nil
}

// applied returns, normalised, what loading ruleset leaves in a scratch
// namespace (onTop: the live ruleset is loaded first, so the result is
// what Apply would leave), and the live ruleset normalised the same way.
func (f *hostFirewall) applied(ctx context.Context, format Format, ruleset string, onTop bool) (got, live map[string]string, order []string, err error) {
	lf, b, err := f.build(ctx, format, ruleset, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	got, live = map[string]string{}, map[string]string{}
	if format == FormatNft {
		blocks, err := f.nftListNative(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		var pre strings.Builder
		for _, blk := range blocks {
			live[blk.id.String()] = normNft([]nftBlock{blk})
			order = append(order, blk.id.String())
			if onTop {
				pre.WriteString(blk.text)
			}
		}
		out, err := f.scratch(ctx, []byte(pre.String()+lf.String()), f.loadCmd(format, b), []string{f.tool("nft"), "list", "ruleset"})
		if err != nil {
			return nil, nil, nil, loadError(CodeInvalidRuleset, format, lf, err)
		}
		for _, blk := range splitNftTables(out) {
			if !f.isForeign(blk.id.name) {
				got[blk.id.String()] = normNft([]nftBlock{blk})
				if !slices.Contains(order, blk.id.String()) {
					order = append(order, blk.id.String())
				}
			}
		}
		return got, live, order, nil
	}
	lts, err := f.iptSave(ctx, b)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, t := range lts {
		live[t.name] = normIPTables([]*iptTable{t}, f.isForeign)
		order = append(order, t.name)
		if onTop {
			got[t.name] = live[t.name]
		}
	}
	out, err := f.scratch(ctx, []byte(lf.String()), f.loadCmd(format, b), []string{f.tool(b.save())})
	if err != nil {
		return nil, nil, nil, f.explain(ctx, CodeInvalidRuleset, format, b, lf, err, nil)
	}
	user, _ := parseIPTables(ruleset)
	sts, err := parseIPTables(out)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse trial %s: %w", b.save(), err)
	}
	for _, t := range sts {
		if findTable(user, t.name) == nil {
			continue // created by the save in the scratch namespace, not by the ruleset
		}
		got[t.name] = normIPTables([]*iptTable{t}, f.isForeign)
		if !slices.Contains(order, t.name) {
			order = append(order, t.name)
		}
	}
	return got, live, order, nil
}

func (f *hostFirewall) Contains(ctx context.Context, format Format, ruleset string) (bool, string, error) {
	got, live, order, err := f.applied(ctx, format, ruleset, false)
	if err != nil {
		return false, "", fmt.Errorf("compare %s ruleset with live: %w", format, err)
	}
	var a, b strings.Builder
	for _, k := range order {
		if w, ok := got[k]; ok {
			a.WriteString(live[k])
			b.WriteString(w)
		}
	}
	d := unifiedDiff("live", "ruleset", a.String(), b.String())
	return d == "", d, nil
}

func (f *hostFirewall) Diff(ctx context.Context, format Format, ruleset string) (string, error) {
	got, live, order, err := f.applied(ctx, format, ruleset, true)
	if err != nil {
		return "", fmt.Errorf("diff %s ruleset with live: %w", format, err)
	}
	var a, b strings.Builder
	for _, k := range order {
		a.WriteString(live[k])
		b.WriteString(got[k])
	}
	return unifiedDiff("live", "after apply", a.String(), b.String()), nil
}

// ---- persist ----

// Persist writes what the kernel holds now for format's family (not the
// operator's file: that could be empty, or hold text the tools read
// differently) where the boot-time loader reads it, and keeps the previous
// boot file beside it as FILE.lifeline.bak. It returns the file written and
// the backup, when there was a previous file. ruleset only tells the
// engine's fakes what was confirmed; the host's tools are the truth.
//
// nft: the live native, non-foreign tables (nft list table), each after the
// `table F N` + `delete table F N` idiom, into /etc/nftables.conf (0755,
// #!/usr/sbin/nft -f): loading it at boot or by hand replaces those tables
// and leaves iptables-nft's and foreign ones (Docker's, kube-proxy's)
// alone, which `flush ruleset` would not. iptables: the backend's save
// output without foreign chains (their owners recreate them at boot; an old
// copy must not come back), into /etc/sysconfig/iptables (ip6tables) when
// /etc/sysconfig exists, else /etc/iptables/rules.v4 (rules.v6).
func (f *hostFirewall) Persist(ctx context.Context, format Format, ruleset string) ([]string, error) {
	root := f.root()
	var path, text string
	mode := os.FileMode(0o644)
	switch format {
	case FormatNft:
		path, mode = "/etc/nftables.conf", 0o755
		blocks, err := f.nftListNative(ctx)
		if err != nil {
			return nil, fmt.Errorf("persist: %w", err)
		}
		var b strings.Builder
		b.WriteString("#!/usr/sbin/nft -f\n# written by lifeline after a confirm: the live native nft tables\n")
		for _, blk := range blocks {
			b.WriteString("\n")
			for _, l := range nftIdiom(blk.id) {
				b.WriteString(l + "\n")
			}
			b.WriteString(blk.text)
			if !strings.HasSuffix(blk.text, "\n") {
				b.WriteString("\n")
			}
		}
		text = b.String()
	case FormatIPTables, FormatIP6Tables:
		path = f.bootPath(format)
		if strings.HasPrefix(path, "/etc/sysconfig/") {
			mode = 0o600
		}
		b, err := f.backendFor(ctx, format)
		if err != nil {
			return nil, fmt.Errorf("persist: %w", err)
		}
		out, err := f.run(ctx, nil, b.save())
		if err != nil {
			return nil, fmt.Errorf("persist: save %s: %w", b.name, err)
		}
		text = withoutForeign(out, f.isForeign)
	default:
		return nil, fmt.Errorf("persist: unknown format %q", format)
	}
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return nil, fmt.Errorf("persist %s: %w", path, err)
	}
	written := []string{path}
	if st, err := os.Stat(full); err == nil {
		mode = st.Mode().Perm()
		old, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("persist %s: keep previous file: %w", path, err)
		}
		if err := writeAtomic(full+".lifeline.bak", old, mode); err != nil {
			return nil, fmt.Errorf("persist %s: keep previous file: %w", path, err)
		}
		written = append(written, path+".lifeline.bak")
	}
	if err := writeAtomic(full, []byte(text), mode); err != nil {
		return nil, fmt.Errorf("persist %s: %w", path, err)
	}
	return written, nil
}

// withoutForeign drops from iptables-save output the declarations and rules
// of foreign chains and the rules that jump into them.
func withoutForeign(save string, isForeign func(string) bool) string {
	var b strings.Builder
	for _, l := range splitLines(save) {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, ":") {
			if f := strings.Fields(t[1:]); len(f) > 0 && isForeign(f[0]) {
				continue
			}
		} else if strings.HasPrefix(t, "-") && (isForeign(ruleChain(t)) || isForeign(ruleTarget(t))) {
			continue
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// root is the file system root persist and boot configs are under.
func (f *hostFirewall) root() string {
	if f.opts.Root == "" {
		return "/"
	}
	return f.opts.Root
}

// bootPath is where the host's boot-time loader reads format's ruleset
// (and where Persist writes it), relative to the root.
func (f *hostFirewall) bootPath(format Format) string {
	root := f.root()
	switch format {
	case FormatNft:
		return "/etc/nftables.conf"
	case FormatIPTables, FormatIP6Tables:
		name := map[Format]string{FormatIPTables: "iptables", FormatIP6Tables: "ip6tables"}[format]
		if st, err := os.Stat(filepath.Join(root, "etc/sysconfig")); err == nil && st.IsDir() {
			return "/etc/sysconfig/" + name
		}
		return map[Format]string{FormatIPTables: "/etc/iptables/rules.v4", FormatIP6Tables: "/etc/iptables/rules.v6"}[format]
	}
	return ""
}

// BootEqual trial-loads the boot config into a scratch namespace and
// compares what it leaves with the live tables it declares (nft: every
// native table, as the boot file flushes the ruleset first).
func (f *hostFirewall) BootEqual(ctx context.Context, format Format) (bool, string, error) {
	root := f.root()
	path := f.bootPath(format)
	if path == "" {
		return false, "", fmt.Errorf("boot config: unknown format %q", format)
	}
	text, err := os.ReadFile(filepath.Join(root, path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", fmt.Errorf("%s: %w", path, ErrNoBootConfig)
	}
	if err != nil {
		return false, "", err
	}
	got, live, order, err := f.applied(ctx, format, string(text), false)
	if err != nil {
		return false, "", fmt.Errorf("load boot config %s: %w", path, err)
	}
	var a, b strings.Builder
	for _, k := range order {
		_, inBoot := got[k]
		if inBoot || format == FormatNft {
			a.WriteString(live[k])
			b.WriteString(got[k])
		}
	}
	d := unifiedDiff("live", path, a.String(), b.String())
	return d == "", d, nil
}
