// Package lab runs lifeline's disposable fleet of real SSH hosts on this
// machine: the demo and the test bed of every end-to-end test.
//
// # Hosts
//
// Each host is its own network namespace (named ll<ID>-hNN) plus a mount,
// uts and pid namespace whose PID 1 is a small init: the lifeline binary (or
// a test binary) re-executed with [InitEnv] set, which calls [RunInit]. The
// init mounts a fresh /proc and /sys, an overlay on /etc (upper layer in
// DIR/hosts/NAME/etc), tmpfs on /run, /tmp, /home, /root and /var/log, binds
// DIR/hosts/NAME/lib on /var/lib/lifeline, loads the host's persisted
// firewall (a reboot boots the persisted config), starts a real OpenSSH sshd
// as its child and reaps every zombie. It restarts nothing by itself.
//
// Every host has its own host keys (ed25519 and ecdsa; the machine's keys are
// shadowed or whited out in the overlay), root logs in with the lab key, and
// the user ops (uid 1500) logs in with the same key and has passwordless
// sudo. The firewall backend of a host is chosen through its own
// /etc/alternatives: nft, iptables-nft or iptables-legacy.
//
// # Network
//
// The lab ID is the first 6 hex digits of sha256(absolute DIR). The lab
// bridge llb<ID> in the root namespace carries a /24 from 198.18.0.0/16 and a
// ULA /64; each front host has a veth llv<ID><n> on it (eth0 inside). h01 and
// h02 are also on a back network (a bridge in the switch namespace
// ll<ID>-sw, a /24 from 198.19.0.0/16); with 3 hosts or more the last host
// is reachable only there, on port 2222, through ProxyJump h01. h02 logs in
// as ops. The lab never runs iptables or nft in the root namespace.
//
// # Files in DIR
//
// id_ed25519 (+.pub), known_hosts, ssh_config, inventory.yaml (lifeline's
// inventory format), lab.json (the lab's state, read by [Load]) and hosts/
// (per-host overlays, logs and state).
//
// # Use from tests
//
// Other packages use [labtest.Start], which brings a lab up in a short
// temporary directory and takes it down in t.Cleanup. Their test binary or a
// built lifeline binary is the init ([Options.InitExe]); a test binary must
// dispatch to [RunInit] from TestMain when [InitEnv] is set:
//
//	func TestMain(m *testing.M) {
//		if os.Getenv(lab.InitEnv) != "" {
//			lab.RunInit()
//		}
//		os.Exit(m.Run())
//	}
//
// [labtest.Start]: https://pkg.go.dev/github.com/lifeline-dev/lifeline/internal/lab/labtest#Start
package lab
