package inventory

import (
	"reflect"
	"strings"
	"testing"
)

// TestSplitWords pins how Ansible's ssh arguments and INI host lines are
// split: Python's shlex.split (posix=True, comments=False), which Ansible
// uses; every case was checked against python3's shlex.split.
func TestSplitWords(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  string
	}{
		{name: "empty", in: "", want: []string{}},
		{name: "blanks", in: " \t\n ", want: []string{}},
		{name: "plain words", in: "-o  StrictHostKeyChecking=no\t-J b", want: []string{"-o", "StrictHostKeyChecking=no", "-J", "b"}},
		{name: "single quotes", in: `-o 'ProxyJump bastion'`, want: []string{"-o", "ProxyJump bastion"}},
		{name: "single quotes keep backslashes and double quotes", in: `'a\b "c"'`, want: []string{`a\b "c"`}},
		{name: "double quotes", in: `-o "ProxyJump bastion"`, want: []string{"-o", "ProxyJump bastion"}},
		{name: "double quotes keep single quotes", in: `"it's"`, want: []string{"it's"}},
		{name: "escaped double quote and backslash in double quotes", in: `"a\"b\\c"`, want: []string{`a"b\c`}},
		{name: "quotes join a word", in: `Proxy"Jump="'b1'`, want: []string{"ProxyJump=b1"}},
		{name: "empty quotes are a word", in: `a '' ""`, want: []string{"a", "", ""}},
		{name: "backslash escapes a blank", in: `a\ b c`, want: []string{"a b", "c"}},
		{name: "backslash escapes a quote", in: `\'a`, want: []string{"'a"}},
		{name: "proxycommand", in: `-o ProxyCommand="ssh -W %h:%p bastion"`, want: []string{"-o", "ProxyCommand=ssh -W %h:%p bastion"}},
		{name: "proxycommand in single quotes", in: `-o 'ProxyCommand=ssh -W %h:%p -q user@bastion'`, want: []string{"-o", "ProxyCommand=ssh -W %h:%p -q user@bastion"}},
		{name: "nested quotes in a proxycommand", in: `-o ProxyCommand="ssh -o 'User=a b' -W %h:%p bastion"`, want: []string{"-o", "ProxyCommand=ssh -o 'User=a b' -W %h:%p bastion"}},
		{name: "hash inside a word", in: "a#b", want: []string{"a#b"}},
		{name: "hash quoted", in: `a "#b" '#c'`, want: []string{"a", "#b", "#c"}},
		{name: "non-ASCII", in: "-o 'ProxyJump=bästion'", want: []string{"-o", "ProxyJump=bästion"}},
		// Where github.com/google/shlex, used before, was not Python's shlex.split.
		{name: "a word starting with hash is no comment", in: "a #b c", want: []string{"a", "#b", "c"}},
		{name: "backslash in double quotes escapes only quote and backslash", in: `"a\$b\nc"`, want: []string{`a\$b\nc`}},
		// Errors.
		{name: "unterminated double quote", in: `-o "ProxyJump=b`, wantErr: `unterminated quote in "-o \"ProxyJump=b": close it`},
		{name: "unterminated single quote", in: `-o 'ProxyJump=b`, wantErr: `unterminated quote in "-o 'ProxyJump=b": close it`},
		{name: "unterminated after an escaped quote", in: `"a\"`, wantErr: "unterminated quote"},
		{name: "trailing backslash", in: `-J b\`, wantErr: `"-J b\\" ends with a backslash`},
		{name: "trailing backslash in double quotes", in: `"b\`, wantErr: "ends with a backslash"},
		{name: "invalid UTF-8", in: "-J b\xff", wantErr: `"-J b\xff" is not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitWords(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("splitWords(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("splitWords(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("splitWords(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestSSHArgsErrors: arguments that cannot be split stop the load with an
// error naming the file, the line, the host and the variable.
func TestSSHArgsErrors(t *testing.T) {
	tests := []struct {
		name, file, text, want string
	}{
		{
			name: "ini common args, unterminated double quote",
			file: "/i/hosts",
			text: "[web]\nw1\n[web:vars]\nansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p bastion'\n",
			want: `/i/hosts:4: host w1: ansible_ssh_common_args: unterminated quote in "-o ProxyCommand=\"ssh -W %h:%p bastion": close it`,
		},
		{
			name: "ansible yaml extra args, unterminated single quote",
			file: "/i/inv.yml",
			text: "all:\n  hosts:\n    h1:\n      ansible_ssh_extra_args: \"-o 'ProxyJump=b\"\n",
			want: `/i/inv.yml:4: host h1: ansible_ssh_extra_args: unterminated quote in "-o 'ProxyJump=b": close it`,
		},
		{
			name: "unterminated quote inside the proxycommand",
			file: "/i/inv.yml",
			text: "all:\n  hosts:\n    h1:\n      ansible_ssh_common_args: >-\n        -o ProxyCommand=\"ssh -o 'User=a -W %h:%p b\"\n",
			want: `/i/inv.yml:4: host h1: ansible_ssh_common_args: unterminated quote in "ssh -o 'User=a -W %h:%p b": close it`,
		},
		{
			name: "trailing backslash",
			file: "/i/inv.yml",
			text: "all:\n  hosts:\n    h1:\n      ansible_ssh_common_args: '-J b\\'\n",
			want: `/i/inv.yml:4: host h1: ansible_ssh_common_args: "-J b\\" ends with a backslash: remove it or double it`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.file, []byte(tt.text))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\nwant    %q", err, tt.want)
			}
		})
	}
}
