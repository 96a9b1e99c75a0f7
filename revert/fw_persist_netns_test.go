package revert

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue #13, against the real tools in a scratch network namespace (see
// fw_netns_test.go): Persist writes what the kernel holds, with a backup;
// rules the kernel refuses at commit time are named.

// withoutComments drops "#" lines: the save tools' timestamps, our header.
func withoutComments(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestPersistWritesKernelState(t *testing.T) {
	requireTools(t)
	cases := []struct {
		name    string
		format  Format
		setup   [][]string
		save    []string
		path    string
		ruleset string // comments, odd spacing, short options: not the save form
	}{
		{
			name: "nft", format: FormatNft, path: "/etc/nftables.conf",
			setup:   [][]string{{"iptables-nft", "-A", "INPUT", "-s", "198.51.100.9/32", "-j", "DROP"}},
			save:    []string{"nft", "list", "table", "inet", "filter"},
			ruleset: "# operator's notes\nflush ruleset\ntable   inet filter {\n  chain input { type filter hook input priority 0 ; policy drop ;\n    tcp dport {22,8080} accept   # ssh and web\n  }\n}\n",
		},
		{
			name: "iptables-nft", format: FormatIPTables, path: "/etc/iptables/rules.v4",
			setup:   dockerKubeSetup("iptables-nft"),
			save:    []string{"iptables-nft-save"},
			ruleset: "# operator's notes\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT   -p tcp --dport 22   -j ACCEPT\n-A INPUT -s 10.1.0.0/16 -j ACCEPT\nCOMMIT\n",
		},
		{
			name: "iptables-legacy", format: FormatIPTables, path: "/etc/iptables/rules.v4",
			setup:   dockerKubeSetup("iptables-legacy"),
			save:    []string{"iptables-legacy-save"},
			ruleset: "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT   -p tcp --dport 22   -j ACCEPT\nCOMMIT\n",
		},
		{
			name: "ip6tables-nft", format: FormatIP6Tables, path: "/etc/iptables/rules.v6",
			save:    []string{"ip6tables-nft-save"},
			ruleset: "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := testNetns(t)
			for _, c := range tc.setup {
				nsRun(t, ns, "", c...)
			}
			root := t.TempDir()
			fw := NewFirewall(FirewallOptions{Exec: nsExec(ns), NetNS: "/run/netns/" + ns, Log: t.Logf, Root: root})
			ctx := context.Background()
			if err := fw.Apply(ctx, tc.format, tc.ruleset, nil); err != nil {
				t.Fatalf("apply: %v", err)
			}
			full := filepath.Join(root, tc.path)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			const previous = "# the boot file before lifeline\n"
			if err := os.WriteFile(full, []byte(previous), 0o640); err != nil {
				t.Fatal(err)
			}
			files, err := fw.Persist(ctx, tc.format, tc.ruleset)
			if err != nil {
				t.Fatalf("persist: %v", err)
			}
			if want := []string{tc.path, tc.path + ".lifeline.bak"}; strings.Join(files, " ") != strings.Join(want, " ") {
				t.Errorf("persisted %v, want %v", files, want)
			}
			got, _ := os.ReadFile(full)
			if bak, err := os.ReadFile(full + ".lifeline.bak"); err != nil || string(bak) != previous {
				t.Errorf("backup: %q, %v; want the previous boot file", bak, err)
			}
			if st, _ := os.Stat(full); st == nil || st.Mode().Perm() != 0o640 {
				t.Errorf("mode of the boot file: %v, want the previous file's 0640", st)
			}
			if string(got) == tc.ruleset || strings.Contains(string(got), "operator's notes") {
				t.Errorf("persisted the operator's file, want the kernel's state:\n%s", got)
			}
			live := withoutComments(saveText(t, ns, tc.save...))
			if tc.format == FormatNft {
				if !strings.HasPrefix(string(got), "#!/usr/sbin/nft -f\n") || !strings.Contains(string(got), "table inet filter {}\ndelete table inet filter\n") {
					t.Errorf("nft boot file lacks its shebang or the replace idiom:\n%s", got)
				}
				if !strings.Contains(withoutComments(string(got)), live) {
					t.Errorf("nft boot file does not hold the live table:\n%s\nlive:\n%s", got, live)
				}
				if strings.Contains(string(got), "table ip filter") {
					t.Errorf("nft boot file holds iptables-nft's table:\n%s", got)
				}
				// it loads: into an empty namespace, as at boot
				boot := testNetns(t)
				nsRun(t, boot, string(got), "nft", "-f", "-")
				if again := withoutComments(saveText(t, boot, tc.save...)); again != live {
					t.Errorf("booted nft file differs from live:\n%s", unifiedDiff("live", "booted", live, again))
				}
				return
			}
			want := withoutComments(withoutForeign(saveText(t, ns, tc.save...), NewFirewall(FirewallOptions{}).(*hostFirewall).isForeign))
			if withoutComments(string(got)) != want {
				t.Errorf("boot file is not the live save output without foreign chains:\n%s", unifiedDiff("want", "got", want, withoutComments(string(got))))
			}
			if strings.Contains(string(got), "DOCKER") || strings.Contains(string(got), "KUBE-") {
				t.Errorf("boot file carries foreign chains:\n%s", got)
			}
			restore := strings.Replace(tc.save[0], "-save", "-restore", 1)
			boot := testNetns(t)
			nsRun(t, boot, string(got), restore)
		})
	}
	t.Run("sysconfig", func(t *testing.T) {
		ns := testNetns(t)
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "etc/sysconfig"), 0o755); err != nil {
			t.Fatal(err)
		}
		fw := NewFirewall(FirewallOptions{Exec: nsExec(ns), NetNS: "/run/netns/" + ns, Log: t.Logf, Root: root})
		files, err := fw.Persist(context.Background(), FormatIPTables, "")
		if err != nil || len(files) != 1 || files[0] != "/etc/sysconfig/iptables" {
			t.Errorf("RHEL-like host: %v %v, want [/etc/sysconfig/iptables]", files, err)
		}
	})
}

