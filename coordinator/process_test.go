package coordinator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
)

// nodeProcessEnv carries a coordinator.Config (JSON) to a copy of the test
// binary that runs that node as a process of its own: a test can then
// kill it with SIGKILL, as an operator's kill -9 or a power loss would,
// and read its resident memory alone.
const nodeProcessEnv = "FEDGE_TEST_NODE_PROCESS"

func TestMain(m *testing.M) {
	if spec := os.Getenv(nodeProcessEnv); spec != "" {
		os.Exit(runNodeProcess(spec))
	}
	os.Exit(m.Run())
}

// runNodeProcess runs one node until its standard input closes (the test
// ended it, or died).
func runNodeProcess(spec string) int {
	var cfg coordinator.Config
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "node process:", err)
		return 2
	}
	cfg.Raft = coordinator.LoopbackRaftTimings
	cfg.Logger = testLogger()
	n, err := coordinator.NewNode(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node process:", err)
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := n.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "node process: close:", err)
	}
	return 0
}

// nodeProcess is a coordinator running in a child process.
type nodeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// startNodeProcess starts cfg's node in a child process; it stops when
// the test ends.
func startNodeProcess(t *testing.T, cfg coordinator.Config) *nodeProcess {
	t.Helper()
	spec, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeProcessEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProcess{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(p.stop)
	return p
}

// kill ends the process with SIGKILL: no QUIC connection is closed.
func (p *nodeProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
	p.done <- nil // later stops return at once
}

// stop asks the node to close cleanly, and kills it after 15 s.
func (p *nodeProcess) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.done <- nil
}

// rss returns the process's resident memory in bytes (Linux /proc).
func (p *nodeProcess) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the node's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}
