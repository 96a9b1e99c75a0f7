package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
)

// printer is the one place where every command's output is written. Results
// go to stdout, diagnostics to stderr. There are three:
//
//   - text (default): tables and lines for a person; apply's progress as
//     lines on stderr, or the live view (live.go) when stderr is a terminal
//   - JSON (--json): exactly one JSON document on stdout per invocation —
//     the command's result, or the error object when it failed before
//     having one (see [errorObject])
//   - JSON stream (apply --json-stream): one JSON object per line on
//     stdout as things happen: {"type":"event",...} lines, then one
//     {"type":"result",...} line, or a {"type":"error",...} line
//
// Commands never write to stdout themselves, and never ask which printer
// they have.
type printer interface {
	// Begin announces a fan-out over hosts hosts (the live view sizes its
	// bar by it). Called once, before the first Event.
	Begin(hosts int)
	// Event reports one step of one host's progress as it happens. Safe
	// for concurrent use.
	Event(e session.Event)
	// HostOutput returns where a host's command output goes while it
	// arrives (run), and done, called once the command ended, which says
	// what of it belongs in the result document. The text printer writes
	// each line at once on stdout or stderr, prefixed with the host's name
	// padded to width (done writes a last partial line and keeps nothing);
	// the JSON printers keep the output for the document. One host's
	// writers are safe for concurrent use with other hosts' writers.
	HostOutput(host string, width int) (stdout, stderr io.Writer, done func() (keptOut, keptErr string))
	// Record reports one record of a command's stream as it happens
	// (trace's packet steps): the text printer writes text as a line on
	// stdout, the stream printer v as a {"type":typ,...} line, the JSON
	// printer nothing (the result document holds what matters). Safe for
	// concurrent use.
	Record(typ string, v any, text string)
	// Result prints the command's result, once: the JSON printers encode
	// doc, the text printer calls text with stdout.
	Result(doc any, text func(stdout io.Writer) error) error
	// Error prints the error the command ended with, whose exit code is
	// code (exitCode decides both). The text printer writes one escaped
	// "lifeline: ..." line on stderr; the JSON printers write the error
	// object on stdout, unless a result was printed already (a failed host
	// is then in the result; any other error goes to stderr as text, so
	// that stdout keeps one document).
	Error(err error, code int)
}

var (
	_ printer = (*textPrinter)(nil)
	_ printer = (*jsonPrinter)(nil)
	_ printer = (*streamPrinter)(nil)
)

// printer returns the command's printer, made on first use from --json,
// --json-stream and -v (so after the flags are parsed).
func (g *globals) printer() printer {
	g.printerOnce.Do(func() {
		if g.out != nil {
			return
		}
		switch {
		case g.jsonStream:
			g.out = &streamPrinter{stdout: g.stdout, stderr: g.stderr}
		case g.jsonOut:
			g.out = &jsonPrinter{stdout: g.stdout, stderr: g.stderr}
		default:
			g.out = newTextPrinter(g.stdout, g.stderr, g.verbose)
		}
	})
	return g.out
}

// errorObject is what a failed command prints under --json:
//
//	{"error": {"message": "...", "hint": "...", "code": "usage", "exit": 2}}
//
// message is the error without "lifeline: " and without its hint; hint,
// when there is one, says what to do; code is one of usage (exit 2: bad
// flag, argument, target or file), failed (exit 1: some host did not end
// as asked), error (exit 1: the command itself failed) and interrupted
// (exit 130); exit is the process's exit status.
type errorObject struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	Code    string `json:"code"`
	Exit    int    `json:"exit"`
}

func newErrorObject(err error, code int) errorObject {
	msg, hint := splitHint(err.Error())
	kind := "error"
	var fe failedError
	switch {
	case code == exitUsage:
		kind = "usage"
	case code == exitCancelled:
		kind = "interrupted"
	case errors.As(err, &fe):
		kind = "failed"
	}
	return errorObject{errorBody{Message: textsafe.Truncate(msg), Hint: textsafe.Truncate(hint), Code: kind, Exit: code}}
}

// splitHint cuts a trailing " (hint: ...)" off a message.
func splitHint(msg string) (string, string) {
	i := strings.LastIndex(msg, " (hint: ")
	if i < 0 || !strings.HasSuffix(msg, ")") {
		return msg, ""
	}
	return msg[:i], msg[i+len(" (hint: ") : len(msg)-1]
}

// withHint joins an error text and a hint as "error (hint: hint)". A text
// that carries its own hint already (a transport error says what to do
// about a refused key) keeps it, and the second hint is not added, so that
// no line shows two.
func withHint(errText, hint string) string {
	switch {
	case hint == "":
		return errText
	case errText == "":
		return hint
	case strings.Contains(errText, " (hint: "):
		return errText
	}
	return errText + " (hint: " + hint + ")"
}

// textPrinter prints for a person.
type textPrinter struct {
	stdout, stderr io.Writer
	verbose        bool
	start          time.Time // progress lines count from it
	mu             sync.Mutex
	lockedOut      *lockedWriter // stdout and stderr for many hosts at once
	lockedErr      *lockedWriter
	live           *liveView // nil unless stderr is a terminal (and no -v)
}

