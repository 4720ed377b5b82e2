package testutil

import (
	"testing"

	"github.com/fedge/fedge/internal/netutil"
)

// FreeUDPAddrs reserves n distinct loopback UDP addresses and releases them
// for the caller to bind (tests start coordinators on them, and restart a
// killed one on the same address). It is netutil.FreeLoopbackAddrs for
// tests: it fails the test instead of returning an error.
func FreeUDPAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	addrs, err := netutil.FreeLoopbackAddrs("udp", n)
	if err != nil {
		tb.Fatal(err)
	}
	return addrs
}
