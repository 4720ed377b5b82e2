package netutil

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
)

// ErrNoFreePort is returned when no free port was found in the range
// FreeLoopbackAddrs draws from.
var ErrNoFreePort = errors.New("netutil: no free loopback port")

// FreeLoopbackAddrs reserves n distinct 127.0.0.1 addresses of network
// ("udp" or "tcp") and releases them for the caller to bind. A caller may
// stop a process and start it again on the same address.
//
// The ports come from below the kernel's ephemeral range: a port the kernel
// hands out for outgoing sockets could be taken, between a coordinator's
// death and its restart, by an agent's redial, and the restart would fail
// with "address already in use".
func FreeLoopbackAddrs(network string, n int) ([]string, error) {
	if network != "udp" && network != "tcp" {
		return nil, fmt.Errorf("netutil.FreeLoopbackAddrs: network %q is neither udp nor tcp", network)
	}
	lo, hi := 20000, ephemeralLow()-1
	if hi-lo < 1000 {
		lo = 1024
	}
	out := make([]string, 0, n)
	held := make([]io.Closer, 0, n)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 10_000 {
			return nil, fmt.Errorf("netutil.FreeLoopbackAddrs: %w for %s in [%d, %d]", ErrNoFreePort, network, lo, hi)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo+1))
		var c io.Closer
		var err error
		if network == "udp" {
			c, err = net.ListenPacket("udp", addr)
		} else {
			c, err = net.Listen("tcp", addr)
		}
		if err != nil {
			continue // taken; try another
		}
		held = append(held, c)
		out = append(out, addr)
	}
	return out, nil
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