func newTextPrinter(stdout, stderr io.Writer, verbose bool) *textPrinter {
	return &textPrinter{stdout: stdout, stderr: stderr, verbose: verbose, start: time.Now(),
		lockedOut: &lockedWriter{w: stdout}, lockedErr: &lockedWriter{w: stderr}}
}

func (p *textPrinter) Begin(hosts int) {
	if width, tty := isTerminal(p.stderr); tty && !p.verbose {
		p.live = newLiveView(p.stderr, width, hosts)
	}
}

func (p *textPrinter) Event(e session.Event) {
	if p.live != nil {
		p.live.event(e)
		return
	}
	if e.Status == "start" && !p.verbose {
		return
	}
	msg := e.Status
	if e.Msg != "" {
		msg += ": " + oneLine(textsafe.Text(e.Msg))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stderr, "%6.1fs  %-12s %-8s %s\n", e.At.Sub(p.start).Seconds(), textsafe.Escape(e.Host), e.Phase, msg)
}

func (p *textPrinter) HostOutput(host string, width int) (io.Writer, io.Writer, func() (string, string)) {
	prefix := fmt.Sprintf("%-*s | ", width, host)
	out := &prefixWriter{prefix: prefix, w: p.lockedOut}
	errw := &prefixWriter{prefix: prefix, w: p.lockedErr}
	return out, errw, func() (string, string) { out.Flush(); errw.Flush(); return "", "" }
}

func (p *textPrinter) Record(_ string, _ any, text string) {
	p.lockedOut.Write([]byte(text + "\n"))
}

func (p *textPrinter) Result(_ any, text func(io.Writer) error) error {
	p.closeLive()
	return text(p.stdout)
}

// closeLive erases the live view, if one is drawn, for what is printed next.
func (p *textPrinter) closeLive() {
	if p.live != nil {
		p.live.close()
		p.live = nil
	}
}

func (p *textPrinter) Error(err error, _ int) {
	p.closeLive()
	var fe failedError
	if errors.As(err, &fe) {
		return // the command printed its details already
	}
	printErrorLine(p.stderr, err)
}

// printErrorLine prints an error on w, escaped: it can quote input or a
// host's output (see textsafe).
func printErrorLine(w io.Writer, err error) {
	fmt.Fprintf(w, "lifeline: %s\n", textsafe.Text(err.Error()))
}

// jsonPrinter prints one JSON document on stdout.
type jsonPrinter struct {
	stdout, stderr io.Writer
	mu             sync.Mutex
	printed        bool
}

func (p *jsonPrinter) Begin(int)           {}
func (p *jsonPrinter) Event(session.Event) {}

func (p *jsonPrinter) HostOutput(string, int) (io.Writer, io.Writer, func() (string, string)) {
	return keepOutput()
}

// keepOutput keeps a host's output for the JSON document.
func keepOutput() (io.Writer, io.Writer, func() (string, string)) {
	var out, errb bytes.Buffer
	return &out, &errb, func() (string, string) { return out.String(), errb.String() }
}

func (p *jsonPrinter) Record(string, any, string) {}

func (p *jsonPrinter) Result(doc any, _ func(io.Writer) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printed = true
	return encodeIndented(p.stdout, doc)
}

func (p *jsonPrinter) Error(err error, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printed {
		if !errors.As(err, new(failedError)) {
			printErrorLine(p.stderr, err)
		}
		return
	}
	p.printed = true
	_ = encodeIndented(p.stdout, newErrorObject(err, code))
}

func encodeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// streamPrinter prints one JSON object per line, each with a "type".
type streamPrinter struct {
	stdout, stderr io.Writer
	mu             sync.Mutex
	printed        bool // the result line
}

func (p *streamPrinter) Begin(int) {}

func (p *streamPrinter) Event(e session.Event) {
	e.Msg = textsafe.Truncate(e.Msg)
	p.line("event", e)
}

func (p *streamPrinter) HostOutput(string, int) (io.Writer, io.Writer, func() (string, string)) {
	return keepOutput()
}

func (p *streamPrinter) Record(typ string, v any, _ string) { _ = p.line(typ, v) }

func (p *streamPrinter) Result(doc any, _ func(io.Writer) error) error {
	p.mu.Lock()
	p.printed = true
	p.mu.Unlock()
	return p.line("result", doc)
}

func (p *streamPrinter) Error(err error, code int) {
	p.mu.Lock()
	printed := p.printed
	p.mu.Unlock()
	if printed && errors.As(err, new(failedError)) {
		return
	}
	_ = p.line("error", newErrorObject(err, code))
}

// line writes v, a JSON object, as one line with "type" first.
func (p *streamPrinter) line(typ string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var buf strings.Builder
	buf.WriteString(`{"type":"` + typ + `"`)
	if len(b) > 2 { // v's members follow
		buf.WriteByte(',')
	}
	buf.Write(b[1:])
	buf.WriteByte('\n')
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = io.WriteString(p.stdout, buf.String())
	return err
}
