package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTargetOptions: a target's ProxyCommand and Options act like ssh's -o
// options: read before the files, so they win; a keyword lifeline does not
// honour is refused by name; StrictHostKeyChecking no says what it costs.
func TestTargetOptions(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("Host web\n  HostName 10.0.0.5\n  User filesuser\n  Port 2222\n  ProxyJump bastion\n  UserKnownHostsFile /files/known\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := NewDialer(Options{ConfigFiles: []string{cfg}})
	tests := []struct {
		name    string
		t       Target
		check   func(*HostConfig) string
		wantErr string
	}{
		{"options win over the files", Target{Name: "web", Options: []string{"User optuser", "Port=2200", "UserKnownHostsFile /opt/known"}}, func(h *HostConfig) string {
			if h.User != "optuser" || h.Port != 2200 || len(h.UserKnownHostsFiles) != 1 || h.UserKnownHostsFiles[0] != "/opt/known" || h.HostName != "10.0.0.5" {
				return "options not applied"
			}
			return ""
		}, ""},
		{"a ProxyCommand replaces the files' ProxyJump", Target{Name: "web", ProxyCommand: "ssh -W %h:%p -i key -o StrictHostKeyChecking=no bastion"}, func(h *HostConfig) string {
			if len(h.ProxyJump) != 0 || h.ProxyCommand != "ssh -W %h:%p -i key -o StrictHostKeyChecking=no bastion" {
				return "proxy command not used"
			}
			return ""
		}, ""},
		{"a Jump wins over the target's ProxyCommand", Target{Name: "web", Jump: "other", ProxyCommand: "nc %h %p"}, func(h *HostConfig) string {
			if h.ProxyCommand != "" || len(h.ProxyJump) != 1 || h.ProxyJump[0] != "other" {
				return "jump not used"
			}
			return ""
		}, ""},
		{"StrictHostKeyChecking no is named", Target{Name: "web", Options: []string{"StrictHostKeyChecking no"}}, func(h *HostConfig) string {
			if !strings.Contains(strings.Join(h.Notes, "\n"), "weakens the guarantee") {
				return "no note"
			}
			return ""
		}, ""},
		{"an unknown keyword is refused", Target{Name: "web", Options: []string{"NoSuchOption yes"}}, nil, "NoSuchOption"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hc, err := d.Resolve(tc.t)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.wantErr)) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(hc); msg != "" {
				t.Fatalf("%s: %+v", msg, hc)
			}
		})
	}
}
