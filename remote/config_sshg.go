package remote

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The `ssh -G` fallback: when the config uses what the library cannot
// read, OpenSSH itself resolves the host.

func (d *Dialer) resolveSSHG(t Target, files []string, explicit bool) (*HostConfig, error) {
	args := []string{"-G"}
	if explicit {
		switch len(files) {
		case 0:
			args = append(args, "-F", "/dev/null")
		case 1:
			args = append(args, "-F", files[0])
		default:
			// ssh takes one -F: chain the files through Includes.
			tmp, err := os.CreateTemp("", "lifeline-ssh-config-*")
			if err != nil {
				return nil, err
			}
			defer os.Remove(tmp.Name())
			for _, f := range files {
				abs, _ := filepath.Abs(f)
				fmt.Fprintf(tmp, "Include %s\n", abs)
			}
			tmp.Close()
			args = append(args, "-F", tmp.Name())
		}
	}
	if t.User != "" {
		args = append(args, "-l", t.User)
	}
	if t.Port != 0 {
		args = append(args, "-p", strconv.Itoa(t.Port))
	}
	args = append(args, "--", t.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return parseSSHG(t.Name, out)
}

// parseSSHG reads `ssh -G` output.
func parseSSHG(alias string, out []byte) (*HostConfig, error) {
	hc := &HostConfig{Alias: alias, Resolver: ResolverSSHG, ServerAliveCountMax: 3}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), " ")
		var err error
		switch key {
		case "hostname":
			hc.HostName = val
		case "user":
			hc.User = val
		case "port":
			hc.Port, err = strconv.Atoi(val)
		case "identityfile":
			hc.IdentityFiles = append(hc.IdentityFiles, val)
		case "identitiesonly":
			hc.IdentitiesOnly = yes(val)
		case "proxyjump":
			hc.ProxyJump = splitJump(val)
		case "connecttimeout":
			if val != "none" {
				var n int
				n, err = strconv.Atoi(val)
				hc.ConnectTimeout = time.Duration(n) * time.Second
			}
		case "serveraliveinterval":
			var n int
			n, err = strconv.Atoi(val)
			hc.ServerAliveInterval = time.Duration(n) * time.Second
		case "serveralivecountmax":
			hc.ServerAliveCountMax, err = strconv.Atoi(val)
		case "stricthostkeychecking":
			hc.StrictHostKeyChecking = normStrict(val)
		case "userknownhostsfile":
			hc.UserKnownHostsFiles = strings.Fields(val)
		case "globalknownhostsfile":
			hc.GlobalKnownHostsFiles = strings.Fields(val)
		case "hostkeyalias":
			hc.HostKeyAlias = val
		}
		if err != nil {
			return nil, fmt.Errorf("ssh -G: bad %s %q", key, val)
		}
	}
	if hc.HostName == "" || hc.Port == 0 {
		return nil, fmt.Errorf("ssh -G printed no hostname/port")
	}
	return hc, nil
}
