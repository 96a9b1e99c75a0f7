package remote

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// Resolvers named in [HostConfig.Resolver].
const (
	ResolverLibrary = "ssh_config" // parsed in-process (kevinburke/ssh_config)
	ResolverSSHG    = "ssh -G"     // asked the OpenSSH client
)

// Options configure a [Dialer]. The zero value is usable: the user's
// ssh_config files, their known_hosts, strict host keys, 10s timeout.
type Options struct {
	// ConfigFiles are ssh_config files read in order (first value obtained
	// wins, like OpenSSH). nil means ~/.ssh/config then /etc/ssh/ssh_config;
	// a user's -F replaces both, like OpenSSH.
	ConfigFiles []string
	// KnownHosts, when set, replaces UserKnownHostsFile (and the global
	// known_hosts) for every host: the inventory's known_hosts.
	KnownHosts []string
	// AcceptNew records unknown host keys in the first known_hosts file
	// (StrictHostKeyChecking=accept-new). A changed key is still refused.
	AcceptNew bool
	// ConnectTimeout is used when ssh_config sets none (default 10s). It
	// bounds TCP connect, SSH handshake and authentication of each hop.
	ConnectTimeout time.Duration
	// Log receives diagnostics (resolver used, keys offered, timings). nil
	// discards them.
	Log func(format string, args ...any)
}

// Target names one host to connect to. Name is the ssh_config alias (or
// inventory name); every other non-empty field overrides ssh_config.
type Target struct {
	Name         string
	Address      string // HostName override
	User         string
	Port         int
	Jump         string // ProxyJump spec: "h1,user@h2:2222"; "none" disables a configured one
	IdentityFile string
}

// HostConfig is a host's effective SSH settings after ssh_config, the
// target's overrides, defaults and token expansion.
type HostConfig struct {
	Alias                 string        `json:"alias"`
	HostName              string        `json:"hostname"`
	User                  string        `json:"user"`
	Port                  int           `json:"port"`
	IdentityFiles         []string      `json:"identity_files,omitempty"`
	IdentitiesOnly        bool          `json:"identities_only"`
	ProxyJump             []string      `json:"proxy_jump,omitempty"` // hop specs, first hop first
	ConnectTimeout        time.Duration `json:"connect_timeout"`
	ServerAliveInterval   time.Duration `json:"server_alive_interval"`
	ServerAliveCountMax   int           `json:"server_alive_count_max"`
	StrictHostKeyChecking string        `json:"strict_host_key_checking"` // yes, ask, accept-new, no
	UserKnownHostsFiles   []string      `json:"user_known_hosts_files,omitempty"`
	GlobalKnownHostsFiles []string      `json:"global_known_hosts_files,omitempty"`
	HostKeyAlias          string        `json:"host_key_alias,omitempty"`
	Resolver              string        `json:"resolver"`                  // ResolverLibrary or ResolverSSHG
	FallbackReason        string        `json:"fallback_reason,omitempty"` // why the library was not used
}

