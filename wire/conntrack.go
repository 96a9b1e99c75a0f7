package wire

import "time"

// VerbConntrack reads the host's connection tracking table: its use
// (count, max), the entries by protocol and state, the top source
// addresses, the kernel's drop counters and its "table full" messages. It
// changes nothing and takes no lock. Its payload is Request.Conntrack
// (optional); its answer is Report.Conntrack.
const VerbConntrack = "conntrack"

// Defaults and bounds of ConntrackArgs.
const (
	DefaultConntrackTop = 5
	MaxConntrackTop     = 100
	// DefaultConntrackMaxEntries bounds the entries the helper parses:
	// beyond it, lines are only counted (Entries.Truncated).
	DefaultConntrackMaxEntries = 1_000_000
)

// ConntrackArgs is conntrack's payload; a request without one gets the
// defaults.
type ConntrackArgs struct {
	// Top is how many source addresses to report (0: DefaultConntrackTop,
	// at most MaxConntrackTop).
	Top int `json:"top,omitempty"`
	// Since: kernel messages younger than this count as recent
	// (KernelLog.Recent); 0 counts the whole kernel log.
	Since Duration `json:"since,omitempty"`
	// MaxEntries bounds the entries parsed (0: DefaultConntrackMaxEntries).
	MaxEntries int64 `json:"max_entries,omitempty"`
}

// ConntrackReport is conntrack's payload: what the host's netfilter
// connection tracking holds. What could not be read is said in Notes and
// leaves its part nil; a host without conntrack loaded is Loaded false,
// Count 0, and not an error.
type ConntrackReport struct {
	// Loaded: nf_conntrack is loaded (/proc/sys/net/netfilter/nf_conntrack_count exists).
	Loaded bool `json:"loaded"`
	// Count is the entries in this network namespace's table
	// (nf_conntrack_count), Max the limit the kernel enforces on it
	// (nf_conntrack_max), Buckets the hash table's size.
	Count   int64 `json:"count"`
	Max     int64 `json:"max"`
	Buckets int64 `json:"buckets,omitempty"`
	// Namespaced: nf_conntrack_max is read-only here, so the host is not
	// the machine's initial network namespace (a container, a lab host):
	// Max is the whole machine's setting, and the kernel log is the
	// machine's, so its table-full messages may come from another
	// namespace.
	Namespaced bool `json:"namespaced,omitempty"`
	// Entries: the table's entries summarised; nil when they could not
	// be listed (Notes says why).
	Entries *ConntrackEntries `json:"entries,omitempty"`
	// Stats: the kernel's counters summed over CPUs; nil when unreadable.
	Stats *ConntrackStats `json:"stats,omitempty"`
	// KernelLog: the "nf_conntrack: table full, dropping packet" messages.
	KernelLog *ConntrackKernelLog `json:"kernel_log,omitempty"`
	// Notes say what could not be read and why, and what the numbers
	// mean on this host.
	Notes []string `json:"notes,omitempty"`
}

// ConntrackEntries summarises a listing of the table.
type ConntrackEntries struct {
	// Source is what was listed: "/proc/net/nf_conntrack" or
	// "conntrack -L -o extended".
	Source string `json:"source"`
	// Listed is the lines read, Parsed those summarised (at most
	// MaxEntries; Truncated when more were only counted), Unparsed the
	// lines that were not an entry.
	Listed    int64 `json:"listed"`
	Parsed    int64 `json:"parsed"`
	Unparsed  int64 `json:"unparsed,omitempty"`
	Truncated bool  `json:"truncated,omitempty"`
	// States are the entries by protocol and state, most first.
	States []ConntrackState `json:"states"`
	// TopSources are the original direction's source addresses with the
	// most entries, most first (ties by address).
	TopSources []ConntrackSource `json:"top_sources"`
	// Sources is how many distinct source addresses there are.
	Sources int `json:"sources"`
}

// ConntrackState counts the entries of one protocol in one state. State
// is the protocol's own (TCP's ESTABLISHED, TIME_WAIT, ...) or, for one
// without states (udp, icmp), UNREPLIED (no answer seen yet), ASSURED or
// REPLIED.
type ConntrackState struct {
	Proto string `json:"proto"`
	State string `json:"state"`
	Count int64  `json:"count"`
}

// ConntrackSource is one source address and its entries.
type ConntrackSource struct {
	Addr  string `json:"addr"`
	Count int64  `json:"count"`
}

// ConntrackStats are the kernel's conntrack counters since the network
// namespace was created, summed over CPUs.
type ConntrackStats struct {
	// Source: "/proc/net/stat/nf_conntrack" or "conntrack -S".
	Source string `json:"source"`
	// Drop: packets dropped because no entry could be made (table full);
	// EarlyDrop: entries evicted to make room for new ones (the table
	// was full of unassured entries); InsertFailed: entries that could
	// not be inserted (races, a full chain).
	Drop         int64 `json:"drop"`
	EarlyDrop    int64 `json:"early_drop"`
	InsertFailed int64 `json:"insert_failed"`
	Invalid      int64 `json:"invalid"`
	// ChainTooLong: inserts refused because a hash chain was too long.
	ChainTooLong int64 `json:"chaintoolong,omitempty"`
}

// ConntrackKernelLog is what the kernel log says about a full table.
type ConntrackKernelLog struct {
	Source string `json:"source"` // "/dev/kmsg"
	// Error says why the log could not be read ("" when it was).
	Error string `json:"error,omitempty"`
	// TableFull is the "table full, dropping packet" messages still in
	// the kernel's log buffer, Recent those younger than the request's
	// Since, Last the newest one's time (host clock, from the kernel's
	// monotonic stamp: approximate).
	TableFull int       `json:"table_full"`
	Recent    int       `json:"recent"`
	Last      time.Time `json:"last,omitzero"`
	// Since is the window Recent counts (0: the whole log).
	Since Duration `json:"since,omitempty"`
}

// Use is Count/Max, or 0 when the limit is unknown.
func (r *ConntrackReport) Use() float64 {
	if r == nil || r.Max <= 0 {
		return 0
	}
	return float64(r.Count) / float64(r.Max)
}

// NearFull reports whether the table is at or above warn (a fraction of
// Max, e.g. 0.8).
func (r *ConntrackReport) NearFull(warn float64) bool {
	return r != nil && r.Loaded && r.Max > 0 && r.Use() >= warn
}

// Dropping reports whether the kernel logged recent table-full messages:
// it dropped packets for want of an entry.
func (r *ConntrackReport) Dropping() bool {
	return r != nil && r.KernelLog != nil && r.KernelLog.Recent > 0
}
