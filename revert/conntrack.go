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
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ConntrackProbe is where the conntrack verb looks. The zero value reads
// the running host: /proc, /dev/kmsg and the conntrack tool on PATH.
type ConntrackProbe struct {
	Proc string // default "/proc"
	Kmsg string // default "/dev/kmsg"
	// Tool is the conntrack binary (conntrack-tools); "" looks it up on
	// PATH, "-" means there is none.
	Tool string
	// ToolTimeout bounds each run of the tool (default 60s).
	ToolTimeout time.Duration
}

const (
	procConntrack     = "net/nf_conntrack"
	procConntrackStat = "net/stat/nf_conntrack"
	sysctlNetfilter   = "sys/net/netfilter/"
)

// conntrack answers the conntrack verb: read-only, no lock.
func (e *engine) conntrack(ctx context.Context, req *Request, rep *Report) error {
	args := ConntrackArgs{}
	if req.Conntrack != nil {
		args = *req.Conntrack
	}
	switch {
	case args.Top < 0 || args.Top > MaxConntrackTop:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("conntrack: top %d: give 1 to %d (0: %d)", args.Top, MaxConntrackTop, DefaultConntrackTop)}
	case args.Since < 0:
		return &Error{Code: CodeBadRequest, Message: "conntrack: a negative since"}
	case args.MaxEntries < 0:
		return &Error{Code: CodeBadRequest, Message: "conntrack: a negative max_entries"}
	}
	return e.phase(rep, "conntrack", func() error {
		rep.Conntrack = e.env.Conntrack.Read(ctx, args, e.clock)
		return nil
	})
}

// Read gathers the report. It never fails: what it cannot read it says in
// Notes and leaves out.
func (p ConntrackProbe) Read(ctx context.Context, args ConntrackArgs, clock Clock) *ConntrackReport {
	if p.Proc == "" {
		p.Proc = "/proc"
	}
	if p.Kmsg == "" {
		p.Kmsg = "/dev/kmsg"
	}
	if p.ToolTimeout == 0 {
		p.ToolTimeout = 60 * time.Second
	}
	if args.Top == 0 {
		args.Top = DefaultConntrackTop
	}
	r := &ConntrackReport{}
	note := func(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }
	defer func() { r.KernelLog = p.kernelLog(time.Duration(args.Since), clock) }()

	count, err := p.sysctl("nf_conntrack_count")
	if errors.Is(err, fs.ErrNotExist) {
		note("nf_conntrack is not loaded: no connection is tracked here, so there is no table to fill")
		return r
	}
	if err != nil {
		note("read %s: %v", filepath.Join(p.Proc, sysctlNetfilter, "nf_conntrack_count"), err)
		return r
	}
	r.Loaded, r.Count = true, count
	if r.Max, err = p.sysctl("nf_conntrack_max"); err != nil {
		note("read nf_conntrack_max: %v: the use cannot be computed", err)
	}
	if r.Max == 0 && err == nil {
		note("nf_conntrack_max is 0: the kernel enforces no limit")
	}
	r.Buckets, _ = p.sysctl("nf_conntrack_buckets")
	if fi, err := os.Stat(filepath.Join(p.Proc, sysctlNetfilter, "nf_conntrack_max")); err == nil && fi.Mode().Perm()&0o222 == 0 {
		r.Namespaced = true
		note("nf_conntrack_max is read-only here: this is not the machine's first network namespace (a container?); the limit and the kernel log are the whole machine's")
	}
	r.Entries = p.entries(ctx, args, note)
	r.Stats = p.stats(ctx, note)
	return r
}

func (p ConntrackProbe) sysctl(name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(p.Proc, sysctlNetfilter, name))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %.40q is not a number", name, b)
	}
	return n, nil
}

// tool is the conntrack binary, or "".
func (p ConntrackProbe) tool() string {
	switch p.Tool {
	case "-":
		return ""
	case "":
		t, err := exec.LookPath("conntrack")
		if err != nil {
			return ""
		}
		return t
	}
	return p.Tool
}