// Rules that pass every userspace check but that the kernel refuses when
// the table is committed: iptables-legacy-restore names only the COMMIT
// (which lifeline writes), iptables-nft-restore the rule with an errno and
// a blank first line. The error must name the operator's line.
func TestValidateNamesKernelRefusedRule(t *testing.T) {
	requireTools(t)
	for _, backend := range []string{"iptables-legacy", "iptables-nft"} {
		for _, bad := range []string{"-A INPUT -j REJECT --reject-with tcp-reset", "-A INPUT -p tcp -j DNAT --to-destination 192.0.2.1"} {
			t.Run(backend+"/"+strings.Fields(bad)[len(strings.Fields(bad))-3], func(t *testing.T) {
				ns := testNetns(t)
				nsRun(t, ns, "", backend, "-A", "INPUT", "-s", "198.51.100.1/32", "-j", "DROP") // selects the backend
				fw := newTestFirewall(t, ns)
				var b strings.Builder
				b.WriteString("# kernel-side failure\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:SSH - [0:0]\n")
				for i := range 9 {
					b.WriteString("-A INPUT -p tcp --dport " + string(rune('1'+i)) + "000 -j ACCEPT\n")
				}
				b.WriteString(bad + "\n") // line 15
				b.WriteString("-A INPUT -j SSH\n-A SSH -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
				err := fw.Validate(context.Background(), FormatIPTables, b.String())
				var fe *Error
				if !errors.As(err, &fe) || fe.Code != CodeInvalidRuleset {
					t.Fatalf("validate: %v, want %s", err, CodeInvalidRuleset)
				}
				t.Logf("error: %v", fe)
				if fe.Line != 15 || fe.Text != bad {
					t.Errorf("line %d %q, want 15 %q", fe.Line, fe.Text, bad)
				}
				if strings.Contains(fe.Message, "lifeline added") || !strings.Contains(fe.Message, "kernel") {
					t.Errorf("message %q: want the kernel's refusal, not a line lifeline added", fe.Message)
				}
				if iptBannerRE.MatchString(fe.Message) || strings.TrimSpace(fe.Message) == "" || strings.HasPrefix(fe.Message, "line ") {
					t.Errorf("message is only the tool's banner: %q", fe.Message)
				}
			})
		}
	}
}