// Addr is HostName:Port.
func (h *HostConfig) Addr() string {
	return joinHostPort(h.HostName, h.Port)
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// Resolve computes the effective settings for t. It reads the config files
// with the in-process parser when that is faithful, and asks `ssh -G`
// otherwise (Match blocks, %-tokens the parser does not expand, Includes it
// cannot follow, parse errors). It is safe for concurrent use.
func (d *Dialer) Resolve(t Target) (*HostConfig, error) {
	if t.Name == "" {
		return nil, &HostError{Host: "(empty)", Phase: "resolve", Err: errors.New("empty host name")}
	}
	files, explicit := d.configFiles()
	reason := ""
	for _, f := range files {
		if r := scanConfig(f, isSystemConfig(f, explicit), 0); r != "" {
			reason = r
			break
		}
	}
	var hc *HostConfig
	var err error
	if reason == "" {
		hc, err = d.resolveLibrary(t, files)
		if err != nil {
			reason = err.Error()
		}
	}
	if reason != "" {
		if _, lerr := exec.LookPath("ssh"); lerr != nil {
			return nil, &HostError{Host: t.Name, Phase: "resolve", Err: fmt.Errorf("ssh_config needs OpenSSH to resolve (%s) but no ssh client is installed", reason), Hint: "install openssh-client or simplify the ssh_config"}
		}
		hc, err = d.resolveSSHG(t, files, explicit)
		if err != nil {
			return nil, &HostError{Host: t.Name, Phase: "resolve", Err: err}
		}
		hc.FallbackReason = reason
	}
	d.applyOverrides(hc, t)
	d.logf("%s: resolved by %s%s: %s@%s jump=%v timeout=%s", t.Name, hc.Resolver, parenIf(hc.FallbackReason), hc.User, hc.Addr(), hc.ProxyJump, hc.ConnectTimeout)
	return hc, nil
}

func parenIf(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func (d *Dialer) configFiles() (files []string, explicit bool) {
	if d.o.ConfigFiles != nil {
		return d.o.ConfigFiles, true
	}
	var out []string
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".ssh", "config")
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	if _, err := os.Stat("/etc/ssh/ssh_config"); err == nil {
		out = append(out, "/etc/ssh/ssh_config")
	}
	return out, false
}

func isSystemConfig(path string, explicit bool) bool {
	return !explicit && path == "/etc/ssh/ssh_config"
}

// tokenKeys are the settings lifeline reads; %-tokens in any other key do
// not matter to it.
var tokenKeys = map[string]bool{"hostname": true, "user": true, "port": true, "proxyjump": true, "identityfile": true, "userknownhostsfile": true, "hostkeyalias": true, "connecttimeout": true}

// expandableKeys are the keys whose tokens lifeline expands itself.
var expandableKeys = map[string]bool{"identityfile": true, "userknownhostsfile": true}

// scanConfig reports why the in-process parser would not resolve path
// faithfully, or "" when it would.
func scanConfig(path string, system bool, depth int) string {
	if depth > 5 {
		return "Include nested too deeply"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		key, val := splitConfigLine(sc.Text())
		if key == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, lineNo)
		switch {
		case key == "match":
			if strings.ToLower(strings.TrimSpace(val)) != "all" {
				return "Match block at " + where
			}
		case key == "include":
			for _, pat := range strings.Fields(val) {
				var p string
				switch {
				case filepath.IsAbs(pat):
					p = pat
				case system:
					return "relative Include in the system config at " + where
				case strings.HasPrefix(pat, "~/"):
					home, _ := os.UserHomeDir()
					p = filepath.Join(home, pat[2:])
				default:
					home, _ := os.UserHomeDir()
					p = filepath.Join(home, ".ssh", pat)
				}
				if strings.ContainsAny(pat, "%$") {
					return "tokens in Include at " + where
				}
				matches, err := filepath.Glob(p)
				if err != nil {
					return fmt.Sprintf("bad Include pattern at %s: %v", where, err)
				}
				for _, m := range matches {
					if r := scanConfig(m, system, depth+1); r != "" {
						return r
					}
				}
			}
		case tokenKeys[key]:
			if !strings.Contains(val, "%") && !(strings.Contains(val, "${")) {
				continue
			}
			if !expandableKeys[key] {
				return "tokens in " + key + " at " + where
			}
			if _, ok := expandTokens(val, tokenValues{}, true); !ok {
				return "unsupported token in " + key + " at " + where
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Sprintf("read %s: %v", path, err)
	}
	if _, err := ssh_config.DecodeBytes(data); err != nil {
		return fmt.Sprintf("parse %s: %v", path, err)
	}
	return ""
}

func splitConfigLine(line string) (key, val string) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), ""
	}
	key = strings.ToLower(line[:i])
	val = strings.TrimLeft(line[i:], " \t")
	val = strings.TrimPrefix(val, "=")
	return key, strings.TrimSpace(val)
}

func (d *Dialer) resolveLibrary(t Target, files []string) (*HostConfig, error) {
	var cfgs []*ssh_config.Config
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		c, err := ssh_config.DecodeBytes(data)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		cfgs = append(cfgs, c)
	}
	get := func(key string) (string, error) {
		for _, c := range cfgs {
			v, err := c.Get(t.Name, key)
			if err != nil {
				return "", err
			}
			if v != "" {
				return v, nil
			}
		}
		return "", nil
	}
	var firstErr error
	g := func(key string) string {
		v, err := get(key)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	}
	hc := &HostConfig{Alias: t.Name, Resolver: ResolverLibrary}
	hc.HostName = g("HostName")
	hc.User = g("User")
	if p := g("Port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("bad Port %q", p)
		}
		hc.Port = n
	}
	for _, c := range cfgs {
		v, err := c.GetAll(t.Name, "IdentityFile")
		if err != nil {
			return nil, err
		}
		hc.IdentityFiles = append(hc.IdentityFiles, v...)
	}
	hc.IdentitiesOnly = yes(g("IdentitiesOnly"))
	if pj := g("ProxyJump"); pj != "" {
		hc.ProxyJump = splitJump(pj)
	}
	if v := g("ConnectTimeout"); v != "" && v != "none" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("bad ConnectTimeout %q", v)
		}
		hc.ConnectTimeout = time.Duration(n) * time.Second
	}
	if v := g("ServerAliveInterval"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("bad ServerAliveInterval %q", v)
		}
		hc.ServerAliveInterval = time.Duration(n) * time.Second
	}
	hc.ServerAliveCountMax = 3
	if v := g("ServerAliveCountMax"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("bad ServerAliveCountMax %q", v)
		}
		hc.ServerAliveCountMax = n
	}
	hc.StrictHostKeyChecking = normStrict(g("StrictHostKeyChecking"))
	if v := g("UserKnownHostsFile"); v != "" {
		hc.UserKnownHostsFiles = strings.Fields(v)
	}
	if v := g("GlobalKnownHostsFile"); v != "" {
		hc.GlobalKnownHostsFiles = strings.Fields(v)
	}
	hc.HostKeyAlias = g("HostKeyAlias")
	if firstErr != nil {
		return nil, firstErr
	}
	// Defaults, as ssh -G prints them.
	if hc.HostName == "" {
		hc.HostName = t.Name
	}
	if hc.Port == 0 {
		hc.Port = 22
	}
	if len(hc.IdentityFiles) == 0 {
		for _, n := range []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"} {
			hc.IdentityFiles = append(hc.IdentityFiles, "~/.ssh/"+n)
		}
	}
	if len(hc.UserKnownHostsFiles) == 0 {
		hc.UserKnownHostsFiles = []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"}
	}
	if len(hc.GlobalKnownHostsFiles) == 0 {
		hc.GlobalKnownHostsFiles = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	return hc, nil
}

