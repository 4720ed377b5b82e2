package fedge_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/fedge/fedge"

type pkgInfo struct {
	ImportPath   string
	Dir          string
	Name         string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkgInfo
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 8 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// TestPackagesHaveDocGo fails when a package has no doc.go carrying its
// package comment.
func TestPackagesHaveDocGo(t *testing.T) {
	for _, p := range listPackages(t) {
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, "doc.go"), nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s: no doc.go: %v", p.ImportPath, err)
			continue
		}
		if f.Doc == nil || len(strings.TrimSpace(f.Doc.Text())) < 20 {
			t.Errorf("%s: doc.go has no package comment saying what the package is for", p.ImportPath)
		}
	}
}

// layer returns the top-level area of a module import path ("tensor",
// "crypto", "protocol", "agent", "coordinator", "internal", "cmd",
// "examples"), or "" for imports outside the module.
func layer(path string) string {
	if path != module && !strings.HasPrefix(path, module+"/") {
		return ""
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// allowed lists, for each area, the module areas its non-test code may
// import. It is DESIGN.md's arrow diagram.
var allowed = map[string][]string{
	"tensor":      {"tensor"},
	"crypto":      {"crypto"},
	"protocol":    {"protocol", "crypto", "tensor"},
	"coordinator": {"coordinator", "protocol", "crypto", "tensor", "internal"},
	"agent":       {"agent", "protocol", "crypto", "tensor", "internal"},
	"internal":    {"internal", "agent", "coordinator", "protocol", "crypto", "tensor"},
	"cmd":         {"cmd", "agent", "coordinator", "protocol", "crypto", "tensor", "internal"},
	"examples":    {"examples", "agent", "coordinator", "protocol", "crypto", "tensor", "internal"},
}

func allows(from, to string) bool {
	for _, a := range allowed[from] {
		if a == to {
			return true
		}
	}
	return false
}

// TestImportDirections fails when an import points against DESIGN.md's
// arrows: tensor and crypto import nothing of the module, agent and
// coordinator never import each other, nothing imports cmd or examples.
func TestImportDirections(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.ImportPath == module {
			continue // this test's own package
		}
		from := layer(p.ImportPath)
		if _, ok := allowed[from]; !ok {
			t.Errorf("%s: package outside the areas DESIGN.md names", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			to := layer(imp)
			if to == "" {
				continue
			}
			if !allows(from, to) {
				t.Errorf("%s imports %s: %s may not import %s", p.ImportPath, imp, from, to)
			}
			if (from == "coordinator" || from == "agent") && strings.HasPrefix(imp, module+"/internal/testcluster") {
				t.Errorf("%s imports the test harness %s", p.ImportPath, imp)
			}
			// Test helpers serve tests and the test harness only; programs
			// locate data through internal/mnist.
			if imp == module+"/internal/testutil" && p.ImportPath != module+"/internal/testcluster" {
				t.Errorf("%s imports the test helper package %s", p.ImportPath, imp)
			}
		}
		// Tests may also use internal/testutil anywhere, and the harnesses in
		// internal/ where the code under test sits above the leaves.
		for _, imp := range append(append([]string(nil), p.TestImports...), p.XTestImports...) {
			to := layer(imp)
			if to == "" || allows(from, to) || imp == module+"/internal/testutil" {
				continue
			}
			if to == "internal" && (from == "protocol" || from == "coordinator" || from == "agent") {
				continue
			}
			if to == from {
				continue
			}
			t.Errorf("%s test imports %s: %s may not import %s", p.ImportPath, imp, from, to)
		}
	}
}

// TestLayerRulesCatchViolations guards the guard: the rules must reject the
// imports DESIGN.md forbids.
func TestLayerRulesCatchViolations(t *testing.T) {
	bad := [][2]string{
		{"tensor", "crypto"}, {"crypto", "tensor"}, {"tensor", "protocol"},
		{"agent", "coordinator"}, {"coordinator", "agent"}, {"protocol", "agent"},
		{"crypto", "protocol"}, {"tensor", "cmd"}, {"coordinator", "examples"},
	}
	for _, b := range bad {
		if allows(b[0], b[1]) {
			t.Errorf("rules allow %s -> %s", b[0], b[1])
		}
	}
}

// TestAPIPackageIsLight: a Go program that imports only coordinator/api
// (examples/api-client) links neither Raft nor bbolt.
func TestAPIPackageIsLight(t *testing.T) {
	for _, pkg := range []string{module + "/coordinator/api", module + "/examples/api-client"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/hashicorp/raft") || strings.HasPrefix(dep, "go.etcd.io/bbolt") || dep == module+"/coordinator" {
				t.Errorf("%s pulls in %s", pkg, dep)
			}
		}
	}
}

// TestOneSecAggServer: the coordinator's round engine and the agent's
// tests run SecAgg+ rounds through the one stage driver below both
// (protocol/stagedriver), so the agent is tested against the server steps
// the coordinator runs, not a copy of them.
func TestOneSecAggServer(t *testing.T) {
	driver := module + "/protocol/stagedriver"
	for _, p := range listPackages(t) {
		var imports []string
		switch p.ImportPath {
		case module + "/coordinator":
			imports = p.Imports
		case module + "/agent":
			imports = p.TestImports
		default:
			continue
		}
		found := false
		for _, imp := range imports {
			found = found || imp == driver
		}
		if !found {
			t.Errorf("%s does not run its SecAgg+ rounds through %s", p.ImportPath, driver)
		}
	}
}
