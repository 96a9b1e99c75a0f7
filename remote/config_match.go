package remote

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Host and Match evaluation, and the keywords OpenSSH 9.2 knows.

// match evaluates a Match line's criteria (match_cfg_line).
func (p *pass) match(args []string) (bool, error) {
	r := p.r
	s := p.s
	host := p.host
	if hn := s.get("hostname"); hn != "" {
		host = expandHostName(hn, p.host)
	}
	ruser := s.get("user")
	if ruser == "" {
		ruser = r.local.name
	}
	port := s.get("port")
	if port == "" {
		port = "22"
	}
	result := true
	attributes := 0
	for i := 0; i < len(args); i++ {
		attr := args[i]
		if strings.HasPrefix(attr, "#") {
			break
		}
		neg := strings.HasPrefix(attr, "!")
		attr = strings.ToLower(strings.TrimPrefix(attr, "!"))
		if attr == "all" {
			if attributes > 1 || (i+1 < len(args) && !strings.HasPrefix(args[i+1], "#")) {
				return false, fmt.Errorf("'%s' cannot be combined with other Match attributes", args[i])
			}
			if result {
				result = !neg
			}
			return result, nil
		}
		attributes++
		if attr == "canonical" || attr == "final" {
			if attr == "final" {
				p.wantFinal = true
			}
			if p.final == neg {
				result = false
			}
			continue
		}
		if i+1 >= len(args) || args[i+1] == "" || strings.HasPrefix(args[i+1], "#") {
			return false, fmt.Errorf("missing Match criteria for %s", attr)
		}
		i++
		arg := args[i]
		var ok bool
		switch attr {
		case "host":
			ok = matchPatternList(host, arg, true) == 1
		case "originalhost":
			ok = matchPatternList(r.hostArg, arg, true) == 1
		case "user":
			ok = matchPatternList(ruser, arg, false) == 1
		case "localuser":
			ok = matchPatternList(r.local.name, arg, false) == 1
		case "localnetwork":
			var err error
			ok, err = matchLocalNetwork(arg)
			if err != nil {
				return false, err
			}
		case "exec":
			if !result {
				continue // a prior criterion failed: ssh skips the command
			}
			keyAlias := s.get("hostkeyalias")
			if keyAlias == "" {
				keyAlias = host
			}
			tv := r.tokens(host, port, ruser, keyAlias)
			cmd, err := expandPercent(arg, tv, "CLdhklnpru")
			if err != nil {
				return false, fmt.Errorf("Match exec: %w", err)
			}
			ok, err = r.exec(cmd)
			if err != nil {
				return false, err
			}
		default:
			return false, fmt.Errorf("unsupported Match attribute %s", attr)
		}
		if ok == neg {
			result = false
		}
	}
	if attributes == 0 {
		return false, errors.New("one or more attributes required for Match")
	}
	return result, nil
}

// runMatchExec runs a Match exec command like execute_in_shell: $SHELL -c,
// stdin and stdout on /dev/null; true when it exits 0.
func runMatchExec(cmdline string, log func(string, ...any)) (bool, error) {
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
	}
	cmd := exec.Command(shell, "-c", cmdline)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" && log != nil {
		log("Match exec %q: %s", cmdline, s)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee):
		return false, nil
	}
	return false, fmt.Errorf("Match exec %q: %w", cmdline, err)
}

// matchLocalNetwork reports whether a local interface address lies in
// one of the CIDR list's networks (check_match_ifaddrs).
func matchLocalNetwork(list string) (bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, fmt.Errorf("Match localnetwork: %w", err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		neg := false
		hit := false
		for _, c := range strings.Split(list, ",") {
			n := strings.HasPrefix(c, "!")
			_, cidr, err := net.ParseCIDR(strings.TrimPrefix(c, "!"))
			if err != nil {
				return false, fmt.Errorf("Match localnetwork: bad network %q", c)
			}
			if cidr.Contains(ipn.IP) {
				if n {
					neg = true
				} else {
					hit = true
				}
			}
		}
		if hit && !neg {
			return true, nil
		}
	}
	return false, nil
}

