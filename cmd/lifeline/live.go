package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
)

// liveView draws apply's progress on a terminal: one line per host in
// flight (its phase and how long it has been in it) under the lines of the
// hosts that ended, and a bar for the fleet. It is our own ~150 lines
// rather than a progress-bar library because what we draw is a table of
// hosts, not bars: a library would add a dependency for the one bar.
//
// It redraws in place with ANSI cursor movement, at most every 200 ms, and
// only when the writer is a terminal (see isTerminal); otherwise apply
// prints plain lines.
type liveView struct {
	w      io.Writer
	total  int
	start  time.Time
	now    func() time.Time // the clock (tests fix it)
	mu     sync.Mutex
	hosts  map[string]*liveHost
	counts map[string]int
	drawn  int // lines of the live block currently on screen
	width  int
	stop   chan struct{}
	done   chan struct{}
}

type liveHost struct {
	phase string
	since time.Time
	note  string
}

// maxLiveLines caps the in-flight lines drawn; the rest are summed up.
const maxLiveLines = 20

func isTerminal(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width < 40 {
		width = 80
	}
	return width, true
}

func newLiveView(w io.Writer, width, total int) *liveView {
	v := &liveView{w: w, total: total, start: time.Now(), now: time.Now, width: width,
		hosts: map[string]*liveHost{}, counts: map[string]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go v.tick()
	return v
}

func (v *liveView) tick() {
	defer close(v.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-t.C:
			v.mu.Lock()
			v.redraw()
			v.mu.Unlock()
		}
	}
}

func (v *liveView) event(e session.Event) {
	// What the host said is drawn on the terminal: escaped, on one line.
	e.Host, e.Msg = textsafe.Escape(e.Host), oneLine(textsafe.Text(e.Msg))
	v.mu.Lock()
	defer v.mu.Unlock()
	switch e.Status {
	case "end":
		delete(v.hosts, e.Host)
		v.counts[e.Msg]++
		v.clear()
		mark := "✔"
		if !session.Outcome(e.Msg).OK() {
			mark = "✘"
		}
		fmt.Fprintf(v.w, "%s %-14s %-14s %6.1fs\n", mark, e.Host, e.Msg, e.At.Sub(v.start).Seconds())
	case "info", "output":
		if h := v.hosts[e.Host]; h != nil {
			h.note = e.Msg
		}
	default:
		h := v.hosts[e.Host]
		if h == nil {
			h = &liveHost{}
			v.hosts[e.Host] = h
		}
		if h.phase != e.Phase {
			h.phase, h.since, h.note = e.Phase, e.At, ""
		}
		if e.Status == "fail" {
			h.note = e.Msg
		}
	}
	v.redraw()
}

// clear erases the live block, leaving the cursor where it started.
func (v *liveView) clear() {
	if v.drawn > 0 {
		fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.drawn)
		v.drawn = 0
	}
}

func (v *liveView) redraw() {
	v.clear()
	names := make([]string, 0, len(v.hosts))
	for n := range v.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	lines := 0
	for i, n := range names {
		if i == maxLiveLines {
			fmt.Fprintf(&b, "  … and %d more hosts in flight\n", len(names)-i)
			lines++
			break
		}
		h := v.hosts[n]
		line := fmt.Sprintf("  %-14s %-8s %5.1fs  %s", n, h.phase, v.now().Sub(h.since).Seconds(), h.note)
		b.WriteString(clip(line, v.width-1) + "\n")
		lines++
	}
	ended := 0
	var parts []string
	for _, o := range outcomeOrder {
		if c := v.counts[string(o)]; c > 0 {
			ended += c
			parts = append(parts, fmt.Sprintf("%d %s", c, o))
		}
	}
	barW := 30
	fill := 0
	if v.total > 0 {
		fill = ended * barW / v.total
	}
	fmt.Fprintf(&b, "[%s%s] %d/%d  %s  %s\n", strings.Repeat("#", fill), strings.Repeat(".", barW-fill),
		ended, v.total, v.now().Sub(v.start).Round(100*time.Millisecond), strings.Join(parts, ", "))
	lines++
	fmt.Fprint(v.w, b.String())
	v.drawn = lines
}

// close stops redrawing and erases the live block before the final table.
func (v *liveView) close() {
	close(v.stop)
	<-v.done
	v.mu.Lock()
	v.clear()
	v.mu.Unlock()
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:max(0, n-1)]) + "…"
}
