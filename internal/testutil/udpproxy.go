package testutil

import (
	"testing"

	"github.com/fedge/fedge/internal/netutil"
)

// UDPProxy is netutil.UDPProxy: a loopback UDP relay that can drop every
// datagram on demand.
type UDPProxy = netutil.UDPProxy

// NewUDPProxy listens on listen (host:port) and relays to upstream. It
// stops at the end of the test.
func NewUDPProxy(tb testing.TB, listen, upstream string) *UDPProxy {
	tb.Helper()
	p, err := netutil.NewUDPProxy(listen, upstream)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}
