package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dev/lifeline/internal/fanout"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/inventory"
	"github.com/lifeline-dev/lifeline/remote"
)

func init() { subcommands = append(subcommands, newRunCmd) }

type runOptions struct {
	forks   int
	sudo    bool
	timeout time.Duration
	limit   string
}

func newRunCmd(g *globals) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run TARGET -- COMMAND...",
		Short: "Run a shell command on every targeted host",
		Long: `Run a shell command on every targeted host in parallel, over a fresh SSH
connection each. Output lines are prefixed with the host's name (stderr lines
go to stderr); a failed host ends with one line saying why. TARGET is a host,
a group, a pattern or "all" from the inventory, or ssh_config aliases.`,
		Example: `  lifeline -i lab/inventory.yaml run all -- hostname
  lifeline run web1,web2 --sudo -- nft list ruleset`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) < 2 || (dash != -1 && dash != 1) {
				return usagef("usage: lifeline run TARGET -- COMMAND...")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), g, o, args[0], strings.Join(args[1:], " "))
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.forks, "forks", 20, "hosts to run on at the same time")
	f.BoolVar(&o.sudo, "sudo", false, "run as root (sudo -n when the login user is not root)")
	f.DurationVar(&o.timeout, "timeout", 0, "give up on a host after this long, connection included (0: no limit)")
	f.StringVarP(&o.limit, "limit", "l", "", "further restrict TARGET to hosts matching this pattern")
	return cmd
}

// runResult is one host's outcome (the --json element).
type runResult struct {
	Host       string `json:"host"`
	Status     int    `json:"status"` // exit status; -1 when the command did not run to an exit
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	err        error
}

func runRun(ctx context.Context, g *globals, o *runOptions, pattern, command string) error {
	if o.forks < 1 {
		return usagef("--forks must be at least 1")
	}
	inv, hosts, err := resolveTargets(g, pattern, o.limit)
	if err != nil {
		return err
	}
	d := newDialer(g, inv)
	width := 0
	for _, h := range hosts {
		width = max(width, len(h.Name))
	}
	pr := g.printer()
	results := fanout.Run(ctx, len(hosts), o.forks, func(ctx context.Context, i int) runResult {
		stdout, stderr, done := pr.HostOutput(hosts[i].Name, width)
		r := runOnHost(ctx, d, hosts[i], o, command, stdout, stderr)
		r.Stdout, r.Stderr = done()
		return r
	}, func(i int) runResult {
		err := fmt.Errorf("%s: interrupted before it started", hosts[i].Name)
		return runResult{Host: hosts[i].Name, Status: -1, Error: err.Error(), err: err}
	})
	failed := 0
	for _, r := range results {
		if r.err != nil {
			failed++
		}
	}
	if err := printRunResults(g, results); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return failedError{fmt.Sprintf("%d of %d hosts failed", failed, len(hosts))}
	}
	return nil
}

// printRunResults prints run's --json document (a list of runResult), or
// in text each failed host's line on stderr (its output was printed as it
// came).
func printRunResults(g *globals, results []runResult) error {
	doc := make([]runResult, len(results))
	for i, r := range results {
		r.Error = textsafe.Truncate(r.Error)
		doc[i] = r
	}
	return g.printer().Result(doc, func(io.Writer) error {
		for _, r := range results {
			if r.err != nil {
				fmt.Fprintf(g.stderr, "lifeline: %s\n", textsafe.Text(hostLine(r.err, r.Host)))
			}
		}
		return nil
	})
}

// hostLine is err's message, prefixed with the host unless it already names it.
func hostLine(err error, host string) string {
	msg := err.Error()
	if !strings.HasPrefix(msg, host+":") && !strings.HasPrefix(msg, host+" ") {
		msg = host + ": " + msg
	}
	return msg
}

// runOnHost runs command on h; its output goes to stdout and stderr.
func runOnHost(ctx context.Context, d *remote.Dialer, h *inventory.Host, o *runOptions, command string, stdout, stderr io.Writer) (res runResult) {
	start := time.Now()
	res = runResult{Host: h.Name, Status: -1}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	defer func() {
		res.DurationMS = time.Since(start).Milliseconds()
		if res.err != nil {
			res.Error = res.err.Error()
			if errors.Is(res.err, context.DeadlineExceeded) && o.timeout > 0 {
				res.err = fmt.Errorf("%s: gave up after --timeout %s: %w", h.Name, o.timeout, res.err)
				res.Error = res.err.Error()
			}
		}
	}()
	c, err := d.Dial(ctx, targetOf(h))
	if err != nil {
		res.err = err
		return res
	}
	defer c.Close()
	var r remote.Runner = c
	if o.sudo {
		if r, err = remote.Privileged(ctx, c); err != nil {
			res.err = err
			return res
		}
	}
	err = r.Run(ctx, remote.Cmd{Command: command, Stdout: stdout, Stderr: stderr})
	var ee *remote.ExitError
	switch {
	case err == nil:
		res.Status = 0
	case errors.As(err, &ee):
		res.Status = ee.Status
		res.err = err
	default:
		res.err = err
	}
	return res
}

// lockedWriter serialises writes from several hosts.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter writes whole lines, each prefixed; Flush writes a last
// partial line.
type prefixWriter struct {
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(p.w, p.prefix+string(p.buf[:i+1])); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes what is left of a last line without a newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		_, _ = io.WriteString(p.w, p.prefix+string(p.buf)+"\n")
		p.buf = nil
	}
}
