package wire

import (
	"fmt"
	"regexp"
)

// HelperDir is where the helper lives on every host, one file per content
// hash, mode 0700 in a 0700 folder.
const HelperDir = "/var/lib/lifeline/bin"

// Exit statuses of the wrapper [HelperCommand] builds and of the helper's
// own check of itself, before any verb runs. Any other non-zero status is
// the helper's own (it exits 0 whenever it wrote a Report, a refusal
// included).
const (
	// ExitHelperMissing: no helper file of that hash: upload, then run
	// again.
	ExitHelperMissing = 97
	// ExitHelperTampered: a helper file is there but it is not the one
	// its name promises: a symlink or not an executable regular file (the
	// wrapper saw it), or its sha256 differs from its name, or it is
	// owned by another user or writable by group or others (the helper
	// saw it about itself, before reading its request). The file was
	// moved aside (SHA.tampered-EPOCH) for inspection and stderr says
	// why: upload, warn, then run again.
	ExitHelperTampered = 96
)

// HelperPath is the helper's path on a host for its sha256 (hex).
func HelperPath(sha string) string { return HelperDir + "/" + sha }

// HelperCommand is the POSIX shell command line that runs the helper of
// content hash sha (hex) with verb. It uses shell builtins only: the file
// must be an executable regular file and not a symlink, else the wrapper
// moves it aside and exits ExitHelperTampered, or exits ExitHelperMissing
// when there is none. The helper then hashes its own image
// (/proc/self/exe) against its file name and checks its owner and mode
// before it reads anything (see cmd/lifeline-helper), exiting
// ExitHelperTampered on a mismatch. sha and verb are never quoted: sha
// must be lowercase hex and verb one of the Verb constants (the caller's
// contract; [ParseHelperCommand] accepts nothing else).
func HelperCommand(sha, verb string) string {
	return fmt.Sprintf(`f=%s; if [ -f "$f" ] && [ -x "$f" ] && [ ! -L "$f" ]; then exec "$f" %s; fi; if [ -e "$f" ] || [ -L "$f" ]; then mv -f "$f" "$f.tampered-$(date +%%s)"; echo "lifeline: helper $f is not an executable regular file: moved aside" >&2; exit %d; fi; echo "lifeline: helper $f missing" >&2; exit %d`,
		HelperPath(sha), verb, ExitHelperTampered, ExitHelperMissing)
}

// HelperVerifyCommand is the slow check the workstation sends only after
// a helper call died without a report (killed by a signal, or the file
// could not be executed): a helper too damaged to start never reaches its
// own check. It compares the file's sha256 (coreutils sha256sum) with its
// name: exit 0 when they match, else, like HelperCommand, it moves the
// file aside and exits ExitHelperTampered, or exits ExitHelperMissing.
func HelperVerifyCommand(sha string) string {
	return fmt.Sprintf(`f=%s; [ "$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1)" = %s ] && exit 0; if [ -e "$f" ] || [ -L "$f" ]; then mv -f "$f" "$f.tampered-$(date +%%s)"; echo "lifeline: helper $f does not match its sha256: moved aside" >&2; exit %d; fi; echo "lifeline: helper $f missing" >&2; exit %d`,
		HelperPath(sha), sha, ExitHelperTampered, ExitHelperMissing)
}

var helperCommandRE = regexp.MustCompile(`^f=` + regexp.QuoteMeta(HelperDir) + `/([0-9a-f]{64}); .* exec "\$f" ([a-z]+); fi; .*$`)

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