// entries lists the table from /proc/net/nf_conntrack when the kernel has
// it (CONFIG_NF_CONNTRACK_PROCFS), else with `conntrack -L -o extended`.
func (p ConntrackProbe) entries(ctx context.Context, args ConntrackArgs, note func(string, ...any)) *ConntrackEntries {
	sum := newCtSummary(args.MaxEntries)
	path := filepath.Join(p.Proc, procConntrack)
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		if err := sum.read(f); err != nil {
			note("read %s: %v", path, err)
			return nil
		}
		return sum.entries("/proc/net/nf_conntrack", args.Top)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		note("open %s: %v", path, err)
		return nil
	}
	tool := p.tool()
	if tool == "" {
		note("no /proc/net/nf_conntrack (kernel without CONFIG_NF_CONNTRACK_PROCFS) and no conntrack tool: install conntrack (conntrack-tools) to see states and sources")
		return nil
	}
	err = p.run(ctx, tool, []string{"-L", "-o", "extended"}, sum.read)
	if err != nil {
		note("conntrack -L -o extended: %v", err)
		return nil
	}
	return sum.entries("conntrack -L -o extended", args.Top)
}

// stats reads the counters from /proc/net/stat/nf_conntrack, else with
// `conntrack -S`.
func (p ConntrackProbe) stats(ctx context.Context, note func(string, ...any)) *ConntrackStats {
	path := filepath.Join(p.Proc, procConntrackStat)
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		st, err := parseProcStat(f)
		if err != nil {
			note("read %s: %v", path, err)
		}
		return st
	}
	tool := p.tool()
	if tool == "" {
		return nil
	}
	var st *ConntrackStats
	err = p.run(ctx, tool, []string{"-S"}, func(r io.Reader) (err error) {
		st, err = parseConntrackS(r)
		return err
	})
	if err != nil {
		note("conntrack -S: %v", err)
		return nil
	}
	return st
}

// run streams the tool's stdout into read, bounded by ToolTimeout.
func (p ConntrackProbe) run(ctx context.Context, tool string, args []string, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.ToolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := startCounted(cmd); err != nil {
		return err
	}
	rerr := read(out)
	_, _ = io.Copy(io.Discard, out) // let the tool finish when read stopped early
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("gave up after %s", p.ToolTimeout)
	case werr != nil:
		return fmt.Errorf("%v: %s", werr, tail(stderr.String()))
	}
	return rerr
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = "..." + s[len(s)-300:]
	}
	return s
}

// kernelLog reads the kernel's log buffer without blocking and counts its
// table-full messages.
func (p ConntrackProbe) kernelLog(since time.Duration, clock Clock) *ConntrackKernelLog {
	kl := &ConntrackKernelLog{Source: p.Kmsg, Since: Duration(since)}
	fd, err := unix.Open(p.Kmsg, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		kl.Error = fmt.Sprintf("open %s: %v (reading the kernel log needs root, or CAP_SYSLOG when kernel.dmesg_restrict is set)", p.Kmsg, err)
		return kl
	}
	defer unix.Close(fd)
	k := &kmsgScan{monoNow: clock.Monotonic(), since: since}
	if err := k.read(kmsgReader{fd}); err != nil {
		kl.Error = fmt.Sprintf("read %s: %v", p.Kmsg, err)
		return kl
	}
	kl.TableFull, kl.Recent = k.full, k.recent
	if k.full > 0 {
		kl.Last = clock.Now().Add(k.newest - k.monoNow).UTC().Round(time.Second)
	}
	return kl
}

// kmsgReader reads a non-blocking /dev/kmsg (or a file) with plain
// syscalls: Go's poller would wait for the next message instead of
// returning at the end of the buffer.
type kmsgReader struct{ fd int }

func (k kmsgReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(k.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EPIPE:
			continue // records were overwritten while we read: go on with the next
		case err == unix.EAGAIN:
			return 0, io.EOF // the end of the buffer
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
