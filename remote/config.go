package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Resolvers named in [HostConfig.Resolver].
const (
	ResolverInProcess = "lifeline" // read in-process with OpenSSH 9.2's rules
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
	// Lookup resolves names for CanonicalizeHostname; nil means the
	// system resolver.
	Lookup HostLookup
	// MatchExec runs a Match exec command (ssh: /bin/sh -c, true when it
	// exits 0); nil runs it. Tests and fuzzing stub it out.
	MatchExec func(cmd string) (bool, error)
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
	// ProxyCommand, when set, is used like ssh -o ProxyCommand=...: it
	// wins over the files' ProxyCommand and ProxyJump (ignored with Jump).
	ProxyCommand string
	// Options are ssh_config lines ("Key value") given like ssh's -o
	// options: read before the files, so each wins over them. A keyword
	// lifeline does not honour is refused by name, as in a file.
	Options []string
}

// HostConfig is a host's effective SSH settings after ssh_config, the
// target's overrides, defaults and token expansion.
type HostConfig struct {
	Alias                    string        `json:"alias"`
	HostName                 string        `json:"hostname"`
	User                     string        `json:"user"`
	Port                     int           `json:"port"`
	IdentityFiles            []string      `json:"identity_files,omitempty"`
	CertificateFiles         []string      `json:"certificate_files,omitempty"`
	IdentitiesOnly           bool          `json:"identities_only"`
	IdentityAgent            string        `json:"identity_agent,omitempty"` // "", "none", "SSH_AUTH_SOCK", "$VAR" or a socket path
	ProxyJump                []string      `json:"proxy_jump,omitempty"`     // hop specs, first hop first
	ProxyCommand             string        `json:"proxy_command,omitempty"`  // as written: tokens expanded when run
	ConnectTimeout           time.Duration `json:"connect_timeout"`
	ServerAliveInterval      time.Duration `json:"server_alive_interval"`
	ServerAliveCountMax      int           `json:"server_alive_count_max"`
	StrictHostKeyChecking    string        `json:"strict_host_key_checking"` // yes, ask, accept-new, no
	UserKnownHostsFiles      []string      `json:"user_known_hosts_files,omitempty"`
	GlobalKnownHostsFiles    []string      `json:"global_known_hosts_files,omitempty"`
	HostKeyAlias             string        `json:"host_key_alias,omitempty"`
	HostKeyAlgorithms        string        `json:"host_key_algorithms,omitempty"`        // as configured ("" = lifeline's choice from known_hosts)
	PubkeyAcceptedAlgorithms string        `json:"pubkey_accepted_algorithms,omitempty"` // as configured
	Ciphers                  string        `json:"ciphers,omitempty"`                    // as configured
	KexAlgorithms            string        `json:"kex_algorithms,omitempty"`             // as configured
	MACs                     string        `json:"macs,omitempty"`                       // as configured
	Resolver                 string        `json:"resolver"`                             // ResolverInProcess
	Notes                    []string      `json:"notes,omitempty"`                      // settings lifeline ignores, and why
	Unsupported              []string      `json:"unsupported,omitempty"`                // settings lifeline cannot honour: Dial refuses
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

// Resolve computes the effective settings for t the way OpenSSH 9.2 does
// (`ssh -G` is the reference): the config files are read in-process with
// readconf.c's rules — Host, every Match criterion, Include with globs,
// first value wins, canonicalisation and the final pass — and file names
// are expanded with ssh_config(5)'s tokens. The target's fields act like
// ssh's command-line options (-o HostName, -l, -p, -J, -i): they win over
// the files and Match sees them. It is safe for concurrent use.
func (d *Dialer) Resolve(t Target) (*HostConfig, error) {
	if t.Name == "" {
		return nil, &HostError{Host: "(empty)", Phase: "resolve", Err: errors.New("empty host name")}
	}
	hc, err := d.resolve(t)
	if err != nil {
		return nil, &HostError{Host: t.Name, Phase: "resolve", Err: err, Hint: "compare with: ssh -G " + t.Name}
	}
	if len(d.o.KnownHosts) > 0 {
		hc.UserKnownHostsFiles = append([]string(nil), d.o.KnownHosts...)
		hc.GlobalKnownHostsFiles = nil
	}
	if d.o.AcceptNew {
		hc.StrictHostKeyChecking = "accept-new"
	}
	if hc.ConnectTimeout == 0 {
		hc.ConnectTimeout = d.o.ConnectTimeout
	}
	if hc.ConnectTimeout == 0 {
		hc.ConnectTimeout = 10 * time.Second
	}
	via := ""
	switch {
	case hc.ProxyCommand != "":
		via = " proxycommand=" + hc.ProxyCommand
	case len(hc.ProxyJump) > 0:
		via = " jump=" + strings.Join(hc.ProxyJump, ",")
	}
	d.logf("%s: resolved: %s@%s%s timeout=%s", t.Name, hc.User, hc.Addr(), via, hc.ConnectTimeout)
	for _, n := range hc.Notes {
		d.logf("%s: %s", t.Name, n)
	}
	return hc, nil
}

// resolveCtx is what one resolution knows besides the settings.
type resolveCtx struct {
	hostArg  string // the name as given: %n, Match originalhost
	local    passwdEntry
	thisHost string
	exec     func(cmd string) (bool, error)
}

func (r *resolveCtx) tokens(host, port, ruser, keyAlias string) tokenValues {
	return tokenValues{host: host, port: port, ruser: ruser, alias: r.hostArg, keyAlias: keyAlias,
		luser: r.local.name, home: r.local.home, uid: r.local.uid, thisHost: r.thisHost}
}

func (d *Dialer) resolve(t Target) (*HostConfig, error) {
	files, explicit := d.configFiles()
	r := &resolveCtx{hostArg: t.Name, local: localPasswd(), thisHost: thisHost()}
	r.exec = func(cmd string) (bool, error) { return runMatchExec(cmd, d.o.Log) }
	if d.o.MatchExec != nil {
		r.exec = d.o.MatchExec
	}
	s := newSettings()
	// The target's fields are command-line options: set before the files.
	if t.Address != "" {
		s.vals["hostname"] = []string{t.Address}
	}
	if t.User != "" {
		s.vals["user"] = []string{t.User}
	}
	if t.Port != 0 {
		s.vals["port"] = []string{strconv.Itoa(t.Port)}
	}
	if t.Jump != "" {
		j := t.Jump
		s.proxyJump = &j
		none := "none"
		s.proxyCmd = &none // a given jump (or "none": direct) replaces ProxyCommand too
	}
	if t.IdentityFile != "" {
		s.identities = []string{t.IdentityFile}
	}
	if t.ProxyCommand != "" && t.Jump == "" {
		pc, none := t.ProxyCommand, "none"
		s.proxyCmd, s.proxyJump = &pc, &none // the first of the two wins, as in ssh
	}
	cl := &pass{r: r, s: s, host: t.Name}
	var cmdNotes []string
	for _, o := range t.Options {
		active := true
		if err := cl.line(o, "command-line option", true, false, &active, 0); err != nil {
			return nil, fmt.Errorf("option %q: %w", o, err)
		}
		if k, v := splitKeyword(o); k == "stricthostkeychecking" && (strings.EqualFold(strings.TrimSpace(v), "no") || strings.EqualFold(strings.TrimSpace(v), "off")) {
			cmdNotes = append(cmdNotes, "StrictHostKeyChecking "+strings.TrimSpace(v)+" given by the inventory: lifeline treats it as accept-new (unknown keys are recorded, a changed key is still refused); it weakens the guarantee that the host confirmed on is the host changed")
		}
	}
	readAll := func(p *pass) error {
		for _, f := range files {
			active := true
			user := explicit || f != "/etc/ssh/ssh_config"
			if err := p.readFile(f, user, false, false, &active, 0); err != nil {
				if errors.Is(err, os.ErrNotExist) && !explicit {
					continue
				}
				return err
			}
		}
		return nil
	}
	p := &pass{r: r, s: s, host: t.Name}
	if err := readAll(p); err != nil {
		return nil, err
	}
	host := t.Name
	if hn := s.get("hostname"); hn != "" {
		h, err := expandPercent(hn, tokenValues{host: t.Name}, "h")
		if err != nil {
			return nil, fmt.Errorf("HostName: %w", err)
		}
		host = h
	}
	host = strings.ToLower(host)
	lookup := d.o.Lookup
	if lookup == nil {
		lookup = systemLookup
	}
	canon, err := canonicalize(host, s, lookup)
	if err != nil {
		return nil, err
	}
	if canon != host {
		d.logf("%s: canonicalized %s to %s", t.Name, host, canon)
	}
	host = canon
	if canonMode(s) != "no" || p.wantFinal {
		s.vals["hostname"] = []string{host}
		p2 := &pass{r: r, s: s, host: host, final: true}
		if err := readAll(p2); err != nil {
			return nil, err
		}
	}
	hc, err := buildHostConfig(t.Name, host, s, r)
	if hc != nil {
		hc.Notes = append(hc.Notes, cmdNotes...)
	}
	return hc, err
}

// defaultIdentities are ssh's identity files when none is configured.
var defaultIdentities = []string{"~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519", "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss", "~/.ssh/id_dsa"}

// buildHostConfig turns the settings into a HostConfig: defaults as ssh
// fills them, file names expanded, what lifeline cannot do named.
func buildHostConfig(alias, host string, s *settings, r *resolveCtx) (*HostConfig, error) {
	hc := &HostConfig{Alias: alias, HostName: host, Resolver: ResolverInProcess, Port: 22, ServerAliveCountMax: 3}
	hc.User = s.get("user")
	if hc.User == "" {
		hc.User = r.local.name
	}
	if v := s.get("port"); v != "" {
		hc.Port, _ = strconv.Atoi(v)
	}
	hc.HostKeyAlias = s.get("hostkeyalias")
	keyAlias := hc.HostKeyAlias
	if keyAlias == "" {
		keyAlias = alias
	}
	tv := r.tokens(host, strconv.Itoa(hc.Port), hc.User, keyAlias)
	ids := s.identities
	if len(ids) == 0 {
		ids = defaultIdentities
	}
	for _, f := range ids {
		e, err := expandFile("IdentityFile", f, tv)
		if err != nil {
			return nil, err
		}
		hc.IdentityFiles = append(hc.IdentityFiles, e)
	}
	for _, f := range s.certs {
		e, err := expandFile("CertificateFile", f, tv)
		if err != nil {
			return nil, err
		}
		hc.CertificateFiles = append(hc.CertificateFiles, e)
	}
	ukh := s.vals["userknownhostsfile"]
	if len(ukh) == 0 {
		ukh = []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"}
	}
	for _, f := range ukh {
		e, err := expandFile("UserKnownHostsFile", f, tv)
		if err != nil {
			return nil, err
		}
		hc.UserKnownHostsFiles = append(hc.UserKnownHostsFiles, e)
	}
	hc.GlobalKnownHostsFiles = s.vals["globalknownhostsfile"]
	if len(hc.GlobalKnownHostsFiles) == 0 {
		hc.GlobalKnownHostsFiles = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	if a := s.get("identityagent"); a != "" {
		hc.IdentityAgent = a
		if a != "none" && a != "SSH_AUTH_SOCK" && (!strings.HasPrefix(a, "$") || strings.HasPrefix(a, "${")) {
			e, err := expandFile("IdentityAgent", a, tv)
			if err != nil {
				return nil, err
			}
			hc.IdentityAgent = e
		}
	}
	if s.proxyJump != nil && !strings.EqualFold(*s.proxyJump, "none") {
		hc.ProxyJump = splitJump(*s.proxyJump)
	} else if s.proxyCmd != nil && !strings.EqualFold(*s.proxyCmd, "none") {
		hc.ProxyCommand = *s.proxyCmd
	}
	hc.IdentitiesOnly = yes(s.get("identitiesonly"))
	hc.StrictHostKeyChecking = normStrict(s.get("stricthostkeychecking"))
	hc.HostKeyAlgorithms = s.get("hostkeyalgorithms")
	hc.PubkeyAcceptedAlgorithms = s.get("pubkeyacceptedalgorithms")
	if hc.PubkeyAcceptedAlgorithms == "" {
		hc.PubkeyAcceptedAlgorithms = s.get("pubkeyacceptedkeytypes")
	}
	hc.Ciphers, hc.KexAlgorithms, hc.MACs = s.get("ciphers"), s.get("kexalgorithms"), s.get("macs")
	if v := s.get("connecttimeout"); v != "" && !strings.EqualFold(v, "none") {
		n, _ := convtime(v)
		hc.ConnectTimeout = time.Duration(n) * time.Second
	}
	if v := s.get("serveraliveinterval"); v != "" {
		n, _ := convtime(v)
		hc.ServerAliveInterval = time.Duration(n) * time.Second
	}
	if v := s.get("serveralivecountmax"); v != "" {
		hc.ServerAliveCountMax, _ = strconv.Atoi(v)
	}
	hc.Notes, hc.Unsupported = limits(s)
	return hc, nil
}

// limits lists the settings lifeline ignores (notes) and the ones it
// cannot honour (Dial refuses the host, naming them).
func limits(s *settings) (notes, refuse []string) {
	if v := s.get("addkeystoagent"); v != "" && !strings.EqualFold(v, "no") {
		notes = append(notes, "AddKeysToAgent "+v+" is ignored: lifeline never adds keys to an agent")
	}
	if v := s.get("controlmaster"); v != "" && !strings.EqualFold(v, "no") {
		notes = append(notes, "ControlMaster "+v+" is ignored: lifeline opens a fresh connection every time")
	}
	if v := s.get("remotecommand"); v != "" && !strings.EqualFold(v, "none") {
		notes = append(notes, "RemoteCommand is ignored: lifeline runs its own commands")
	}
	if yes(s.get("forwardagent")) {
		notes = append(notes, "ForwardAgent is ignored: lifeline never forwards the agent")
	}
	if strings.EqualFold(s.get("stricthostkeychecking"), "no") || strings.EqualFold(s.get("stricthostkeychecking"), "off") {
		notes = append(notes, "StrictHostKeyChecking no acts as accept-new: lifeline records unknown keys but always refuses a changed one")
	}
	for _, k := range []string{"Ciphers", "KexAlgorithms", "MACs", "HostKeyAlgorithms", "PubkeyAcceptedAlgorithms"} {
		if bad := unknownAlgorithms(k, s.get(strings.ToLower(k))); len(bad) > 0 {
			refuse = append(refuse, k+" "+strings.Join(bad, ",")+" (not implemented by lifeline's SSH library)")
		}
	}
	if yes(s.get("proxyusefdpass")) {
		refuse = append(refuse, "ProxyUseFdpass yes (lifeline speaks SSH over the ProxyCommand's stdin/stdout only)")
	}
	if v := s.get("knownhostscommand"); v != "" {
		refuse = append(refuse, "KnownHostsCommand (lifeline reads known_hosts files only)")
	}
	for _, k := range []string{"pkcs11provider", "securitykeyprovider"} {
		if v := s.get(k); v != "" && !strings.EqualFold(v, "none") && !strings.EqualFold(v, "internal") {
			refuse = append(refuse, keywordName(k)+" (lifeline cannot use hardware keys; load the key into ssh-agent instead)")
		}
	}
	for _, k := range []string{"bindaddress", "bindinterface"} {
		if s.get(k) != "" {
			refuse = append(refuse, keywordName(k)+" (lifeline does not choose the local address)")
		}
	}
	return notes, refuse
}

func keywordName(k string) string {
	return map[string]string{"pkcs11provider": "PKCS11Provider", "securitykeyprovider": "SecurityKeyProvider",
		"bindaddress": "BindAddress", "bindinterface": "BindInterface"}[k]
}

func (d *Dialer) configFiles() (files []string, explicit bool) {
	if d.o.ConfigFiles != nil {
		return d.o.ConfigFiles, true
	}
	return []string{filepath.Join(localPasswd().home, ".ssh", "config"), "/etc/ssh/ssh_config"}, false
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

// MarshalJSON-friendly form used by golden tests and `-v`.
func (h *HostConfig) String() string {
	b, _ := json.Marshal(h)
	return string(b)
}
