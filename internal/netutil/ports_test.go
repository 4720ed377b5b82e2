package netutil

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeLoopbackAddrs(t *testing.T) {
	low := ephemeralLow()
	for _, network := range []string{"udp", "tcp"} {
		addrs, err := FreeLoopbackAddrs(network, 5)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, a := range addrs {
			host, port, err := net.SplitHostPort(a)
			if err != nil || host != "127.0.0.1" || seen[a] {
				t.Fatalf("%s addresses %v: %q is not a distinct loopback address", network, addrs, a)
			}
			seen[a] = true
			if p, _ := strconv.Atoi(port); p >= low {
				t.Errorf("%s port %d is in the ephemeral range (from %d)", network, p, low)
			}
		}
		// Released: the caller can bind each one.
		for _, a := range addrs {
			var err error
			if network == "udp" {
				var c net.PacketConn
				if c, err = net.ListenPacket("udp", a); err == nil {
					c.Close()
				}
			} else {
				var l net.Listener
				if l, err = net.Listen("tcp", a); err == nil {
					l.Close()
				}
			}
			if err != nil {
				t.Errorf("binding %s %s: %v", network, a, err)
			}
		}
	}
	if _, err := FreeLoopbackAddrs("ip", 1); err == nil {
		t.Error("network ip accepted")
	}
}
