package remotetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ServerOptions configure an in-process SSH server.
type ServerOptions struct {
	// HostKeys the server offers, in preference order (default: one fresh
	// ed25519 key).
	HostKeys []ssh.Signer
	// NoSFTP disables the sftp subsystem.
	NoSFTP bool
	// Silent accepts TCP connections and never says anything: a host
	// whose sshd hangs before the banner.
	Silent bool
	// IgnoreKeepalives makes the server stop answering global requests.
	IgnoreKeepalives bool
	// UserCA, when set, also accepts user certificates it signed (any
	// principal).
	UserCA ssh.PublicKey
}

// Server is an SSH server on 127.0.0.1 that runs commands with the local
// /bin/sh, serves sftp and forwards direct-tcpip (so it can be a jump
// host). It accepts only ClientKey. Stopped at test cleanup.
type Server struct {
	Addr          string // 127.0.0.1:port
	Port          int
	HostKeys      []ssh.Signer
	ClientKey     ssh.Signer
	ClientKeyFile string // OpenSSH PEM private key file for ClientKey
	// KnownHosts is a file holding every host key as "[127.0.0.1]:port".
	KnownHosts string
	Dir        string

	o     ServerOptions
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	done  chan struct{}
	// frozen: new channels and requests go unanswered, as on a link that
	// went silent
	frozen atomic.Bool
}

// Freeze makes the server stop answering on its open connections: channel
// opens and global requests (keepalives) get no reply, as when the link
// goes silent after the TCP connection was set up.
func (s *Server) Freeze() { s.frozen.Store(true) }

