package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreeUDPAddrs reserves n distinct loopback UDP addresses and releases them
// for the caller to bind (tests start coordinators on them, and restart a
// killed one on the same address).
//
// The ports come from below the kernel's ephemeral range: a port the
// kernel hands out for outgoing sockets could be taken, between a
// coordinator's death and its restart, by an agent's redial, and the
// restart would fail with "address already in use".
func FreeUDPAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	lo, hi := 20000, ephemeralLow()-1
	if hi-lo < 1000 {
		lo = 1024
	}
	out := make([]string, 0, n)
	conns := make([]net.PacketConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 10_000 {
			tb.Fatalf("testutil.FreeUDPAddrs: no free UDP port in [%d, %d]", lo, hi)
		}
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo+1)))
		if err != nil {
			continue // taken; try another
		}
		conns = append(conns, c)
		out = append(out, c.LocalAddr().String())
	}
	return out
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (Linux's ip_local_port_range), or 32768 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 1024 {
		return 32768
	}
	return lo
}
