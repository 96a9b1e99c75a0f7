package session

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/wire"
)

func reportErr(rep *wire.Report) error {
	if rep == nil || rep.Error == nil {
		return nil
	}
	return rep.Error
}

func holderOf(rep *wire.Report) *wire.Holder {
	if rep.Error != nil {
		return rep.Error.Holder
	}
	return nil
}

func refusalHint(rep *wire.Report) string {
	if rep.Error == nil {
		return ""
	}
	switch rep.Error.Code {
	case wire.CodeLockHeld:
		if hd := rep.Error.Holder; hd != nil {
			return fmt.Sprintf("tx %s by %s holds the host until %s; wait for it to confirm or revert (if it is stuck past its deadline: lifeline status HOST --abort)", hd.TxID, hd.Origin, hd.Deadline.Format(time.RFC3339))
		}
		return "another lifeline helper is running on the host; try again in a moment"
	case wire.CodeNeedsRecovery:
		return "nothing was changed; see the differences, then restore the old transaction's snapshot with: lifeline status HOST --abort"
	case wire.CodeStateWrite:
		return "free space in /var/lib/lifeline on the host; nothing was changed"
	case wire.CodeInvalidRuleset:
		return "fix the ruleset; nothing was changed"
	case wire.CodeBackend:
		return "install the backend on the host, or pick another --format"
	case wire.CodePreflightLockout:
		return "nothing was changed; fix the rule named above (lifeline preflight RULESET --for HOST checks it without changing anything), or pass --force to apply it anyway, still guarded by the revert"
	case wire.CodeUnsafePath:
		return "nothing was changed; find out who changed that path and what it holds, then make it root's again (chown root:root PATH; chmod 0700 PATH) or remove it"
	case wire.CodeUnguarded:
		return "nothing was changed; write those tables as blocks, or pass --force to rely on the revert timer alone"
	}
	return ""
}

// transportHint is the hint a *remote.HostError in err carries, "" if none.
func transportHint(err error) string {
	var he *remote.HostError
	if errors.As(err, &he) {
		return he.Hint
	}
	return ""
}

func stateHint(host string) string {
	return fmt.Sprintf("the host's state folder is full: free space in /var/lib/lifeline on %s, then check it with: lifeline status %s (its revert timer stays armed until the record can be written)", host, host)
}

func recoveryHint(host string) string {
	return fmt.Sprintf("inspect %s now (lifeline run %s -- nft list ruleset / iptables-save); its snapshot is in the tx folder under /var/lib/lifeline/tx", host, host)
}

func connectHint(err error) string {
	if strings.Contains(err.Error(), "(hint: ") {
		return "" // the transport's own hint is the precise one: never two
	}
	switch {
	case errors.Is(err, remote.ErrHostKeyMismatch):
		return "the host key changed: verify it out of band before editing known_hosts"
	case errors.Is(err, remote.ErrHostKeyUnknown):
		return "unknown host key: add it to known_hosts, or pass --accept-new"
	case errors.Is(err, remote.ErrAuth):
		return "check the user and key (ssh-add -l, IdentityFile)"
	}
	return ""
}
