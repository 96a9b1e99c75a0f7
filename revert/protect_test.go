package revert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProtectedFiles: begin snapshots the protected files (one that exists,
// one that does not), a revert restores both (content and mode; the new
// one removed) after the firewall and then runs the on-revert commands in
// order; a confirm leaves the files as the change made them.
func TestProtectedFiles(t *testing.T) {
	for _, confirm := range []bool{false, true} {
		h := newHarness(t)
		dir := t.TempDir()
		conf, fresh, marker := filepath.Join(dir, "sshd_config"), filepath.Join(dir, "new.conf"), filepath.Join(dir, "ran")
		if err := os.WriteFile(conf, []byte("Port 22\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		req := beginReq("tx1")
		req.Begin.Change = Change{Kind: ChangeGuarded, Protect: []string{conf, fresh},
			OnRevert: []string{"echo one >> " + marker, "false", "echo two >> " + marker}}
		b := h.mustOK(h.do(VerbBegin, req), StateArmed)
		h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
		// the operator's commands
		h.fw.S.Live[FormatNft] = newRules
		if err := os.WriteFile(conf, []byte("Port 2222\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fresh, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if confirm {
			h.mustOK(h.do(VerbConfirm, &Request{TxID: "tx1", Token: b.Begin.Token}), StateConfirmed)
			if got, _ := os.ReadFile(conf); string(got) != "Port 2222\n" {
				t.Fatalf("confirmed, but %s is %q", conf, got)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("a confirm ran the on-revert commands")
			}
			continue
		}
		h.armer.kill("tx1")
		rep := h.mustOK(h.do(VerbRevert, &Request{TxID: "tx1"}), StateReverted)
		if rep.Verified == nil || !*rep.Verified {
			t.Fatalf("revert not verified")
		}
		got, _ := os.ReadFile(conf)
		fi, _ := os.Stat(conf)
		if string(got) != "Port 22\n" || fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s after the revert: %q %v, want %q 0640", conf, got, fi.Mode(), "Port 22\n")
		}
		if _, err := os.Stat(fresh); !os.IsNotExist(err) {
			t.Fatalf("%s did not exist at begin but survived the revert: %v", fresh, err)
		}
		if m, _ := os.ReadFile(marker); string(m) != "one\ntwo\n" {
			t.Fatalf("on-revert commands ran as %q, want one then two (a failing one does not stop the next)", m)
		}
		if h.live() != oldRules {
			t.Fatalf("firewall not restored")
		}
		st := h.do(VerbStatus, &Request{TxID: "tx1"})
		if strings.Join(st.Protect, ",") != conf+","+fresh {
			t.Errorf("status protect %v", st.Protect)
		}
	}
}

// TestProtectRefusals: what cannot be protected refuses the begin with
// nothing written.
func TestProtectRefusals(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	_ = os.Symlink("/etc/hostname", link)
	big := filepath.Join(dir, "big")
	_ = os.WriteFile(big, make([]byte, MaxProtectSize+1), 0o600)
	for _, tc := range []struct {
		name  string
		paths []string
		code  string
	}{
		{"relative", []string{"etc/passwd"}, CodeBadRequest},
		{"dot-dot", []string{"/etc/../etc/passwd"}, CodeBadRequest},
		{"twice", []string{"/etc/a", "/etc/a"}, CodeBadRequest},
		{"a kernel setting", []string{"/proc/sys/net/ipv4/ip_forward"}, CodeBadRequest},
		{"a device", []string{"/dev/null"}, CodeBadRequest},
		{"symlink", []string{link}, CodeSnapshot},
		{"folder", []string{dir}, CodeSnapshot},
		{"too big", []string{big}, CodeSnapshot},
	} {
		h := newHarness(t)
		req := beginReq("tx1")
		req.Begin.Change.Protect = tc.paths
		rep := h.do(VerbBegin, req)
		if code(rep) != tc.code || rep.State == StateArmed {
			t.Errorf("%s: %s %v, want refused %s", tc.name, rep.State, rep.Error, tc.code)
		}
		if h.armer.armed() != 0 {
			t.Errorf("%s: a timer was armed", tc.name)
		}
	}
}

// TestSettleSeesChangedFiles: a tx left applied with its timer dead, whose
// firewall equals the snapshot but whose protected file changed, is not
// quietly marked reverted by the next begin: it needs recovery.
func TestSettleSeesChangedFiles(t *testing.T) {
	h := newHarness(t)
	conf := filepath.Join(t.TempDir(), "conf")
	_ = os.WriteFile(conf, []byte("a\n"), 0o600)
	req := beginReq("tx1")
	req.Begin.Change = Change{Kind: ChangeGuarded, Protect: []string{conf}}
	h.mustOK(h.do(VerbBegin, req), StateArmed)
	h.mustOK(h.do(VerbStage, &Request{TxID: "tx1"}), StateApplied)
	_ = os.WriteFile(conf, []byte("b\n"), 0o600)
	h.armer.kill("tx1")
	h.fw.S.Guard = nil
	if rep := h.do(VerbBegin, beginReq("tx2")); code(rep) != CodeNeedsRecovery || !strings.Contains(rep.Error.Message, conf) {
		t.Fatalf("begin over a changed protected file: %v, want %s naming it", rep.Error, CodeNeedsRecovery)
	}
}
