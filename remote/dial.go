package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Dialer opens SSH connections described by ssh_config. It is safe for
// concurrent use and holds no connections itself.
type Dialer struct {
	o Options
}

// NewDialer returns a Dialer for o.
func NewDialer(o Options) *Dialer { return &Dialer{o: o} }

func (d *Dialer) logf(format string, args ...any) {
	if d.o.Log != nil {
		d.o.Log(format, args...)
	}
}

// hop is one connection of a chain.
type hop struct {
	name  string // how messages name it: alias or hop spec
	hc    *HostConfig
	proxy bool // reached through hc.ProxyCommand
}

// Dial opens a new connection to t: always a fresh TCP connection, full
// handshake and authentication, through the same jump path (never reused
// or multiplexed), so it proves the host can be reached right now.
//
// Each hop gets its own ConnectTimeout covering TCP connect, handshake and
// authentication; ctx cancellation aborts any phase at once. Errors are
// *HostError wrapping ErrHostKeyMismatch, ErrHostKeyUnknown, ErrAuth,
// ErrTimeout or ErrUnreachable (or ctx.Err()).
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	hc, err := d.Resolve(t)
	if err != nil {
		return nil, err
	}
	if len(hc.Unsupported) > 0 {
		return nil, &HostError{Host: t.Name, Phase: "resolve", Err: fmt.Errorf("ssh_config sets what lifeline cannot do: %s", strings.Join(hc.Unsupported, "; ")),
			Hint: "remove the setting for this host, or override it in a Host block lifeline reads first (lifeline ssh-config " + t.Name + " shows the effective settings)"}
	}
	chain, err := d.jumpChain(hc, 0)
	if err != nil {
		return nil, &HostError{Host: t.Name, Phase: "resolve", Err: err}
	}
	chain = append(chain, hop{name: t.Name, hc: hc, proxy: len(hc.ProxyJump) == 0 && hc.ProxyCommand != ""})
	c := &Client{name: t.Name, hc: hc, closed: make(chan struct{}), log: d.o.Log}
	var via *ssh.Client
	viaName := ""
	for _, h := range chain {
		start := time.Now()
		sc, err := d.connect(ctx, via, viaName, h, t.Name)
		if err != nil {
			c.closeChain()
			return nil, err
		}
		d.logf("%s: connected to %s (%s) in %s", t.Name, h.name, h.hc.Addr(), time.Since(start).Round(time.Millisecond))
		c.chain = append(c.chain, sc)
		via, viaName = sc, h.name
	}
	c.ssh = via
	if hc.ServerAliveInterval > 0 {
		go c.keepalive(hc.ServerAliveInterval, hc.ServerAliveCountMax)
	}
	go func() {
		// When the final connection ends (keepalive, network), release the hops.
		_ = c.ssh.Wait()
		c.Close()
	}()
	return c, nil
}

// jumpChain resolves hc's ProxyJump hops, each through ssh_config. Like
// OpenSSH (which runs `ssh -J earlier-hops -W %h:%p last-hop`), the first
// hop is reached the way its own config says — its ProxyJump or its
// ProxyCommand — and every later hop through the hop before it.
func (d *Dialer) jumpChain(hc *HostConfig, depth int) ([]hop, error) {
	if depth > 8 {
		return nil, errors.New("ProxyJump chain too long (loop?)")
	}
	var out []hop
	for i, spec := range hc.ProxyJump {
		t, err := parseHopSpec(spec)
		if err != nil {
			return nil, err
		}
		hhc, err := d.Resolve(t)
		if err != nil {
			return nil, err
		}
		if len(hhc.Unsupported) > 0 {
			return nil, fmt.Errorf("jump host %s: ssh_config sets what lifeline cannot do: %s", t.Name, strings.Join(hhc.Unsupported, "; "))
		}
		proxy := false
		if i == 0 && len(hhc.ProxyJump) > 0 {
			pre, err := d.jumpChain(hhc, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, pre...)
		} else if i == 0 && hhc.ProxyCommand != "" {
			proxy = true
		}
		out = append(out, hop{name: t.Name, hc: hhc, proxy: proxy})
	}
	return out, nil
}

// parseHopSpec parses [user@]host[:port] (also ssh://user@host:port).
func parseHopSpec(spec string) (Target, error) {
	s := strings.TrimPrefix(spec, "ssh://")
	var t Target
	if i := strings.LastIndex(s, "@"); i >= 0 {
		t.User, s = s[:i], s[i+1:]
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return t, fmt.Errorf("bad ProxyJump hop %q", spec)
		}
		host, rest := s[1:end], s[end+1:]
		s = host
		if strings.HasPrefix(rest, ":") {
			p, err := strconv.Atoi(rest[1:])
			if err != nil {
				return t, fmt.Errorf("bad port in ProxyJump hop %q", spec)
			}
			t.Port = p
		}
	} else if h, p, ok := strings.Cut(s, ":"); ok && !strings.Contains(p, ":") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return t, fmt.Errorf("bad port in ProxyJump hop %q", spec)
		}
		s, t.Port = h, n
	}
	if s == "" {
		return t, fmt.Errorf("bad ProxyJump hop %q", spec)
	}
	t.Name = s
	return t, nil
}

