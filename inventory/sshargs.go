package inventory

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// splitWords splits s into words the way Ansible splits ssh arguments:
// Python's shlex.split (posix, no comments), see [pySplit]. It refuses s
// when it is not valid UTF-8, which Python would not have read either.
func splitWords(s string) ([]string, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%q is not valid UTF-8", s)
	}
	words, err := pySplit(s, false)
	switch {
	case errors.Is(err, errNoClosingQuote):
		return nil, fmt.Errorf("unterminated quote in %q: close it", s)
	case err != nil:
		return nil, fmt.Errorf("%q ends with a backslash: remove it or double it", s)
	}
	return words, nil
}

// splitOption splits an ssh -o argument: "Key=Value", "Key Value", "Key = Value".
func splitOption(opt string) (key, val string) {
	opt = strings.TrimSpace(opt)
	i := strings.IndexAny(opt, "= \t")
	if i < 0 {
		return opt, ""
	}
	key = opt[:i]
	val = strings.TrimSpace(opt[i:])
	val = strings.TrimSpace(strings.TrimPrefix(val, "="))
	return key, val
}

// sshArgFlags are ssh's options that take an argument (from ssh(1)).
const sshArgFlags = "BbcDEeFIiJLlmOopQRSWw"

// jumpFromProxyCommand reads "ssh [opts] [user@]bastion -W %h:%p" (or
// "... bastion nc %h %p") and returns the jump spec "user@bastion:port",
// with any -J inside it prepended.
func jumpFromProxyCommand(cmd string) (string, error) {
	words, err := splitWords(cmd)
	if err != nil {
		return "", err
	}
	unsupported := fmt.Errorf("ProxyCommand %q is not \"ssh -W %%h:%%p HOST\": lifeline cannot follow it; use -o ProxyJump=HOST instead", cmd)
	// A hop option a jump spec cannot hold (its own key, known_hosts or
	// host-key policy): the ProxyCommand must run as written.
	hopOption := func(opt string) error {
		return fmt.Errorf("ProxyCommand %q gives the hop its own %s, which a jump (user@host:port) cannot carry", cmd, opt)
	}
	if len(words) == 0 || path.Base(words[0]) != "ssh" {
		return "", unsupported
	}
	var (
		user, port, dest, inner string
		forwards                bool
	)
	for i := 1; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") || len(w) < 2 {
			if dest == "" {
				dest = w
				// "bastion nc %h %p" / "bastion -W %h:%p" after the host.
				rest := strings.Join(words[i+1:], " ")
				if strings.Contains(rest, "%h") {
					forwards = true
				}
				continue
			}
			continue
		}
		// Flags may be bundled: -qAW %h:%p.
		for k := 1; k < len(w); k++ {
			f := w[k]
			if strings.IndexByte(sshArgFlags, f) < 0 {
				continue
			}
			arg := w[k+1:]
			if arg == "" {
				if i+1 >= len(words) {
					return "", unsupported
				}
				i++
				arg = words[i]
			}
			switch f {
			case 'i', 'F', 'b', 'B', 'c', 'm', 'E', 'S', 'I', 'Q', 'O', 'w', 'D', 'L', 'R', 'e':
				return "", hopOption("-" + string(f) + " " + arg)
			case 'W':
				if strings.Contains(arg, "%h") {
					forwards = true
				}
			case 'p':
				port = arg
			case 'l':
				user = arg
			case 'J':
				inner = arg
			case 'o':
				k, v := splitOption(arg)
				switch strings.ToLower(k) {
				case "port":
					port = v
				case "user":
					user = v
				case "proxyjump":
					inner = v
				case "batchmode", "loglevel", "connecttimeout", "serveraliveinterval", "serveralivecountmax", "compression", "tcpkeepalive":
				default:
					return "", hopOption("-o " + arg)
				}
			}
			break
		}
	}
	if dest == "" || !forwards {
		return "", unsupported
	}
	if user != "" && !strings.Contains(dest, "@") {
		dest = user + "@" + dest
	}
	if port != "" {
		dest += ":" + port
	}
	if inner != "" && !strings.EqualFold(inner, "none") {
		dest = inner + "," + dest
	}
	return dest, nil
}
