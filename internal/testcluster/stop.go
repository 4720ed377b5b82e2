package testcluster

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// stopBound is how long stopping a node, or the whole cluster, may take.
// Nothing in a stop waits on the network, so it takes milliseconds; a stop
// that hangs is a bug that would hang a real process's shutdown.
const stopBound = 30 * time.Second

// within runs stop (a node's or the cluster's stop) and, if it has not
// returned within stopBound, writes the stacks of fedge's goroutines to
// stderr — the stuck stop's own last, so that the tail of a CI log shows
// where it waits — and exits the test binary: the hung stop would
// otherwise hold it until go test's timeout, whose dump of every goroutine
// buries that stack.
func within(what string, stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	select {
	case <-done:
		return
	case <-time.After(stopBound):
	}
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var stuck string
	var b strings.Builder
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "testcluster.within.func1"):
			stuck = g
		case strings.Contains(g, "github.com/fedge/fedge/") && !strings.Contains(g, "netutil.(*UDPProxy)"):
			b.WriteString(g)
			b.WriteString("\n\n")
		}
	}
	fmt.Fprintf(os.Stderr, "testcluster: the goroutines of fedge while %s hangs:\n\n%s", what, b.String())
	fmt.Fprintf(os.Stderr, "testcluster: %s did not return within %v; it waits here:\n%s\n", what, stopBound, stuck)
	os.Exit(1)
}
