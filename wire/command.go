package wire

import (
	"fmt"
	"regexp"
)

// HelperDir is where the helper lives on every host, one file per content
// hash, mode 0700 in a 0700 folder.
const HelperDir = "/var/lib/lifeline/bin"

// Exit statuses of the wrapper [HelperCommand] builds, before the helper
// itself runs. Any other non-zero status is the helper's own (it exits 0
// whenever it wrote a Report, a refusal included).
const (
	// ExitHelperMissing: no helper file of that hash: upload, then run
	// again.
	ExitHelperMissing = 97
	// ExitHelperTampered: a helper file is there but its sha256 differs
	// from its name; the wrapper moved it aside (SHA.tampered-EPOCH) for
	// inspection: upload, warn, then run again.
	ExitHelperTampered = 96
)

// HelperPath is the helper's path on a host for its sha256 (hex).
func HelperPath(sha string) string { return HelperDir + "/" + sha }

// HelperCommand is the POSIX shell command line that runs the helper of
// content hash sha (hex) with verb: it checks the file's sha256 first and
// exits ExitHelperMissing or ExitHelperTampered instead of running a file
// that is not the one the workstation means. sha and verb are never
// quoted: sha must be lowercase hex and verb one of the Verb constants
// (the caller's contract; [ParseHelperCommand] accepts nothing else).
func HelperCommand(sha, verb string) string {
	return fmt.Sprintf(`f=%s; [ "$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1)" = %s ] || { if [ -e "$f" ]; then mv -f "$f" "$f.tampered-$(date +%%s)"; echo "lifeline: helper $f does not match its sha256: moved aside" >&2; exit %d; fi; echo "lifeline: helper $f missing" >&2; exit %d; }; exec "$f" %s`,
		HelperPath(sha), sha, ExitHelperTampered, ExitHelperMissing, verb)
}

var helperCommandRE = regexp.MustCompile(`^f=` + regexp.QuoteMeta(HelperDir) + `/([0-9a-f]{64}); .* exec "\$f" ([a-z]+)$`)

// ParseHelperCommand is the inverse of HelperCommand, for test doubles
// that stand in for a host: it returns the sha and verb of a command line
// HelperCommand built, and ok=false for any other command.
func ParseHelperCommand(cmd string) (sha, verb string, ok bool) {
	m := helperCommandRE.FindStringSubmatch(cmd)
	if m == nil || HelperCommand(m[1], m[2]) != cmd {
		return "", "", false
	}
	return m[1], m[2], true
}
