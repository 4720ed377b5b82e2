package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// streamPreamble is the first byte of every raw stream. QUIC makes a stream
// visible to the peer only once data flows, so the dialer writes it at once
// and Accept returns even when the server is the first to speak.
const streamPreamble byte = 0xF5

// streamLinger bounds how long a StreamConn that owns its QUIC connection
// waits, after Close, for the peer to finish before the connection closes.
const streamLinger = 3 * time.Second

// StreamConn is a net.Conn over one bidirectional QUIC stream, for
// protocols that want a plain byte stream (hashicorp/raft's StreamLayer).
// Close finishes the write side (the peer reads EOF after the last byte)
// and stops reading; if the StreamConn owns its connection (package-level
// DialStream) the connection closes once the peer finished or after a
// short linger.
type StreamConn struct {
	str   *quic.Stream
	conn  *quic.Conn
	owned bool
	// heard, if set, records when a byte last arrived (unix ns) for the
	// listener's cache of dialed connections (see replaceDialed).
	heard *atomic.Int64

	rmu, wmu sync.Mutex
	closed   atomic.Bool
	once     sync.Once
}

var _ net.Conn = (*StreamConn)(nil)

func newStreamConn(conn *quic.Conn, str *quic.Stream, owned bool) *StreamConn {
	return &StreamConn{str: str, conn: conn, owned: owned}
}

// Read implements net.Conn.
func (c *StreamConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.str.Read(p)
	if n > 0 && c.heard != nil {
		c.heard.Store(time.Now().UnixNano())
	}
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	if err != nil && peerClosedCleanly(err) {
		// The peer closed its connection in order (it stopped): for the
		// reader that is the end of the stream, as a TCP FIN would be.
		err = io.EOF
	}
	return n, err
}

// peerClosedCleanly reports whether err is the peer closing the QUIC
// connection with an orderly code (CloseNormal or CloseShutdown).
func peerClosedCleanly(err error) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote && (ae.ErrorCode == CloseNormal || ae.ErrorCode == CloseShutdown)
}

