// Package netutil holds fedge's one free-port helper: FreeLoopbackAddrs
// reserves loopback addresses for coordinators and agents started on one
// machine. The demo (`fedge dev`), the fault suite, the examples and,
// through internal/testutil.FreeUDPAddrs, the tests all take their
// addresses from it. UDPProxy relays UDP on loopback and can drop every
// datagram, so a node started in-process can vanish from the network as a
// killed process would.
package netutil
