package remote

import (
	"strconv"
	"strings"
)

// Preview is a host's effective settings under `ssh -G`'s lower-case
// keyword names (the `lifeline ssh-config` command prints it). File names
// are expanded — where ssh -G prints IdentityFile and CertificateFile as
// written, lifeline shows the files it will read.
type Preview struct {
	Host                     string   `json:"host"`
	HostName                 string   `json:"hostname"`
	User                     string   `json:"user"`
	Port                     int      `json:"port"`
	IdentityFile             []string `json:"identityfile"`
	CertificateFile          []string `json:"certificatefile"`
	IdentityAgent            string   `json:"identityagent,omitempty"`
	UserKnownHostsFile       []string `json:"userknownhostsfile"`
	GlobalKnownHostsFile     []string `json:"globalknownhostsfile"`
	HostKeyAlias             string   `json:"hostkeyalias,omitempty"`
	ProxyJump                string   `json:"proxyjump,omitempty"`
	ProxyCommand             string   `json:"proxycommand,omitempty"`
	ConnectTimeout           int      `json:"connecttimeout"` // seconds lifeline waits (ssh_config's, or lifeline's default)
	IdentitiesOnly           bool     `json:"identitiesonly"`
	StrictHostKeyChecking    string   `json:"stricthostkeychecking"`
	HostKeyAlgorithms        string   `json:"hostkeyalgorithms,omitempty"`
	PubkeyAcceptedAlgorithms string   `json:"pubkeyacceptedalgorithms,omitempty"`
	ServerAliveInterval      int      `json:"serveraliveinterval"`
	ServerAliveCountMax      int      `json:"serveralivecountmax"`
	Resolver                 string   `json:"resolver"`
	Notes                    []string `json:"notes,omitempty"`
	Unsupported              []string `json:"unsupported,omitempty"`
}

// Preview returns h under ssh -G's names.
func (h *HostConfig) Preview() Preview {
	p := Preview{Host: h.Alias, HostName: h.HostName, User: h.User, Port: h.Port,
		IdentityFile: nonNil(h.IdentityFiles), CertificateFile: nonNil(h.CertificateFiles), IdentityAgent: h.IdentityAgent,
		UserKnownHostsFile: nonNil(h.UserKnownHostsFiles), GlobalKnownHostsFile: nonNil(h.GlobalKnownHostsFiles),
		HostKeyAlias: h.HostKeyAlias, ProxyJump: jumpString(h.ProxyJump), ProxyCommand: h.ProxyCommand,
		ConnectTimeout: int(h.ConnectTimeout.Seconds()), IdentitiesOnly: h.IdentitiesOnly,
		StrictHostKeyChecking: h.StrictHostKeyChecking, HostKeyAlgorithms: h.HostKeyAlgorithms,
		PubkeyAcceptedAlgorithms: h.PubkeyAcceptedAlgorithms, ServerAliveInterval: int(h.ServerAliveInterval.Seconds()),
		ServerAliveCountMax: h.ServerAliveCountMax, Resolver: h.Resolver, Notes: h.Notes, Unsupported: h.Unsupported}
	return p
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Lines are the preview as `ssh -G` prints it: "keyword value", one per
// line, list keywords repeated (identityfile, certificatefile) or joined
// with blanks (userknownhostsfile); then "# note:" and "# unsupported:"
// lines.
func (p Preview) Lines() []string {
	out := []string{"host " + p.Host, "hostname " + p.HostName, "user " + p.User, "port " + strconv.Itoa(p.Port)}
	for _, f := range p.IdentityFile {
		out = append(out, "identityfile "+f)
	}
	for _, f := range p.CertificateFile {
		out = append(out, "certificatefile "+f)
	}
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+" "+v)
		}
	}
	add("identityagent", p.IdentityAgent)
	add("userknownhostsfile", strings.Join(p.UserKnownHostsFile, " "))
	add("globalknownhostsfile", strings.Join(p.GlobalKnownHostsFile, " "))
	add("hostkeyalias", p.HostKeyAlias)
	add("proxyjump", p.ProxyJump)
	add("proxycommand", p.ProxyCommand)
	add("connecttimeout", strconv.Itoa(p.ConnectTimeout))
	add("identitiesonly", map[bool]string{true: "yes", false: "no"}[p.IdentitiesOnly])
	add("stricthostkeychecking", p.StrictHostKeyChecking)
	add("hostkeyalgorithms", p.HostKeyAlgorithms)
	add("pubkeyacceptedalgorithms", p.PubkeyAcceptedAlgorithms)
	add("serveraliveinterval", strconv.Itoa(p.ServerAliveInterval))
	add("serveralivecountmax", strconv.Itoa(p.ServerAliveCountMax))
	add("resolver", p.Resolver)
	for _, n := range p.Notes {
		out = append(out, "# note: "+n)
	}
	for _, u := range p.Unsupported {
		out = append(out, "# unsupported: "+u)
	}
	return out
}

// jumpString prints a jump chain as ssh -G does: the hops before the last
// as written, the last one as [user@]host[:port].
func jumpString(hops []string) string {
	if len(hops) == 0 {
		return ""
	}
	last := hops[len(hops)-1]
	if t, err := parseHopSpec(last); err == nil {
		last = t.Name
		if t.User != "" {
			last = t.User + "@" + last
		}
		if t.Port > 0 {
			last += ":" + strconv.Itoa(t.Port)
		}
	}
	return strings.Join(append(append([]string(nil), hops[:len(hops)-1]...), last), ",")
}