// NewHostKey returns a fresh key of kind "ed25519", "ecdsa" or "rsa".
func NewHostKey(t testing.TB, kind string) ssh.Signer {
	t.Helper()
	if kind == "ed25519" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	file := filepath.Join(t.TempDir(), "k")
	cmd := exec.Command("ssh-keygen", "-q", "-t", kind, "-N", "", "-f", file)
	cmd.WaitDelay = time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -t %s: %v: %s (install openssh-client)", kind, err, b)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartServer starts a server; it stops when the test ends.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	s := &Server{o: o, Dir: t.TempDir(), done: make(chan struct{})}
	s.HostKeys = o.HostKeys
	if len(s.HostKeys) == 0 {
		s.HostKeys = []ssh.Signer{NewHostKey(t, "ed25519")}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.ClientKey, _ = ssh.NewSignerFromKey(priv)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	s.ClientKeyFile = filepath.Join(s.Dir, "id_ed25519")
	if err := os.WriteFile(s.ClientKeyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.ClientKeyFile+".pub", ssh.MarshalAuthorizedKey(s.ClientKey.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = s.ln.Addr().String()
	s.Port = s.ln.Addr().(*net.TCPAddr).Port
	var kh strings.Builder
	for _, k := range s.HostKeys {
		kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, k.PublicKey()) + "\n")
	}
	s.KnownHosts = filepath.Join(s.Dir, "known_hosts")
	if err := os.WriteFile(s.KnownHosts, []byte(kh.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.DropConnections()
	s.wg.Wait()
}

// DropConnections closes every open connection (a network cut).
func (s *Server) DropConnections() {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

// SSHConfig returns an ssh_config block for alias pointing at the server.
func (s *Server) SSHConfig(alias string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n", alias, s.Port, currentUser(), s.ClientKeyFile, s.KnownHosts)
	for _, e := range extra {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

func (s *Server) serve() {
	defer s.wg.Done()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if cert, ok := key.(*ssh.Certificate); ok && s.o.UserCA != nil {
				checker := &ssh.CertChecker{IsUserAuthority: func(auth ssh.PublicKey) bool {
					return string(auth.Marshal()) == string(s.o.UserCA.Marshal())
				}}
				return checker.Authenticate(meta, cert)
			}
			if string(key.Marshal()) == string(s.ClientKey.PublicKey().Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	for _, k := range s.HostKeys {
		cfg.AddHostKey(k)
	}
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		if s.o.Silent {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c, cfg)
		}()
	}
}

func (s *Server) handle(c net.Conn, cfg *ssh.ServerConfig) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	go func() {
		for r := range reqs {
			if s.o.IgnoreKeepalives || s.frozen.Load() {
				continue
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}()
	var wg sync.WaitGroup
	for nc := range chans {
		if s.frozen.Load() {
			continue // never accepted nor rejected: the opener waits
		}
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.session(sc, ch, creqs)
			}()
		case "direct-tcpip":
			var p struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, "bad request")
				continue
			}
			tc, err := net.DialTimeout("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))), 5*time.Second)
			if err != nil {
				_ = nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				tc.Close()
				continue
			}
			go ssh.DiscardRequests(creqs)
			go func() {
				_, _ = io.Copy(ch, tc)
				ch.CloseWrite()
			}()
			go func() {
				_, _ = io.Copy(tc, ch)
				tc.Close()
				ch.Close()
			}()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported")
		}
	}
	wg.Wait()
}

func (s *Server) session(sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var proc *exec.Cmd
	exited := make(chan struct{})
	for r := range reqs {
		switch r.Type {
		case "exec":
			if proc != nil {
				_ = r.Reply(false, nil)
				continue
			}
			var p struct{ Command string }
			if err := ssh.Unmarshal(r.Payload, &p); err != nil {
				_ = r.Reply(false, nil)
				continue
			}
			proc = exec.Command("/bin/sh", "-c", p.Command)
			ra := sc.RemoteAddr().(*net.TCPAddr)
			la := sc.LocalAddr().(*net.TCPAddr)
			proc.Env = append(os.Environ(), fmt.Sprintf("SSH_CONNECTION=%s %d %s %d", ra.IP, ra.Port, la.IP, la.Port))
			proc.Stdin = ch
			proc.Stdout = ch
			proc.Stderr = ch.Stderr()
			proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			proc.WaitDelay = time.Second
			if err := proc.Start(); err != nil {
				_ = r.Reply(false, nil)
				return
			}
			_ = r.Reply(true, nil)
			go func() {
				defer close(exited)
				err := proc.Wait()
				var status uint32
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						sig := strings.TrimPrefix(signalName(ws.Signal()), "SIG")
						_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
							Signal     string
							CoreDumped bool
							Msg, Lang  string
						}{sig, false, "", ""}))
						ch.Close()
						return
					}
					status = uint32(ee.ExitCode())
				} else if err != nil {
					status = 255
				}
				b := make([]byte, 4)
				binary.BigEndian.PutUint32(b, status)
				_, _ = ch.SendRequest("exit-status", false, b)
				ch.Close()
			}()
		case "subsystem":
			var p struct{ Name string }
			_ = ssh.Unmarshal(r.Payload, &p)
			if p.Name != "sftp" || s.o.NoSFTP {
				_ = r.Reply(false, nil)
				continue
			}
			_ = r.Reply(true, nil)
			srv, err := sftp.NewServer(ch)
			if err != nil {
				return
			}
			go func() {
				_ = srv.Serve()
				srv.Close()
				ch.Close()
			}()
		case "signal":
			var p struct{ Signal string }
			_ = ssh.Unmarshal(r.Payload, &p)
			if proc != nil && proc.Process != nil {
				if sig, ok := signals[p.Signal]; ok {
					_ = syscall.Kill(-proc.Process.Pid, sig)
				}
			}
			if r.WantReply {
				_ = r.Reply(true, nil)
			}
		case "env":
			_ = r.Reply(true, nil)
		default:
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}
	// Channel closed by the client: kill what still runs.
	if proc != nil && proc.Process != nil {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
}

var signals = map[string]syscall.Signal{"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP}

func signalName(s syscall.Signal) string {
	for k, v := range signals {
		if v == s {
			return k
		}
	}
	return strconv.Itoa(int(s))
}
