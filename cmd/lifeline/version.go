package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/lifeline-dev/lifeline/internal/helperbin"
	"github.com/spf13/cobra"
)

// version and commit are set at build time by `make build`
// (-ldflags "-X main.version=... -X main.commit=..."); a plain go build
// falls back to what the Go toolchain recorded (see versionInfo).
var (
	version = ""
	commit  = ""
)

func init() { subcommands = append(subcommands, newVersionCmd) }

// versionDoc is what `lifeline version --json` prints.
type versionDoc struct {
	Version string          `json:"version"`
	Commit  string          `json:"commit,omitempty"`
	Go      string          `json:"go"`
	OS      string          `json:"os"`
	Arch    string          `json:"arch"`
	Helpers []helperVersion `json:"helpers"`
}

// helperVersion is one embedded on-host helper: its sha256 is also its
// file name on the hosts (see internal/helperbin).
type helperVersion struct {
	Arch   string `json:"arch"`
	SHA256 string `json:"sha256,omitempty"`
	Size   int    `json:"size,omitempty"`
	Error  string `json:"error,omitempty"` // not embedded in this build
}

func versionInfo() versionDoc {
	d := versionDoc{Version: version, Commit: commit, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if d.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			d.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && d.Commit == "" {
				d.Commit = s.Value
			}
		}
	}
	if d.Version == "" {
		d.Version = "dev"
	}
	for _, arch := range []string{"amd64", "arm64"} {
		h, err := helperbin.Get(arch)
		if err != nil {
			d.Helpers = append(d.Helpers, helperVersion{Arch: arch, Error: err.Error()})
			continue
		}
		d.Helpers = append(d.Helpers, helperVersion{Arch: arch, SHA256: h.SHA256, Size: len(h.Data)})
	}
	return d
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print lifeline's version, commit, Go version and the embedded helpers' sha256",
		Long: `version prints what this lifeline binary is: its version and commit (set by
make build; "dev" for a plain go build), the Go toolchain that built it, and
for each embedded on-host helper (linux/amd64, linux/arm64) its sha256. The
helper's sha256 is also its file name on the hosts
(/var/lib/lifeline/bin/SHA256), so it tells which build last touched a host.
lifeline --version prints the same.`,
		Example: `  lifeline version
  lifeline --version
  lifeline version --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(g)
		},
	}
}

func printVersion(g *globals) error {
	d := versionInfo()
	return g.printer().Result(d, func(w io.Writer) error {
		fmt.Fprintf(w, "lifeline %s", d.Version)
		if d.Commit != "" {
			fmt.Fprintf(w, " (commit %s)", d.Commit)
		}
		fmt.Fprintf(w, " %s %s/%s\n", d.Go, d.OS, d.Arch)
		for _, h := range d.Helpers {
			if h.Error != "" {
				fmt.Fprintf(w, "helper linux/%s: not embedded (%s)\n", h.Arch, h.Error)
				continue
			}
			fmt.Fprintf(w, "helper linux/%s: sha256 %s (%d bytes)\n", h.Arch, h.SHA256, h.Size)
		}
		return nil
	})
}