// connect opens one hop: TCP (directly or through via), handshake and
// auth, all under the hop's ConnectTimeout and ctx.
func (d *Dialer) connect(ctx context.Context, via *ssh.Client, viaName string, h hop, target string) (*ssh.Client, error) {
	hc := h.hc
	hostName := target
	if h.name != target {
		hostName = target + " (jump " + h.name + ")"
	}
	herr := func(phase string, err error, hint string) error {
		return &HostError{Host: hostName, Phase: phase, Addr: hc.Addr(), Via: viaName, Err: err, Hint: hint}
	}
	timeout := hc.ConnectTimeout
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	timedOut := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return context.DeadlineExceeded
		}
		return timeoutError{after: timeout.String()}
	}

	var conn net.Conn
	var err error
	var pc *proxyConn
	if via == nil && h.proxy {
		pc, err = dialProxy(tctx, hc, d.o.Log)
		if err != nil {
			return nil, herr("dial", &causeError{kind: ErrUnreachable, cause: err}, "check the ProxyCommand: lifeline ssh-config "+h.name+" shows it")
		}
		conn = pc
	} else if via == nil {
		var nd net.Dialer
		conn, err = nd.DialContext(tctx, "tcp", hc.Addr())
	} else {
		conn, err = via.DialContext(tctx, "tcp", hc.Addr())
	}
	if err != nil {
		if tctx.Err() != nil {
			return nil, herr("dial", timedOut(), "")
		}
		return nil, herr("dial", &causeError{kind: ErrUnreachable, cause: err}, "")
	}

	hk, err := newHostKeyCheck(hc, d.o.Log)
	if err != nil {
		conn.Close()
		return nil, herr("handshake", err, "")
	}
	keys := &keySource{host: hostName, files: hc.IdentityFiles, certs: hc.CertificateFiles, agent: hc.IdentityAgent,
		only: hc.IdentitiesOnly, accepted: hc.PubkeyAcceptedAlgorithms, log: d.o.Log}
	defer keys.close()
	var hostKeyOK atomic.Bool
	var hostKeyErr atomic.Value
	cfg := &ssh.ClientConfig{
		User: hc.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(keys.signers)},
		HostKeyCallback: func(addr string, remote net.Addr, key ssh.PublicKey) error {
			if err := hk.callback(addr, remote, key); err != nil {
				hostKeyErr.Store(err)
				return err
			}
			hostKeyOK.Store(true)
			return nil
		},
		HostKeyAlgorithms: hostKeyAlgorithms(hk.algorithms(), hc.HostKeyAlgorithms),
		Timeout:           timeout,
	}
	cfg.Ciphers = connAlgorithms("Ciphers", hc.Ciphers)
	cfg.KeyExchanges = connAlgorithms("KexAlgorithms", hc.KexAlgorithms)
	cfg.MACs = connAlgorithms("MACs", hc.MACs)
	d.logf("%s: host key algorithms for %s: %v", hostName, hk.lookup, cfg.HostKeyAlgorithms)
	// x/crypto's Timeout covers only TCP connect: bound the handshake by
	// closing the connection when tctx ends (works for jump channels,
	// which do not support deadlines).
	_ = conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(tctx, func() { conn.Close() })
	sconn, chans, reqs, err := ssh.NewClientConn(conn, hc.Addr(), cfg)
	interrupted := !stop()
	if err != nil {
		proxyText := ""
		if pc != nil {
			proxyText = pc.exitText() // before Close kills it
		}
		conn.Close()
		if e, ok := hostKeyErr.Load().(error); ok {
			hint := ""
			switch {
			case errors.Is(e, ErrHostKeyUnknown):
				hint = fmt.Sprintf("run with --accept-new to record it, or ssh-keyscan -p %d %s >> KNOWN_HOSTS", hc.Port, hc.HostName)
			case errors.Is(e, ErrHostKeyMismatch):
				hint = "if the host was reinstalled, remove the old key (ssh-keygen -R) and connect again; otherwise suspect a man in the middle"
			}
			return nil, herr("handshake", e, hint)
		}
		if interrupted || tctx.Err() != nil || isTimeout(err) {
			phase := "handshake"
			if hostKeyOK.Load() {
				phase = "auth"
			}
			return nil, herr(phase, timedOut(), "")
		}
		if hostKeyOK.Load() {
			e, hint := keys.failure(hc.User, err)
			return nil, herr("auth", e, hint)
		}
		if proxyText != "" {
			err = fmt.Errorf("%w (%s)", err, proxyText)
		}
		return nil, herr("handshake", &causeError{kind: ErrUnreachable, cause: err}, "")
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sconn, chans, reqs), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
