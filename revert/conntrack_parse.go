package revert

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ctEntry is what the conntrack verb keeps of one table entry.
type ctEntry struct {
	Family string     // ipv4, ipv6
	Proto  string     // tcp, udp, icmp, ... (the kernel's name; "unknown" for others)
	State  string     // the protocol's state, or UNREPLIED / ASSURED / REPLIED
	Src    netip.Addr // the original direction's source
}

// parseCtLine parses one entry as /proc/net/nf_conntrack and `conntrack -L
// -o extended` print it (the two differ only in zone= and use=):
//
//	ipv4     2 tcp      6 431998 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=50908 dport=8443 src=... [ASSURED] mark=0 zone=0 use=2
//	ipv6     10 udp      17 28 src=fd00:0077:0000:... dst=... sport=33394 dport=9999 [UNREPLIED] src=... mark=0 use=1
//
// The fields are the layer-3 name and number, the layer-4 name and number,
// the seconds left, the state for protocols that have one (tcp, sctp,
// dccp), then key=value pairs and [FLAGS]. ok is false for anything else.
func parseCtLine(line string) (e ctEntry, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 || !digits(f[1]) || !digits(f[3]) || !digits(f[4]) {
		return e, false
	}
	if f[0] != "ipv4" && f[0] != "ipv6" || !validName(f[2]) {
		return e, false
	}
	e.Family, e.Proto = f[0], f[2]
	rest := f[5:]
	if w := rest[0]; !strings.ContainsRune(w, '=') && !strings.HasPrefix(w, "[") {
		if !validName(w) {
			return e, false
		}
		e.State, rest = w, rest[1:]
	}
	unreplied, assured := false, false
	for _, w := range rest {
		switch {
		case w == "[UNREPLIED]":
			unreplied = true
		case w == "[ASSURED]":
			assured = true
		case !e.Src.IsValid() && strings.HasPrefix(w, "src="):
			a, err := netip.ParseAddr(w[len("src="):])
			if err != nil {
				return e, false
			}
			e.Src = a.Unmap()
		}
	}
	if !e.Src.IsValid() {
		return e, false
	}
	if e.State == "" {
		switch {
		case unreplied:
			e.State = "UNREPLIED"
		case assured:
			e.State = "ASSURED"
		default:
			e.State = "REPLIED"
		}
	}
	return e, true
}

