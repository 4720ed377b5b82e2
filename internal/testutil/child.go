package testutil

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// StartChild runs this test binary again as a child process that runs
// only the test named test (which acts as the child when it finds its
// environment variable among env, "NAME=value"). It waits for the child's
// first line on standard output and returns the process and that line,
// trimmed; the rest of its output is discarded, its standard error goes to
// the test's. The child is killed, if still running, when the test ends.
func StartChild(tb testing.TB, test string, env ...string) (*exec.Cmd, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		tb.Fatalf("child %s said %q, %v", test, line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	return cmd, strings.TrimSpace(line)
}
