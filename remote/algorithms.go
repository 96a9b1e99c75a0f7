package remote

import (
	"strings"

	"golang.org/x/crypto/ssh"
)

// HostKeyAlgorithms and PubkeyAcceptedAlgorithms: a list replaces the
// default, "+list" appends to it, "-list" removes (patterns allowed) and
// "^list" puts the list first, as ssh_config(5) says.

// applyAlgoSpec applies spec to defaults.
func applyAlgoSpec(spec string, defaults []string) []string {
	if spec == "" {
		return defaults
	}
	op := spec[0]
	list := strings.Split(strings.TrimLeft(spec, "+-^"), ",")
	var out []string
	switch op {
	case '+':
		out = append(append(out, defaults...), list...)
	case '-':
		for _, d := range defaults {
			if matchPatternList(d, strings.Join(list, ","), false) != 1 {
				out = append(out, d)
			}
		}
	case '^':
		out = append(out, list...)
		for _, d := range defaults {
			if !containsString(list, d) {
				out = append(out, d)
			}
		}
	default:
		out = list
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// supportedHostKeyAlgos are x/crypto's host key algorithms, preferred first.
var supportedHostKeyAlgos = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// hostKeyAlgorithms orders what known_hosts suggests (fromKnown) by the
// configured HostKeyAlgorithms: the suggested ones the config allows,
// else everything the config allows.
func hostKeyAlgorithms(fromKnown []string, configured string) []string {
	if configured == "" {
		return fromKnown
	}
	allowed := applyAlgoSpec(configured, supportedHostKeyAlgos)
	var out []string
	for _, a := range fromKnown {
		if containsString(allowed, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return allowed
	}
	return out
}

// supportedPubkeyAlgos are the signature algorithms lifeline can offer.
var supportedPubkeyAlgos = append(append([]string(nil), supportedHostKeyAlgos...), ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256, ssh.CertAlgoSKED25519v01, ssh.CertAlgoSKECDSA256v01)

// restrictSigner applies PubkeyAcceptedAlgorithms to one signer: nil when
// none of its algorithms is accepted, an RSA signer limited to the
// accepted rsa-sha2 algorithms.
func restrictSigner(s ssh.Signer, accepted string) ssh.Signer {
	if accepted == "" {
		return s
	}
	ok := applyAlgoSpec(accepted, supportedPubkeyAlgos)
	typ := s.PublicKey().Type()
	var algos []string
	switch typ {
	case ssh.KeyAlgoRSA:
		algos = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	case ssh.CertAlgoRSAv01:
		algos = []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	default:
		if containsString(ok, typ) {
			return s
		}
		return nil
	}
	var keep []string
	for _, a := range algos {
		if containsString(ok, a) {
			keep = append(keep, a)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	as, isAS := s.(ssh.AlgorithmSigner)
	if !isAS {
		return s
	}
	ms, err := ssh.NewSignerWithAlgorithms(as, keep)
	if err != nil {
		return s
	}
	return ms
}

// knownAlgorithms are the names x/crypto implements, per keyword.
func knownAlgorithms(keyword string) []string {
	sup, insec := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	switch keyword {
	case "Ciphers":
		return append(sup.Ciphers, insec.Ciphers...)
	case "KexAlgorithms":
		return append(sup.KeyExchanges, insec.KeyExchanges...)
	case "MACs":
		return append(sup.MACs, insec.MACs...)
	case "HostKeyAlgorithms":
		return append(append(sup.HostKeys, insec.HostKeys...), supportedHostKeyAlgos...)
	}
	return append(append(sup.PublicKeyAuths, insec.PublicKeyAuths...), supportedPubkeyAlgos...)
}

// unknownAlgorithms lists the names a replacing or appending spec asks for
// that x/crypto does not implement ("-" removes names: never a problem;
// "^" and plain lists with none known are).
func unknownAlgorithms(keyword, spec string) []string {
	if spec == "" || spec[0] == '-' {
		return nil
	}
	known := knownAlgorithms(keyword)
	var bad, good []string
	for _, a := range strings.Split(strings.TrimLeft(spec, "+^"), ",") {
		if containsString(known, a) {
			good = append(good, a)
		} else {
			bad = append(bad, a)
		}
	}
	// Like ssh, unknown names in a list are an error only when nothing
	// usable is left; lifeline drops the others (see connAlgorithms).
	if len(good) > 0 {
		return nil
	}
	return bad
}

// connAlgorithms is a Ciphers, KexAlgorithms or MACs spec applied to
// x/crypto's defaults, keeping the names it implements; nil = defaults.
func connAlgorithms(keyword, spec string) []string {
	if spec == "" {
		return nil
	}
	sup := ssh.SupportedAlgorithms()
	def := map[string][]string{"Ciphers": sup.Ciphers, "KexAlgorithms": sup.KeyExchanges, "MACs": sup.MACs}[keyword]
	known := knownAlgorithms(keyword)
	var out []string
	for _, a := range applyAlgoSpec(spec, def) {
		if containsString(known, a) {
			out = append(out, a)
		}
	}
	return out
}
