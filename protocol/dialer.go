package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
)

// Dialer opens client sessions from one UDP socket of its own: QUIC tells
// connections apart by their connection IDs, so many sessions (a process
// simulating a fleet of agents) share the socket instead of holding one
// each. A Dialer accepts no incoming connections.
type Dialer struct {
	udp *net.UDPConn
	tr  *quic.Transport
}

// NewDialer binds a UDP socket on addr ("127.0.0.1:0", or ":0" for every
// interface) for the sessions it will dial.
func NewDialer(addr string) (*Dialer, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("protocol.NewDialer: %w", err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("protocol.NewDialer: %w", err)
	}
	return &Dialer{udp: udp, tr: &quic.Transport{Conn: udp}}, nil
}

// Dial opens a session from the Dialer's socket (see the package-level
// Dial).
func (d *Dialer) Dial(ctx context.Context, addr string, tlsConf *tls.Config, alpn string, cfg *Config) (*Session, error) {
	return dialSession(ctx, addr, tlsConf, alpn, cfg, d.tr)
}

// LocalAddr returns the socket's bound address.
func (d *Dialer) LocalAddr() net.Addr { return d.udp.LocalAddr() }

// Close closes every connection dialed from the Dialer and its socket.
func (d *Dialer) Close() error {
	err := d.tr.Close()
	if uerr := d.udp.Close(); err == nil && !errors.Is(uerr, net.ErrClosed) {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("protocol.Dialer.Close: %w", err)
	}
	return nil
}
