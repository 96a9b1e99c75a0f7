package revert

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// backendFiles are the files that may branch on a ruleset format or a
// backend name: the backend implementations and the selection of the
// backend for a format. Everything else delegates to a backend.
var backendFiles = []string{
	"fw_backend.go",       // the backend interface, host facts, backendFor, formatFits, backendOffers, loadError
	"fw_backend_nft.go",   // native nft
	"fw_backend_ipt.go",   // iptables / ip6tables, legacy and nft modes
	"fw_backend_block.go", // block sets: nft table or ipsets + iptables chain
	"fw_nft.go",           // nft text: scan, build, normalise
	"fw_iptables.go",      // iptables-save text: parse, build, normalise
	"fw_netlink.go",       // nft over netlink
	"fake.go",             // the stateful fake models its own backends
	"wire.go",             // type aliases of package wire (the Format constants)
}

// branchAllowedFuncs are functions outside backendFiles that may branch
// (none: keep it that way).
var branchAllowedFuncs = map[string][]string{}

var (
	formatIdents = []string{"FormatNft", "FormatIPTables", "FormatIP6Tables"}
	backendLits  = []string{"nft", "iptables", "ip6tables", "iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy"}
)

// backendLit reports whether a string literal names a format or backend
// (or a prefix of one, like "iptables-").
func backendLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	if err != nil {
		return "", false
	}
	if slices.Contains(backendLits, s) || slices.Contains(backendLits, strings.TrimSuffix(s, "-")) {
		return s, true
	}
	return "", false
}

// backendBranches returns where file names a format constant, or compares,
// switches on or tests with strings.HasPrefix-like calls a backend or
// format name, outside the functions allowed.
func backendBranches(fset *token.FileSet, file *ast.File, allowed []string) []string {
	var out []string
	report := func(n ast.Node, what string) {
		out = append(out, fset.Position(n.Pos()).String()+": "+what)
	}
	for _, decl := range file.Decls {
		if fd, ok := decl.(*ast.FuncDecl); ok && slices.Contains(allowed, fd.Name.Name) {
			continue
		}
		ast.Inspect(decl, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Ident:
				if slices.Contains(formatIdents, n.Name) {
					report(n, n.Name)
				}
			case *ast.BinaryExpr:
				if n.Op == token.EQL || n.Op == token.NEQ {
					for _, side := range []ast.Expr{n.X, n.Y} {
						if s, ok := backendLit(side); ok {
							report(n, "comparison with "+strconv.Quote(s))
						}
					}
				}
			case *ast.CaseClause:
				for _, e := range n.List {
					if s, ok := backendLit(e); ok {
						report(e, "switch case "+strconv.Quote(s))
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					break
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "strings" {
					break
				}
				switch sel.Sel.Name {
				case "HasPrefix", "HasSuffix", "Contains", "EqualFold", "Compare", "CutPrefix", "CutSuffix", "TrimPrefix", "TrimSuffix":
					for _, a := range n.Args {
						if s, ok := backendLit(a); ok {
							report(n, "strings."+sel.Sel.Name+" with "+strconv.Quote(s))
						}
					}
				}
			}
			return true
		})
	}
	return out
}

// TestNoBackendBranches: outside the backend files, nothing branches on a
// ruleset format or a backend name; those files delegate to a backend.
func TestNoBackendBranches(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || slices.Contains(backendFiles, name) {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, b := range backendBranches(fset, file, branchAllowedFuncs[name]) {
			t.Errorf("%s outside the backend files: move the branch into a backend (fw_backend*.go)", b)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d files checked", checked)
	}
}

// TestBackendBranchesCatches checks the checker on code that branches.
func TestBackendBranchesCatches(t *testing.T) {
	src := `package revert

func x(f Format, b string) bool {
	switch b {
	case "iptables-legacy":
	}
	return f == FormatNft || b == "nft" || strings.HasPrefix(b, "ip6tables-") || b == "ip"
}

func allowed(b string) bool { return b == "nft" }
`
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := backendBranches(fset, file, []string{"allowed"})
	want := []string{
		`x.go:5:7: switch case "iptables-legacy"`,
		`x.go:7:14: FormatNft`,
		`x.go:7:27: comparison with "nft"`,
		`x.go:7:41: strings.HasPrefix with "ip6tables-"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFileSizes: no non-test Go file of the package exceeds 600 lines;
// split a bigger one by concern.
func TestFileSizes(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n > 600 {
			t.Errorf("%s has %d lines, more than 600: split it by concern", name, n)
		}
	}
}
