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
// # Systemd hosts
//
// [Options.Systemd] adds hosts s01.. whose PID 1 is systemd, for the code
// paths that only run under systemd (the helper's transient revert timer).
// Each is a systemd-nspawn container (--boot, --register=no, --keep-unit)
// joined to its own lab netns, booted from a Debian 12 root that
// [EnsureSystemdRootfs] builds once per machine with mmdebstrap (or
// debootstrap) into a cache folder ($LIFELINE_LAB_ROOTFS_CACHE, default
// /var/cache/lifeline-lab/bookworm-systemd/KEY, KEY a hash of the package
// list and a version). The container's root is an overlay whose lower layer
// is that cache (never written) and whose upper layer is
// DIR/hosts/NAME/root: the host's keys, sshd_config, hostname, machine-id,
// lab key and persisted /etc/nftables.conf (loaded by nftables.service at
// boot). The overlay is mounted in a private mount namespace that
// systemd-nspawn runs in, so it vanishes with the container. The host's
// addresses are set in its netns before the first boot and outlive reboots.
// Backend nft, user root, label init: systemd in the inventory.
// [Lab.Exec] enters all of the container's namespaces, StopSSHD and
// StartSSHD use systemctl, Crash kills the container's PID 1, Boot starts
// the container again on the same overlay, and [Lab.Reboot] runs
// `systemctl reboot` and boots it again (nspawn does not restart it).
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
