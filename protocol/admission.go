package protocol

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// Default admission bounds. A connection without a verified certificate
// can make the listener buffer up to a connection flow-control window
// (DefaultMaxConnWindow's initial value, 768 KiB) before anything reads
// it, so DefaultMaxUnverified such connections cost at most ~48 MiB.
const (
	// DefaultMaxUnverified bounds the connections in the handshake or on
	// ALPNEnroll, in total.
	DefaultMaxUnverified = 64
	// DefaultMaxUnverifiedPerSource bounds them per source IP address.
	DefaultMaxUnverifiedPerSource = 16
	// DefaultEnrollMaxFrame bounds a frame's body on ALPNEnroll (8 KiB):
	// an EnrollRequest with a join token, an Ed25519 CSR and the most
	// labels identity allows takes under 5 KiB.
	DefaultEnrollMaxFrame = 8 << 10
)

// ErrAdmission is the reason a listener refuses a new connection when its
// admission bounds are reached; the client sees a QUIC CONNECTION_REFUSED
// and should retry later.
var ErrAdmission = errors.New("protocol: too many connections without a verified certificate")

// Admission bounds what clients without a verified certificate may hold on
// a Listener: connections still in the QUIC/TLS handshake, and enrollment
// sessions (ALPNEnroll), whose peers never show a certificate. A
// connection counts from its first packet until it presents a verified
// certificate on a certificate ALPN, or closes; beyond the bounds new
// connections are refused (QUIC CONNECTION_REFUSED). Once half of
// MaxUnverified is in use, clients must also prove their source address
// (a QUIC Retry) before they count, so spoofed packets cannot hold places.
// The zero value means the documented defaults.
type Admission struct {
	// MaxUnverified bounds such connections in total. If zero,
	// DefaultMaxUnverified.
	MaxUnverified int `json:"max_unverified,omitempty"`
	// MaxUnverifiedPerSource bounds them per source IP address. If zero,
	// DefaultMaxUnverifiedPerSource.
	MaxUnverifiedPerSource int `json:"max_unverified_per_source,omitempty"`
	// EnrollMaxFrame bounds one frame's body on ALPNEnroll sessions, in
	// both directions. If zero, DefaultEnrollMaxFrame.
	EnrollMaxFrame int `json:"enroll_max_frame,omitempty"`
}

// withDefaults fills zero (or negative) fields.
func (a Admission) withDefaults() Admission {
	if a.MaxUnverified <= 0 {
		a.MaxUnverified = DefaultMaxUnverified
	}
	if a.MaxUnverifiedPerSource <= 0 {
		a.MaxUnverifiedPerSource = DefaultMaxUnverifiedPerSource
	}
	if a.EnrollMaxFrame <= 0 {
		a.EnrollMaxFrame = DefaultEnrollMaxFrame
	}
	return a
}

// admitter counts the unverified connections of one listener.
type admitter struct {
	max, perSource int

	mu      sync.Mutex
	total   int
	bySrc   map[netip.Addr]int
	refused atomic.Int64
}

func newAdmitter(a Admission) *admitter {
	return &admitter{max: a.MaxUnverified, perSource: a.MaxUnverifiedPerSource, bySrc: make(map[netip.Addr]int)}
}

// ticket is one admitted connection's place, given back once.
type ticket struct {
	a    *admitter
	src  netip.Addr
	once sync.Once
}

type ticketKey struct{}

// sourceOf returns the IP of a UDP address (IPv4-mapped IPv6 unmapped).
func sourceOf(a net.Addr) netip.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ua.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// connContext is quic.Transport.ConnContext: it admits a new incoming
// connection or refuses it, and ties the place to the connection's life.
func (a *admitter) connContext(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	src := sourceOf(ci.RemoteAddr)
	a.mu.Lock()
	if a.total >= a.max || a.bySrc[src] >= a.perSource {
		a.mu.Unlock()
		a.refused.Add(1)
		return nil, ErrAdmission
	}
	a.total++
	a.bySrc[src]++
	a.mu.Unlock()
	t := &ticket{a: a, src: src}
	ctx = context.WithValue(ctx, ticketKey{}, t)
	context.AfterFunc(ctx, t.release)
	return ctx, nil
}

// underPressure is quic.Transport.VerifySourceAddress: past half the total
// bound, clients prove their address before they take a place.
func (a *admitter) underPressure(net.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total >= a.max/2
}

// release gives the place back (once).
func (t *ticket) release() {
	t.once.Do(func() {
		a := t.a
		a.mu.Lock()
		a.total--
		if a.bySrc[t.src]--; a.bySrc[t.src] <= 0 {
			delete(a.bySrc, t.src)
		}
		a.mu.Unlock()
	})
}

// releaseVerified gives back the place of a connection whose peer showed a
// verified certificate.
func releaseVerified(conn *quic.Conn) {
	if t, ok := conn.Context().Value(ticketKey{}).(*ticket); ok {
		t.release()
	}
}

// counts returns the unverified connections in total and from src.
func (a *admitter) counts(src netip.Addr) (total, fromSrc int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total, a.bySrc[src]
}