func digits(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validName: a protocol or state name as the kernel prints them (tcp,
// icmpv6, ESTABLISHED, TIME_WAIT, SYN_SENT2).
func validName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ctSummary counts entries by protocol and state and by source, parsing at
// most max lines; beyond that it only counts them.
type ctSummary struct {
	max      int64
	listed   int64
	parsed   int64
	unparsed int64
	states   map[[2]string]int64
	sources  map[netip.Addr]int64
}

func newCtSummary(max int64) *ctSummary {
	if max <= 0 {
		max = DefaultConntrackMaxEntries
	}
	return &ctSummary{max: max, states: map[[2]string]int64{}, sources: map[netip.Addr]int64{}}
}

func (s *ctSummary) add(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	s.listed++
	if s.parsed+s.unparsed >= s.max {
		return // counted only: the work stays bounded
	}
	e, ok := parseCtLine(line)
	if !ok {
		s.unparsed++
		return
	}
	s.parsed++
	s.states[[2]string{e.Proto, e.State}]++
	s.sources[e.Src]++
}

// read adds every line of r. Lines longer than 64 KiB are not entries.
func (s *ctSummary) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			s.listed++
			s.unparsed++
			for err == bufio.ErrBufferFull { // skip the rest of the long line
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if len(line) > 0 {
			s.add(string(line))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// entries is the summary as the report carries it: every state, most
// first, and the top sources, most first; ties are ordered by name and
// address so that the same table always prints the same way.
func (s *ctSummary) entries(source string, top int) *ConntrackEntries {
	out := &ConntrackEntries{Source: source, Listed: s.listed, Parsed: s.parsed, Unparsed: s.unparsed,
		Truncated: s.listed > s.parsed+s.unparsed, Sources: len(s.sources),
		States: []ConntrackState{}, TopSources: []ConntrackSource{}}
	for k, n := range s.states {
		out.States = append(out.States, ConntrackState{Proto: k[0], State: k[1], Count: n})
	}
	slices.SortFunc(out.States, func(a, b ConntrackState) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.State, b.State))
	})
	type src struct {
		a netip.Addr
		n int64
	}
	srcs := make([]src, 0, len(s.sources))
	for a, n := range s.sources {
		srcs = append(srcs, src{a, n})
	}
	slices.SortFunc(srcs, func(x, y src) int { return cmp.Or(cmp.Compare(y.n, x.n), x.a.Compare(y.a)) })
	for _, x := range srcs[:min(top, len(srcs))] {
		out.TopSources = append(out.TopSources, ConntrackSource{Addr: x.a.String(), Count: x.n})
	}
	return out
}

// parseProcStat sums /proc/net/stat/nf_conntrack: a header of column names,
// then one row of hex numbers per CPU.
func parseProcStat(r io.Reader) (*ConntrackStats, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return nil, fmt.Errorf("no header: %v", sc.Err())
	}
	names := strings.Fields(sc.Text())
	if len(names) == 0 || names[0] != "entries" {
		return nil, fmt.Errorf("unexpected header %.80q", sc.Text())
	}
	sums := map[string]int64{}
	rows := 0
	for sc.Scan() {
		vals := strings.Fields(sc.Text())
		if len(vals) == 0 {
			continue
		}
		if len(vals) != len(names) {
			return nil, fmt.Errorf("row %d has %d columns, the header %d", rows+1, len(vals), len(names))
		}
		for i, v := range vals {
			n, err := strconv.ParseInt(v, 16, 64)
			if err != nil {
				return nil, fmt.Errorf("row %d: %s=%q: not hex", rows+1, names[i], v)
			}
			sums[names[i]] += n
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if rows == 0 {
		return nil, fmt.Errorf("no rows")
	}
	return &ConntrackStats{Source: "/proc/net/stat/nf_conntrack", Drop: sums["drop"], EarlyDrop: sums["early_drop"],
		InsertFailed: sums["insert_failed"], Invalid: sums["invalid"], ChainTooLong: sums["chainlength"]}, nil
}

// parseConntrackS sums `conntrack -S`: one line per CPU of key=value
// pairs (cpu=0 found=0 invalid=0 insert=0 insert_failed=0 drop=0 ...).
func parseConntrackS(r io.Reader) (*ConntrackStats, error) {
	sc := bufio.NewScanner(r)
	sums := map[string]int64{}
	rows := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu=") {
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %.40q is not key=value", rows+1, kv)
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s=%.20q: not a number", rows+1, k, v)
			}
			sums[k] += n
		}
		rows++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if rows == 0 {
		return nil, fmt.Errorf("no cpu= lines")
	}
	return &ConntrackStats{Source: "conntrack -S", Drop: sums["drop"], EarlyDrop: sums["early_drop"],
		InsertFailed: sums["insert_failed"], Invalid: sums["invalid"], ChainTooLong: sums["chaintoolong"]}, nil
}

// tableFullMessage is what the kernel logs (rate-limited) when it drops a
// packet because the table is full and no unassured entry could be
// evicted; printed as "nf_conntrack: nf_conntrack: table full, dropping
// packet" by kernels whose pr_fmt adds the module name again.
const tableFullMessage = "nf_conntrack: table full, dropping packet"

// kmsgScan counts table-full messages in kernel log records as /dev/kmsg
// gives them: "PRI,SEQ,USEC,FLAGS[,...];MESSAGE", USEC being the kernel's
// monotonic clock in microseconds; continuation lines (" KEY=VALUE") are
// skipped. A record is recent when it is at most since old at monoNow
// (since 0: all are).
type kmsgScan struct {
	monoNow time.Duration
	since   time.Duration
	full    int
	recent  int
	newest  time.Duration // stamp of the newest table-full record
}

func (k *kmsgScan) line(l string) {
	if l == "" || l[0] == ' ' {
		return
	}
	hdr, msg, ok := strings.Cut(l, ";")
	if !ok || !strings.Contains(msg, tableFullMessage) {
		return
	}
	f := strings.Split(hdr, ",")
	if len(f) < 3 {
		return
	}
	usec, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || usec < 0 {
		return
	}
	at := time.Duration(usec) * time.Microsecond
	k.full++
	if k.since == 0 || k.monoNow-at <= k.since {
		k.recent++
	}
	k.newest = max(k.newest, at)
}

// read scans r, whose reads may end mid-line (a file) or return one record
// each (/dev/kmsg, which needs a buffer as large as a record).
func (k *kmsgScan) read(r io.Reader) error {
	buf := make([]byte, 16<<10)
	var carry []byte
	for {
		n, err := r.Read(buf)
		data := append(carry, buf[:n]...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			k.line(string(data[:i]))
			data = data[i+1:]
		}
		carry = append(carry[:0:0], data...)
		if len(carry) > 64<<10 {
			carry = nil // not a record: drop it
		}
		if err == io.EOF {
			if len(carry) > 0 {
				k.line(string(carry))
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}
