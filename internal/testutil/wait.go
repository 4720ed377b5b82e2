package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/wait"
)

// WaitFor polls cond (wait.Until) until it holds and returns how long that
// took; it fails the test, naming what it waited for, when timeout passes
// first.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	if err := wait.Until(context.Background(), timeout, cond); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
	return time.Since(start)
}
