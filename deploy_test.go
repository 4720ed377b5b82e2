package fedge_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
)

// TestSystemdUnitVerifies runs `systemd-analyze verify` on
// deploy/fedge-agent.service (with ExecStart pointed at an executable that
// exists here), and checks that the README's install steps are the unit's.
// It needs systemd-analyze: missing, it fails under CI and skips locally.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("deploy", "fedge-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The README's steps create what the unit expects.
	for _, step := range []string{
		"useradd --system --no-create-home --shell /usr/sbin/nologin fedge",
		"install -d -m 0750 -o root -g fedge /etc/fedge",
		"install -m 0640 -o root -g fedge deploy/agent.json /etc/fedge/agent.json",
		"install -m 0644 deploy/fedge-agent.service /etc/systemd/system/",
	} {
		if !strings.Contains(string(readme), step) {
			t.Errorf("README lacks the install step %q", step)
		}
	}
	for _, want := range []string{"User=fedge\n", "StateDirectory=fedge-agent\n", "ProtectSystem=strict\n", "ExecStart=/usr/local/bin/fedge agent -config /etc/fedge/agent.json\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}

	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testutil.Missing(t, "systemd-analyze is not installed (apt-get install systemd; .ci/run does)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fedge-agent.service")
	body := strings.ReplaceAll(string(unit), "/usr/local/bin/fedge", exe)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
