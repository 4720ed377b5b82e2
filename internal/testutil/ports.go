package testutil

import (
	"net"
	"testing"
)

// FreeUDPAddrs reserves n distinct loopback UDP addresses and releases them
// for the caller to bind (tests start coordinators on them).
func FreeUDPAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	out := make([]string, 0, n)
	conns := make([]net.PacketConn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
		out = append(out, c.LocalAddr().String())
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}
