package remote_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeline-dev/lifeline/remote"
)

// The oracle test: for every alias of every config in testdata/ssh_config
// (named on its first line, "# hosts: a b"; "# fails: c" names aliases
// ssh refuses), lifeline's preview must print what `ssh -G -F FILE ALIAS`
// prints — hostname, user, port, identity and certificate files, known
// hosts files, identity agent, host key alias, jump chain and proxy
// command.
//
// ssh -G prints IdentityFile and CertificateFile as written; the files
// ssh reads are what it makes of them with the host's tokens, which a
// second ssh -G shows: passed as -o UserKnownHostsFile (which takes the
// same tokens and is printed expanded) they come back expanded by ssh.
//
// ssh runs in a private mount namespace whose /etc/hosts is
// testdata/ssh_config/hosts and whose nsswitch says "hosts: files", so
// canonicalisation is deterministic offline; lifeline's resolver hook
// reads the same file. HOME is a fresh folder holding
// testdata/ssh_config/home (relative Includes resolve to ~/.ssh there).

// compared are the ssh -G keywords the test compares.
var compared = []string{"hostname", "user", "port", "identityfile", "certificatefile", "userknownhostsfile", "identityagent", "hostkeyalias", "proxyjump", "proxycommand"}

func TestPreviewMatchesSSHG(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("the oracle test needs the OpenSSH client (apt-get install openssh-client)")
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Getuid() != 0 {
		t.Fatal("the oracle test runs ssh -G in a private mount namespace: it needs root and unshare")
	}
	confs, _ := filepath.Glob("testdata/ssh_config/*.conf")
	if len(confs) < 12 {
		t.Fatalf("want at least 12 configs in testdata/ssh_config, have %d", len(confs))
	}
	hostsFile, _ := filepath.Abs("testdata/ssh_config/hosts")
	nss := filepath.Join(t.TempDir(), "nsswitch.conf")
	if err := os.WriteFile(nss, []byte("hosts: files\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lookup := hostsLookup(t, hostsFile)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("LIFELINE_TEST_KEYS", "/srv/keys")
	total, keys, mismatches := 0, 0, 0
	for _, conf := range confs {
		name := strings.TrimSuffix(filepath.Base(conf), ".conf")
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			copyTree(t, "testdata/ssh_config/home", home)
			p, hosts, fails := writeConf(t, conf, home)
			d := remote.NewDialer(remote.Options{ConfigFiles: []string{p}, Lookup: lookup})
			for _, h := range append(hosts, fails...) {
				total++
				want, err := sshG(hostsFile, nss, home, p, h)
				hc, rerr := d.Resolve(remote.Target{Name: h})
				shouldFail := contains(fails, h)
				if shouldFail {
					if err == nil || rerr == nil {
						mismatches++
						t.Errorf("%s: want both to refuse: ssh -G: %v, lifeline: %v", h, err, rerr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", h, err)
				}
				if rerr != nil {
					mismatches++
					t.Errorf("%s: lifeline refuses what ssh -G accepts: %v", h, rerr)
					continue
				}
				// ssh's own expansion of the identity and certificate files.
				for _, k := range []string{"identityfile", "certificatefile"} {
					if len(want[k]) == 0 {
						continue
					}
					probe, err := sshG(hostsFile, nss, home, p, h, "-o", "UserKnownHostsFile="+strings.Join(want[k], " "))
					if err != nil {
						t.Fatalf("%s: probe %s: %v", h, k, err)
					}
					want[k] = probe["userknownhostsfile"]
				}
				got := parseLines(hc.Preview().Lines())
				for _, k := range compared {
					keys++
					if !reflect.DeepEqual(want[k], got[k]) {
						mismatches++
						t.Errorf("%s: %s: ssh -G %q, lifeline %q", h, k, want[k], got[k])
					}
				}
			}
		})
	}
	t.Logf("%d aliases in %d configs, %d settings compared, %d mismatches", total, len(confs), keys, mismatches)
}

// sshG runs ssh -G in the private mount namespace and parses its output.
func sshG(hostsFile, nss, home, conf, host string, extra ...string) (map[string][]string, error) {
	args := []string{"-m", "sh", "-c", `mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec ssh "$@"`,
		"sh", hostsFile, nss, "-G", "-F", conf}
	args = append(append(args, extra...), "--", host)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(strings.TrimSpace(stderr.String()) + ": " + err.Error())
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "identityfile", "certificatefile":
			m[k] = append(m[k], v)
		case "userknownhostsfile":
			m[k] = strings.Fields(v)
		default:
			m[k] = []string{v}
		}
	}
	return m, nil
}

// parseLines reads the preview's lines back the way sshG reads ssh's.
func parseLines(lines []string) map[string][]string {
	m := map[string][]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, " ")
		switch k {
		case "identityfile", "certificatefile":
			m[k] = append(m[k], v)
		case "userknownhostsfile":
			m[k] = strings.Fields(v)
		default:
			m[k] = []string{v}
		}
	}
	return m
}

// hostsLookup resolves names the way glibc's files backend reads
// hostsFile: an exact (case-insensitive) name; the canonical name is the
// first name of the line.
func hostsLookup(t *testing.T, hostsFile string) remote.HostLookup {
	data, err := os.ReadFile(hostsFile)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(f) < 2 {
			continue
		}
		for _, n := range f[1:] {
			if _, ok := names[strings.ToLower(n)]; !ok {
				names[strings.ToLower(n)] = strings.TrimSuffix(f[1], ".")
			}
		}
	}
	return func(name string) (string, bool) {
		c, ok := names[strings.ToLower(name)]
		return c, ok
	}
}

// writeConf copies conf with TESTDATA replaced by the testdata folder and
// HOMEDIR by home; it returns its path and the aliases of its header.
func writeConf(t *testing.T, conf, home string) (path string, hosts, fails []string) {
	t.Helper()
	abs, _ := filepath.Abs("testdata/ssh_config")
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(raw), "TESTDATA", abs), "HOMEDIR", home)
	path = filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "# hosts:"):
			hosts = strings.Fields(strings.TrimPrefix(line, "# hosts:"))
		case strings.HasPrefix(line, "# fails:"):
			fails = strings.Fields(strings.TrimPrefix(line, "# fails:"))
		}
	}
	return path, hosts, fails
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	_ = filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return os.WriteFile(target, b, 0o600)
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