// matchPattern is match_pattern: * and ?, case-sensitive.
func matchPattern(s, pat string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*':
			pat = pat[1:]
			if pat == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchPattern(s[i:], pat) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			s, pat = s[1:], pat[1:]
		default:
			if s == "" || s[0] != pat[0] {
				return false
			}
			s, pat = s[1:], pat[1:]
		}
	}
	return s == ""
}

// matchPatternList is match_pattern_list: 1 when a positive pattern of
// the comma-separated list matches and no negated one does, -1 when a
// negated one matches, 0 otherwise. lower folds both to lower case.
func matchPatternList(s, list string, lower bool) int {
	if lower {
		s, list = strings.ToLower(s), strings.ToLower(list)
	}
	got := 0
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		if matchPattern(s, strings.TrimPrefix(p, "!")) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}

// passwdEntry is the local user as OpenSSH sees it: getpwuid(getuid()),
// not $HOME and $USER.
type passwdEntry struct{ name, home, uid string }

var (
	passwdOnce sync.Once
	passwdMe   passwdEntry
)

func localPasswd() passwdEntry {
	passwdOnce.Do(func() {
		passwdMe.uid = strconv.Itoa(os.Getuid())
		if u, err := user.LookupId(passwdMe.uid); err == nil {
			passwdMe.name, passwdMe.home = u.Username, u.HomeDir
			return
		}
		passwdMe.name = os.Getenv("USER")
		passwdMe.home, _ = os.UserHomeDir()
	})
	return passwdMe
}

func userHome(name string) (string, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", false
	}
	return u.HomeDir, true
}

// knownKeyword holds the keywords of OpenSSH 9.2's client (readconf.c),
// including the deprecated and unsupported ones it accepts silently.
var knownKeyword = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(`host match include ignoreunknown hostname user port addressfamily batchmode
bindaddress bindinterface canonicaldomains canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots
canonicalizepermittedcnames casignaturealgorithms certificatefile challengeresponseauthentication checkhostip
cipher ciphers clearallforwardings compression compressionlevel connectionattempts connecttimeout controlmaster
controlpath controlpersist dynamicforward enableescapecommandline enablesshkeysign escapechar exitonforwardfailure
fingerprinthash forkafterauthentication forwardagent forwardx11 forwardx11timeout forwardx11trusted gatewayports
globalknownhostsfile gssapiauthentication gssapidelegatecredentials gssapikeyexchange gssapiclientidentity
gssapiserveridentity gssapirenewalforcesrekey gssapitrustdns gssapikexalgorithms hashknownhosts
hostbasedacceptedalgorithms hostbasedkeytypes hostbasedauthentication hostkeyalgorithms hostkeyalias identitiesonly
identityagent identityfile ipqos kbdinteractiveauthentication kbdinteractivedevices kexalgorithms knownhostscommand
localcommand localforward loglevel logverbose macs nohostauthenticationforlocalhost numberofpasswordprompts
passwordauthentication permitlocalcommand permitremoteopen pkcs11provider smartcarddevice preferredauthentications
protocol proxycommand proxyjump proxyusefdpass pubkeyacceptedalgorithms pubkeyacceptedkeytypes pubkeyauthentication
rekeylimit remotecommand remoteforward requesttty requiredrsasize revokedhostkeys securitykeyprovider sendenv
serveralivecountmax serveraliveinterval sessiontype setenv stdinnull streamlocalbindmask streamlocalbindunlink
stricthostkeychecking syslogfacility tcpkeepalive keepalive tunnel tunneldevice updatehostkeys usekeychain
userknownhostsfile verifyhostkeydns visualhostkey xauthlocation addkeystoagent rsaauthentication
rhostsrsaauthentication compressionlevel useroaming usersh fallbacktorsh globalknownhostsfile2 userknownhostsfile2
skeyauthentication tisauthentication kerberosauthentication kerberostgtpassing afstokenpassing
gssapiauthentication gssapidelegatecredentials useprivilegedport identityfile2 dsaauthentication
hostbasedkeytypes`) {
		m[k] = true
	}
	return m
}()
