package coordinator

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedge/fedge/protocol"
)

// quicStreamLayer carries Raft over the node's QUIC listener: incoming
// raft streams arrive on the fedge-raft/1 ALPN (only coordinator
// certificates are accepted there) and outgoing ones are dialed from the
// same UDP socket.
type quicStreamLayer struct {
	net.Listener
	ln        *protocol.Listener
	tls       *tls.Config
	advertise net.Addr
}

var _ raft.StreamLayer = (*quicStreamLayer)(nil)

func newQUICStreamLayer(ln *protocol.Listener, clientTLS *tls.Config, advertise string) (*quicStreamLayer, error) {
	inner, err := ln.ListenStreams(protocol.ALPNRaft)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", advertise)
	if err != nil {
		inner.Close()
		return nil, err
	}
	return &quicStreamLayer{Listener: inner, ln: ln, tls: clientTLS, advertise: addr}, nil
}

// Dial opens a raft stream to another coordinator.
func (l *quicStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.ln.DialStream(ctx, string(addr), l.tls, protocol.ALPNRaft)
}

// Addr is the address peers reach this node at.
func (l *quicStreamLayer) Addr() net.Addr { return l.advertise }
