package remote

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Hostname canonicalisation (CanonicalizeHostname, CanonicalDomains,
// CanonicalizeMaxDots, CanonicalizeFallbackLocal,
// CanonicalizePermittedCNAMEs), as ssh.c's resolve_canonicalize does it.

// HostLookup resolves name (with a trailing dot when it is absolute). ok
// says whether it resolves; canonical is the name the resolver calls it
// (the CNAME target, or the first name of its hosts-file line), "" when
// it is the name itself. [Options.Lookup] replaces the system resolver
// (tests).
type HostLookup func(name string) (canonical string, ok bool)

// systemLookup asks the system resolver, like getaddrinfo with
// AI_CANONNAME.
func systemLookup(name string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, name); err != nil {
		return "", false
	}
	cname, err := net.DefaultResolver.LookupCNAME(ctx, name)
	if err != nil {
		return "", true
	}
	return strings.TrimSuffix(cname, "."), true
}

// canonMode is CanonicalizeHostname: "no", "yes" or "always".
func canonMode(s *settings) string {
	switch strings.ToLower(s.get("canonicalizehostname")) {
	case "yes", "true":
		return "yes"
	case "always":
		return "always"
	}
	return "no"
}

// direct reports whether ssh would connect to the host itself (no
// ProxyCommand, no ProxyJump).
func (s *settings) direct() bool {
	pc := s.proxyCmd == nil || strings.EqualFold(*s.proxyCmd, "none")
	pj := s.proxyJump == nil || strings.EqualFold(*s.proxyJump, "none")
	return pc && pj
}

// canonicalize returns the canonical name of host, or host itself when
// canonicalisation does not apply or fails with CanonicalizeFallbackLocal.
// Then, like ssh, a host not resolved by it is still looked up when
// CanonicalizePermittedCNAMEs is set: a direct host that does not resolve
// is an error, and a permitted CNAME replaces the name.
func canonicalize(host string, s *settings, lookup HostLookup) (string, error) {
	name, resolved, err := canonicalizeDomains(host, s, lookup)
	if err != nil || resolved || !hasPermittedCNAMEs(s) {
		return name, err
	}
	cname, ok := lookup(name)
	if !ok {
		if s.direct() {
			return "", fmt.Errorf("could not resolve hostname %s (CanonicalizePermittedCNAMEs makes ssh look it up)", name)
		}
		return name, nil
	}
	return followCNAME(name, cname, s), nil
}

func hasPermittedCNAMEs(s *settings) bool {
	rules := s.vals["canonicalizepermittedcnames"]
	return len(rules) > 0 && !strings.EqualFold(rules[0], "none")
}

// followCNAME is check_follow_cname.
func followCNAME(name, cname string, s *settings) string {
	mode := canonMode(s)
	if cname == "" || name == cname || !hasPermittedCNAMEs(s) || mode == "no" || (!s.direct() && mode != "always") {
		return name
	}
	for _, r := range s.vals["canonicalizepermittedcnames"] {
		src, dst, _ := strings.Cut(r, ":")
		if matchPatternList(name, src, true) == 1 && matchPatternList(cname, dst, true) == 1 {
			return strings.ToLower(cname)
		}
	}
	return name
}

// canonicalizeDomains is resolve_canonicalize; resolved says whether it
// found an address for the name.
func canonicalizeDomains(host string, s *settings, lookup HostLookup) (string, bool, error) {
	mode := canonMode(s)
	if mode == "no" || (!s.direct() && mode != "always") {
		return host, false, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), true, nil
	}
	if strings.HasSuffix(host, ".") {
		if cname, ok := lookup(host); ok {
			return followCNAME(strings.TrimSuffix(host, "."), cname, s), true, nil
		}
		return canonFailed(host, s)
	}
	maxDots := 1
	if v := s.get("canonicalizemaxdots"); v != "" {
		maxDots, _ = strconv.Atoi(v)
	}
	if strings.Count(host, ".") > maxDots {
		return host, false, nil
	}
	for _, dom := range s.vals["canonicaldomains"] {
		if strings.EqualFold(dom, "none") {
			break
		}
		full := host + "." + dom
		if cname, ok := lookup(full + "."); ok {
			return followCNAME(full, cname, s), true, nil
		}
	}
	return canonFailed(host, s)
}

func canonFailed(host string, s *settings) (string, bool, error) {
	if v := s.get("canonicalizefallbacklocal"); v != "" && !yes(v) {
		return "", false, fmt.Errorf("could not resolve host %q (CanonicalizeHostname with CanonicalizeFallbackLocal no)", host)
	}
	return host, false, nil
}