func yes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "on":
		return true
	}
	return false
}

func normStrict(v string) string {
	switch strings.ToLower(v) {
	case "", "ask":
		return "ask"
	case "yes", "true", "on":
		return "yes"
	case "no", "false", "off":
		return "no"
	case "accept-new":
		return "accept-new"
	}
	return strings.ToLower(v)
}

func splitJump(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// applyOverrides applies the target's fields, the effective timeout and
// expands ~ and %-tokens in file names.
func (d *Dialer) applyOverrides(hc *HostConfig, t Target) {
	if t.Address != "" {
		hc.HostName = t.Address
	}
	if t.User != "" {
		hc.User = t.User
	}
	if t.Port != 0 {
		hc.Port = t.Port
	}
	if t.Jump != "" {
		hc.ProxyJump = splitJump(t.Jump)
	}
	if t.IdentityFile != "" {
		hc.IdentityFiles = append([]string{t.IdentityFile}, hc.IdentityFiles...)
	}
	local := localUser()
	if hc.User == "" {
		hc.User = local
	}
	if hc.ConnectTimeout == 0 {
		hc.ConnectTimeout = d.o.ConnectTimeout
	}
	if hc.ConnectTimeout == 0 {
		hc.ConnectTimeout = 10 * time.Second
	}
	if len(d.o.KnownHosts) > 0 {
		hc.UserKnownHostsFiles = append([]string(nil), d.o.KnownHosts...)
		hc.GlobalKnownHostsFiles = nil
	}
	if d.o.AcceptNew {
		hc.StrictHostKeyChecking = "accept-new"
	}
	home, _ := os.UserHomeDir()
	tv := tokenValues{host: hc.HostName, port: strconv.Itoa(hc.Port), ruser: hc.User, luser: local, home: home, alias: t.Name, keyAlias: hc.HostKeyAlias}
	for i, f := range hc.IdentityFiles {
		hc.IdentityFiles[i], _ = expandTokens(f, tv, false)
	}
	for i, f := range hc.UserKnownHostsFiles {
		hc.UserKnownHostsFiles[i], _ = expandTokens(f, tv, false)
	}
}

func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

type tokenValues struct {
	host, port, ruser, luser, home, alias, keyAlias string
}

// expandTokens expands a leading ~ and %h %p %r %u %d %n %k %i %%. With
// check set it only reports whether every token is supported.
func expandTokens(s string, tv tokenValues, check bool) (string, bool) {
	if strings.Contains(s, "${") {
		return s, false
	}
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = tv.home + s[1:]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return s, false
		}
		i++
		switch s[i] {
		case 'h':
			b.WriteString(tv.host)
		case 'p':
			b.WriteString(tv.port)
		case 'r':
			b.WriteString(tv.ruser)
		case 'u':
			b.WriteString(tv.luser)
		case 'd':
			b.WriteString(tv.home)
		case 'n':
			b.WriteString(tv.alias)
		case 'k':
			if tv.keyAlias != "" {
				b.WriteString(tv.keyAlias)
			} else {
				b.WriteString(tv.host)
			}
		case 'i':
			b.WriteString(strconv.Itoa(os.Getuid()))
		case '%':
			b.WriteByte('%')
		default:
			return s, false
		}
	}
	if check {
		return s, true
	}
	return b.String(), true
}

// MarshalJSON-friendly form used by golden tests and `-v`.
func (h *HostConfig) String() string {
	b, _ := json.Marshal(h)
	return string(b)
}