// Write implements net.Conn.
func (c *StreamConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.str.Write(p)
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

// Close implements net.Conn. It is safe to call more than once and
// concurrently with Read and Write, which then fail with net.ErrClosed.
func (c *StreamConn) Close() error {
	var err error
	c.once.Do(func() {
		c.closed.Store(true)
		now := time.Now()
		// Unblock a pending Write, then finish the stream: the bytes
		// already written are still delivered, followed by EOF.
		_ = c.str.SetWriteDeadline(now)
		c.wmu.Lock()
		// If the peer already stopped reading (it closed first), there is
		// nothing left to finish.
		if c.str.Context().Err() == nil {
			err = c.str.Close()
		}
		c.wmu.Unlock()
		if !c.owned {
			c.str.CancelRead(0)
			return
		}
		_ = c.str.SetReadDeadline(now)
		go func() {
			// The connection is ours: keep it until the peer has read
			// everything and finished its side, so closing it does not
			// discard data in flight.
			c.rmu.Lock()
			_ = c.str.SetReadDeadline(time.Now().Add(streamLinger))
			_, _ = io.Copy(io.Discard, c.str)
			c.rmu.Unlock()
			_ = c.conn.CloseWithError(CloseNormal, "")
		}()
	})
	return err
}

// LocalAddr implements net.Conn.
func (c *StreamConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *StreamConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *StreamConn) SetDeadline(t time.Time) error { return c.str.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *StreamConn) SetReadDeadline(t time.Time) error { return c.str.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *StreamConn) SetWriteDeadline(t time.Time) error { return c.str.SetWriteDeadline(t) }

// ConnectionState returns the TLS state of the underlying connection, so a
// server can check which peer opened the stream.
func (c *StreamConn) ConnectionState() tls.ConnectionState { return c.conn.ConnectionState().TLS }

// abort resets the stream without the orderly close.
func (c *StreamConn) abort() {
	c.closed.Store(true)
	c.str.CancelRead(streamAborted)
	c.str.CancelWrite(streamAborted)
}

// streamListener is the net.Listener of one raw-stream ALPN.
type streamListener struct {
	l      *Listener
	alpn   string
	ch     chan *StreamConn
	ctx    context.Context
	cancel context.CancelFunc
}

var _ net.Listener = (*streamListener)(nil)

// ListenStreams registers a raw-stream ALPN (ALPNRaft) and returns the
// net.Listener whose Accept yields one StreamConn per stream that peers
// open on connections of that ALPN, dialed with DialStream. Closing it
// unregisters the ALPN and closes the streams not yet accepted.
func (l *Listener) ListenStreams(alpn string) (net.Listener, error) {
	if alpn == "" || alpn == ALPNEnroll {
		return nil, fmt.Errorf("protocol.Listener.ListenStreams: ALPN %q cannot carry raw streams", alpn)
	}
	sl := &streamListener{l: l, alpn: alpn, ch: make(chan *StreamConn)}
	sl.ctx, sl.cancel = context.WithCancel(l.ctx)
	if err := l.addRoute(alpn, route{streams: sl}); err != nil {
		sl.cancel()
		return nil, err
	}
	return sl, nil
}

// Accept implements net.Listener.
func (sl *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-sl.ch:
		return c, nil
	case <-sl.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (sl *streamListener) Close() error {
	sl.l.mu.Lock()
	if r, ok := sl.l.routes[sl.alpn]; ok && r.streams == sl {
		delete(sl.l.routes, sl.alpn)
	}
	sl.l.mu.Unlock()
	sl.cancel()
	return nil
}

// Addr implements net.Listener.
func (sl *streamListener) Addr() net.Addr { return sl.l.Addr() }

// serveConn accepts the streams of one connection until it or the
// listener closes.
func (sl *streamListener) serveConn(conn *quic.Conn) {
	stop := context.AfterFunc(sl.ctx, func() { _ = conn.CloseWithError(CloseShutdown, "stream listener closed") })
	defer stop()
	for {
		str, err := conn.AcceptStream(conn.Context())
		if err != nil {
			return
		}
		go sl.admit(conn, str)
	}
}

// admit checks a stream's preamble and hands it to Accept.
func (sl *streamListener) admit(conn *quic.Conn, str *quic.Stream) {
	sc := newStreamConn(conn, str, false)
	var pre [1]byte
	_ = str.SetReadDeadline(time.Now().Add(sl.l.cfg.HandshakeTimeout))
	if _, err := io.ReadFull(str, pre[:]); err != nil || pre[0] != streamPreamble {
		sc.abort()
		return
	}
	_ = str.SetReadDeadline(time.Time{})
	select {
	case sl.ch <- sc:
	case <-sl.ctx.Done():
		sc.abort()
	}
}

// openStream opens a stream on conn and writes the preamble.
func openStream(ctx context.Context, conn *quic.Conn, owned bool) (*StreamConn, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := str.Write([]byte{streamPreamble}); err != nil {
		str.CancelWrite(streamAborted)
		return nil, err
	}
	return newStreamConn(conn, str, owned), nil
}

// DialStream opens a raw stream to a ListenStreams listener at addr on a
// connection of its own (closed with the StreamConn). tlsConf is the
// client configuration with the caller's certificate.
func DialStream(ctx context.Context, addr string, tlsConf *tls.Config, alpn string) (net.Conn, error) {
	c := (*Config)(nil).withDefaults()
	conn, err := dialConn(ctx, addr, tlsConf, alpn, &c, nil)
	if err != nil {
		return nil, fmt.Errorf("protocol.DialStream %s: %w", addr, err)
	}
	sc, err := openStream(ctx, conn, true)
	if err != nil {
		_ = conn.CloseWithError(CloseNormal, "")
		return nil, fmt.Errorf("protocol.DialStream %s: %w", addr, err)
	}
	return sc, nil
}

// dialEntry caches one outgoing connection per (ALPN, address).
type dialEntry struct {
	alpn string
	mu   sync.Mutex
	conn *quic.Conn
	// heard is when the peer last proved alive on conn (the handshake,
	// then every byte read on its streams), unix ns.
	heard atomic.Int64
}

// replaceQuiet is how long a dialed connection must have heard nothing
// from its peer before a new incoming connection from that peer replaces
// it. A live peer answers Raft's traffic many times a second; without
// this, two live nodes dialing each other at once (an election) would
// close each other's connections over and over.
const replaceQuiet = time.Second

// DialStream opens a raw stream to addr from the listener's UDP port,
// reusing one QUIC connection per (alpn, addr) for every stream (the
// tls.Config of the call that dialed it applies). It suits Raft, which
// opens and closes streams often: only the first costs a handshake. The
// connection uses Config.StreamKeepAlivePeriod and StreamMaxIdleTimeout,
// and a connection the peer opens to this listener on the same ALPN
// replaces it (see replaceDialed).
func (l *Listener) DialStream(ctx context.Context, addr string, tlsConf *tls.Config, alpn string) (net.Conn, error) {
	key := alpn + " " + addr
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("protocol.Listener.DialStream: %w", ErrClosed)
	}
	e := l.dials[key]
	if e == nil {
		e = &dialEntry{alpn: alpn}
		l.dials[key] = e
	}
	l.mu.Unlock()

	// A dial in progress holds the entry's lock, and Close takes it to close
	// the entry's connection: the listener's end aborts the dial, so Close
	// does not wait for the handshake timeout of a peer that vanished.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	cfg := l.cfg.streamConfig()
	for attempt := 0; ; attempt++ {
		e.mu.Lock()
		if e.conn == nil || e.conn.Context().Err() != nil {
			conn, err := dialConn(ctx, addr, tlsConf, alpn, &cfg, l.tr)
			if err != nil {
				e.mu.Unlock()
				return nil, fmt.Errorf("protocol.Listener.DialStream %s: %w", addr, err)
			}
			e.conn = conn
			e.heard.Store(time.Now().UnixNano())
		}
		conn := e.conn
		e.mu.Unlock()
		sc, err := openStream(ctx, conn, false)
		if err == nil {
			sc.heard = &e.heard
			return sc, nil
		}
		// A cached connection may have died since; redial once.
		if attempt > 0 || ctx.Err() != nil || conn.Context().Err() == nil {
			return nil, fmt.Errorf("protocol.Listener.DialStream %s: %w", addr, err)
		}
	}
}

// replaceDialed closes the cached outgoing connections of alpn to the peer
// that just opened in, a new incoming connection: the same peer is the same
// UDP address or the same certificate key. A peer that opens a new
// connection has restarted, or lost its own; a process killed without
// closing its connections (kill -9) never answers on the old one, and
// until its idle timeout passed everything sent there would be lost. The
// next DialStream dials the peer anew. A connection that heard from its
// peer within replaceQuiet is alive and stays.
func (l *Listener) replaceDialed(alpn string, in *quic.Conn) {
	l.mu.Lock()
	entries := make([]*dialEntry, 0, len(l.dials))
	for _, e := range l.dials {
		if e.alpn == alpn {
			entries = append(entries, e)
		}
	}
	l.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		old := e.conn
		quiet := time.Since(time.Unix(0, e.heard.Load())) > replaceQuiet
		if old != nil && old != in && quiet && samePeer(old, in) {
			e.conn = nil
		} else {
			old = nil
		}
		e.mu.Unlock()
		if old != nil {
			l.log.Debug("a new connection from the peer replaces the one dialed to it", "peer", in.RemoteAddr().String(), "alpn", alpn)
			_ = old.CloseWithError(CloseNormal, "replaced by a newer connection")
		}
	}
}

// samePeer reports whether two connections reach the same peer: the same
// UDP address, or a leaf certificate with the same public key.
func samePeer(a, b *quic.Conn) bool {
	if a.RemoteAddr().String() == b.RemoteAddr().String() {
		return true
	}
	pa, pb := a.ConnectionState().TLS.PeerCertificates, b.ConnectionState().TLS.PeerCertificates
	return len(pa) > 0 && len(pb) > 0 && bytes.Equal(pa[0].RawSubjectPublicKeyInfo, pb[0].RawSubjectPublicKeyInfo)
}

// closeDials closes the cached outgoing connections.
func (l *Listener) closeDials() {
	l.mu.Lock()
	entries := make([]*dialEntry, 0, len(l.dials))
	for _, e := range l.dials {
		entries = append(entries, e)
	}
	l.dials = make(map[string]*dialEntry)
	l.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		if e.conn != nil {
			_ = e.conn.CloseWithError(CloseShutdown, "")
		}
		e.mu.Unlock()
	}
}
