package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Ansible oracle: for every inventory under testdata/ansible-oracle/
// (real-world shapes: Kubespray's sample and its OpenStack bastion output,
// k3s-ansible, Ansible's documentation examples, a terraform-rendered
// file, group priorities and ssh args in every place), lifeline's host set
// must be ansible-inventory's, and every host's connection — destination,
// user, port, jump or proxy, identity file, host-key policy, become — must
// be what Ansible's own ssh connection would run, or lifeline must refuse
// the host naming the setting it cannot carry.
//
// Ansible's ssh command line is taken from Ansible itself with no network:
// `ansible all -m raw` runs with ansible_ssh_executable set to a script
// that prints the argv it was given and exits, so nothing is dialed.

var oracleInventories = []string{
	"kubespray/inventory.ini",
	"openstack-bastion/hosts",
	"k3s/inventory.yml",
	"docs/hosts",
	"terraform/hosts",
	"priorities/inventory.yaml",
}

const fakeSSH = `#!/usr/bin/python3
import json, sys
print("ORACLE-ARGV " + json.dumps(sys.argv[1:]))
`

func requireAnsible(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ansible", "ansible-inventory", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: the Ansible oracle test needs it: apt-get install ansible (scripts/deps.sh installs it)", tool)
		}
	}
}

// ansibleEnv isolates Ansible from the machine's configuration.
func ansibleEnv(t *testing.T, dir, home string) []string {
	cfg := filepath.Join(dir, "ansible.cfg")
	if err := os.WriteFile(cfg, []byte("[defaults]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(),
		"HOME="+home, "ANSIBLE_CONFIG="+cfg,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"), "ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(dir, "cp"),
		"ANSIBLE_STDOUT_CALLBACK=json", "ANSIBLE_LOAD_CALLBACK_PLUGINS=1", "ANSIBLE_FORKS=8", "ANSIBLE_NOCOLOR=1")
}

func runAnsible(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && name == "ansible-inventory" {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return out
}

// oracleHost is one host as Ansible sees it.
type oracleHost struct {
	vars map[string]any
	argv []string // nil: Ansible did not run ssh (ansible_connection=local, ...)
}

func ansibleOracle(t *testing.T, inv, home string) map[string]*oracleHost {
	dir := t.TempDir()
	env := ansibleEnv(t, dir, home)
	var list struct {
		Meta struct {
			Hostvars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
	}
	out := runAnsible(t, env, "ansible-inventory", "-i", inv, "--list")
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, out)
	}
	// hostvars holds only the hosts that have vars: the groups list all.
	var groups map[string]struct {
		Hosts []string `json:"hosts"`
	}
	if err := json.Unmarshal(out, &groups); err != nil {
		t.Fatalf("ansible-inventory --list: %v", err)
	}
	hosts := map[string]*oracleHost{}
	for g, members := range groups {
		for _, name := range members.Hosts {
			if g != "_meta" {
				hosts[name] = &oracleHost{vars: list.Meta.Hostvars[name]}
			}
		}
	}
	fake := filepath.Join(dir, "fake-ssh")
	if err := os.WriteFile(fake, []byte(fakeSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	// become is left out: it does not change ssh's command line, and the
	// fake cannot answer a become prompt.
	out = runAnsible(t, env, "ansible", "all", "-i", inv, "-m", "raw", "-a", "true",
		"-e", "ansible_ssh_executable="+fake, "-e", "ansible_become=false")
	var res struct {
		Plays []struct {
			Tasks []struct {
				Hosts map[string]struct {
					Stdout string `json:"stdout"`
				} `json:"hosts"`
			} `json:"tasks"`
		} `json:"plays"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Plays) != 1 || len(res.Plays[0].Tasks) != 1 {
		t.Fatalf("ansible -m raw: %v\n%s", err, out)
	}
	for name, r := range res.Plays[0].Tasks[0].Hosts {
		_, line, ok := strings.Cut(r.Stdout, "ORACLE-ARGV ")
		if !ok {
			continue
		}
		line, _, _ = strings.Cut(line, "\n")
		var argv []string
		if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &argv); err != nil {
			t.Fatalf("%s: fake ssh output %q: %v", name, r.Stdout, err)
		}
		if h := hosts[name]; h != nil {
			h.argv = argv
		}
	}
	return hosts
}

// sshView is the connection an ssh command line makes, read the way ssh
// reads it (first value wins): written here again, independently of
// lifeline's reader, from ssh(1) and ssh_config(5).
type sshView struct {
	dest, user, port, identity, proxy string
	hostKey                           []string // StrictHostKeyChecking=..., UserKnownHostsFile=...
	configFile                        string
}

func readSSHArgv(argv []string) sshView {
	var v sshView
	takes := "BbcDEeFIiJLlmOopQRSWw"
	var words []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "-") {
			words = argv[i:]
			break
		}
		f := a[1]
		arg := a[2:]
		if strings.IndexByte(takes, f) >= 0 && arg == "" && i+1 < len(argv) {
			i++
			arg = argv[i]
		} else if strings.IndexByte(takes, f) < 0 {
			continue // -C, -q, -tt, -vvv
		}
		key, val := "", arg
		switch f {
		case 'o':
			k, rest, _ := strings.Cut(arg, "=")
			key, val = strings.ToLower(strings.TrimSpace(k)), strings.Trim(strings.TrimSpace(rest), `"`)
		case 'p':
			key = "port"
		case 'l':
			key = "user"
		case 'i':
			key = "identityfile"
		case 'J':
			key = "proxyjump"
		case 'F':
			key = "-f"
		}
		switch key {
		case "port":
			if v.port == "" {
				v.port = val
			}
		case "user":
			if v.user == "" {
				v.user = val
			}
		case "identityfile":
			if v.identity == "" {
				v.identity = val
			}
		case "proxyjump", "proxycommand":
			if v.proxy == "" {
				v.proxy = key + " " + val
			}
		case "stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile":
			v.hostKey = append(v.hostKey, key+"="+val)
		case "-f":
			v.configFile = val
		}
	}
	if len(words) >= 2 {
		v.dest = words[len(words)-2] // DEST then the command
	}
	return v
}

// jumpOfProxyCommand reads "ssh [-q] [-p P] [-l U] -W %h:%p [user@]host"
// (the shapes in the oracle inventories) as a jump spec, "" for others.
func jumpOfProxyCommand(cmd string) string {
	w := strings.Fields(strings.NewReplacer(`"`, "", `'`, "").Replace(cmd))
	if len(w) == 0 || filepath.Base(w[0]) != "ssh" {
		return ""
	}
	var dest, user, port string
	for i := 1; i < len(w); i++ {
		switch w[i] {
		case "-q":
		case "-W":
			i++
		case "-p":
			i++
			port = w[i]
		case "-l":
			i++
			user = w[i]
		default:
			if strings.HasPrefix(w[i], "-") || dest != "" {
				return ""
			}
			dest = w[i]
		}
	}
	if user != "" {
		dest = user + "@" + dest
	}
	if port != "" {
		dest += ":" + port
	}
	return dest
}

func TestAnsibleOracle(t *testing.T) {
	requireAnsible(t)
	home := filepath.Join(t.TempDir(), "home")
	total, refused := 0, 0
	for _, rel := range oracleInventories {
		t.Run(rel, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("testdata", "ansible-oracle", rel))
			if err != nil {
				t.Fatal(err)
			}
			oracle := ansibleOracle(t, path, home)
			inv, err := Load(path)
			if err != nil {
				t.Fatalf("lifeline cannot load what Ansible loads: %v", err)
			}
			var ours, theirs []string
			for _, h := range inv.Hosts {
				ours = append(ours, h.Name)
			}
			for name := range oracle {
				theirs = append(theirs, name)
			}
			sort.Strings(ours)
			sort.Strings(theirs)
			if strings.Join(ours, " ") != strings.Join(theirs, " ") {
				t.Fatalf("host set:\nlifeline %v\nansible  %v", ours, theirs)
			}
			for _, h := range inv.Hosts {
				total++
				o := oracle[h.Name]
				refusal := strings.Join(h.Unsupported, "\n")
				if refusal != "" {
					refused++
					t.Logf("%s refused: %s", h.Name, refusal)
				}
				// check compares one setting: equal, or named in a refusal.
				check := func(what, ours, ansible string, names ...string) {
					t.Helper()
					if ours == ansible {
						return
					}
					for _, n := range names {
						if strings.Contains(refusal, n) {
							return
						}
					}
					t.Errorf("%s: %s: lifeline %q, Ansible %q (and no refusal names %v)", h.Name, what, ours, ansible, names)
				}
				conn, _ := o.vars["ansible_connection"].(string)
				if o.argv == nil {
					check("connection", h.Connection, conn, "ansible_connection")
					if conn == "" || conn == "ssh" {
						t.Errorf("%s: Ansible ran no ssh for it (connection %q)", h.Name, conn)
					}
					continue
				}
				v := readSSHArgv(o.argv)
				check("destination (what ssh_config Host blocks match)", h.SSHAlias, v.dest, "ansible_host")
				check("user", h.User, v.user, "ansible_user", "User=")
				port := ""
				if h.Port != 0 {
					port = strconv.Itoa(h.Port)
				}
				check("port", port, v.port, "Port=")
				id := strings.Replace(h.IdentityFile, "~", home, 1)
				check("identity file", id, v.identity, "identity file")
				var proxy string
				switch {
				case h.Jump != "":
					proxy = "jump " + h.Jump
				case h.ProxyCommand != "":
					proxy = "proxycommand " + h.ProxyCommand
				}
				want := v.proxy
				if cmd, ok := strings.CutPrefix(v.proxy, "proxycommand "); ok {
					if j := jumpOfProxyCommand(cmd); j != "" {
						want = "jump " + j
					}
				} else if j, ok := strings.CutPrefix(v.proxy, "proxyjump "); ok {
					want = "jump " + j
				}
				check("jump/proxy", proxy, want, "ProxyCommand", "ProxyJump")
				for _, hk := range v.hostKey {
					key, val, _ := strings.Cut(hk, "=")
					found := false
					for _, opt := range h.SSHOptions {
						if strings.EqualFold(opt.Key, key) && opt.Value == val {
							found = true
						}
					}
					if !found && !strings.Contains(strings.ToLower(refusal), key) {
						t.Errorf("%s: Ansible's ssh has -o %s, lifeline neither carries nor refuses it", h.Name, hk)
					}
				}
				if v.configFile != "" && !strings.Contains(refusal, "-F "+v.configFile) {
					t.Errorf("%s: Ansible's ssh has -F %s, lifeline does not refuse it", h.Name, v.configFile)
				}
				// become, from the inventory's vars (the fake ssh ran without it).
				if b, _ := o.vars["ansible_become"].(bool); b {
					method, _ := o.vars["ansible_become_method"].(string)
					if method == "" {
						method = "sudo"
					}
					if user, _ := o.vars["ansible_become_user"].(string); user != "" && user != "root" {
						method += ":" + user
					}
					check("become", h.Become, method, "ansible_become_method", "ansible_become_user")
				} else if h.Become != "" {
					t.Errorf("%s: lifeline becomes %q, Ansible does not become", h.Name, h.Become)
				}
			}
		})
	}
	t.Logf("%d hosts compared with Ansible, %d refused by name", total, refused)
}
