package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// PythonWith returns a python3 that imports every module named (e.g.
// "numpy"), or ends the test through Missing (a failure under CI, a skip
// locally) saying which Debian package to install.
func PythonWith(tb testing.TB, modules ...string) string {
	tb.Helper()
	imp := "import " + strings.Join(append([]string{"sys"}, modules...), ", ")
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", imp).Run() == nil {
			return p
		}
	}
	pkgs := make([]string, len(modules))
	for i, m := range modules {
		pkgs[i] = "python3-" + m
	}
	Missing(tb, "no python3 that can %q (apt-get install -y python3 %s)", imp, strings.Join(pkgs, " "))
	return ""
}
