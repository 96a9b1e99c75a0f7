package remote_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/internal/shquote"
	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/remote/remotetest"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"/var/lib/lifeline/bin/x-1.2", "/var/lib/lifeline/bin/x-1.2"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$HOME;rm -rf /", "'$HOME;rm -rf /'"},
	}
	for _, tc := range tests {
		if got := shquote.Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
		// Round trip through a real shell.
		cmd := exec.Command("/bin/sh", "-c", "printf %s "+shquote.Quote(tc.in))
		out, err := cmd.Output()
		if err != nil || string(out) != tc.in {
			t.Errorf("sh printf %s = %q, %v; want %q", shquote.Quote(tc.in), out, err, tc.in)
		}
	}
}

func TestSudo(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		reply   remotetest.Reply
		wantErr error
		exit    int
	}{
		{"ok", remotetest.Reply{Stdout: "0\n"}, nil, 0},
		{"password required", remotetest.Reply{Status: 1, Stderr: "sudo: a password is required\n"}, remote.ErrNoSudo, 0},
		{"not in sudoers", remotetest.Reply{Status: 1, Stderr: "sudo: alice is not in the sudoers file.\n"}, remote.ErrNoSudo, 0},
		{"requiretty", remotetest.Reply{Status: 1, Stderr: "sudo: sorry, you must have a tty to run sudo\n"}, remote.ErrNoSudo, 0},
		{"command fails", remotetest.Reply{Status: 1, Stderr: "grep: nothing\n"}, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := remotetest.New(t, "h1").Expect(`sudo -n sh -c 'id -u; echo '\''x y'\'''`, tc.reply)
			_, err := remote.Output(ctx, remote.Sudo(m), `id -u; echo 'x y'`, nil)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "NOPASSWD") || !strings.Contains(err.Error(), "h1") {
					t.Fatalf("err = %v, want %v naming h1 with a NOPASSWD hint", err, tc.wantErr)
				}
			case tc.exit != 0:
				var ee *remote.ExitError
				if !errors.As(err, &ee) || ee.Status != tc.exit || ee.Command != `id -u; echo 'x y'` || errors.Is(err, remote.ErrNoSudo) {
					t.Fatalf("err = %v, want ExitError %d for the unwrapped command", err, tc.exit)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestSudoRealShell(t *testing.T) {
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Fatal("sudo not installed (apt-get install sudo)")
	}
	out, err := remote.Output(context.Background(), remote.Sudo(remotetest.NewLocal("local")), `echo "$(id -u) it's"`, nil)
	if err != nil || string(out) != "0 it's\n" {
		t.Fatalf("sudo through a real shell = %q, %v", out, err)
	}
}

func TestPrivilegedViaSSH(t *testing.T) {
	srv := remotetest.StartServer(t, remotetest.ServerOptions{})
	d := dialer(t, remote.Options{}, srv.SSHConfig("h1"))
	c, err := dial(t, d, "h1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := remote.Privileged(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if r != remote.Runner(c) {
		t.Fatalf("Privileged as root = %T, want the client itself", r)
	}
}

func TestUploadCommandGolden(t *testing.T) {
	got := remote.UploadCommand("/var/lib/lifeline/bin/h.tmp-1", "/var/lib/lifeline/bin/h", 0o700)
	want := `{ [ -d /var/lib/lifeline/bin ] || mkdir -p -m 0700 /var/lib/lifeline/bin; } && umask 077 && cat > /var/lib/lifeline/bin/h.tmp-1 && chmod 700 /var/lib/lifeline/bin/h.tmp-1 && mv -f /var/lib/lifeline/bin/h.tmp-1 /var/lib/lifeline/bin/h || { rc=$?; rm -f /var/lib/lifeline/bin/h.tmp-1; exit $rc; }`
	if got != want {
		t.Fatalf("UploadCommand =\n%s\nwant\n%s", got, want)
	}
}
