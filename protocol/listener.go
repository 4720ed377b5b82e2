package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// route is what one ALPN leads to: a session handler or a raw-stream
// listener.
type route struct {
	handler Handler
	streams *streamListener
}

// Listener accepts QUIC connections on one UDP port and dispatches them by
// negotiated ALPN to the handlers registered with Handle and the raw-stream
// listeners of ListenStreams. The TLS handshake refuses an ALPN nobody
// registered and, except on ALPNEnroll, a client without a certificate the
// caller's tls.Config verifies. Connections without a verified
// certificate are bounded by Config.Admission. The same UDP socket dials
// out (Dial, DialStream), so coordinators reach each other from their
// public port.
type Listener struct {
	udp  *net.UDPConn
	tr   *quic.Transport
	ln   *quic.Listener
	base *tls.Config
	cfg  Config
	log  *slog.Logger
	adm  *admitter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	routes   map[string]route
	conns    map[*quic.Conn]struct{}
	sessions map[*Session]struct{}
	dials    map[string]*dialEntry
	closed   bool

	closeOnce sync.Once
	closeErr  error
}

// Listen binds addr ("host:port", port 0 picks one) and prepares to serve
// QUIC. tlsConf is the server configuration: its certificate and, for every
// ALPN but ALPNEnroll, client authentication that requires and verifies a
// certificate (tls.RequireAndVerifyClientCert, or RequireAnyClientCert with
// a VerifyPeerCertificate or VerifyConnection callback). Its NextProtos are
// ignored: the registered ALPNs are offered. Register handlers, then call
// Serve.
func Listen(addr string, tlsConf *tls.Config, cfg *Config) (*Listener, error) {
	if tlsConf == nil {
		return nil, errors.New("protocol.Listen: nil tls.Config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("protocol.Listen: %w", err)
	}
	if tlsConf.GetConfigForClient == nil && !requiresClientCert(tlsConf) {
		return nil, fmt.Errorf("protocol.Listen: %w", ErrInsecureTLS)
	}
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("protocol.Listen: %w", err)
	}
	udp, err := net.ListenUDP("udp", uaddr)
	if err != nil {
		return nil, fmt.Errorf("protocol.Listen: %w", err)
	}
	c := cfg.withDefaults()
	adm := newAdmitter(c.Admission)
	l := &Listener{
		udp: udp, base: tlsConf.Clone(), cfg: c, log: c.Logger, adm: adm,
		tr:     &quic.Transport{Conn: udp, ConnContext: adm.connContext, VerifySourceAddress: adm.underPressure},
		routes: make(map[string]route), conns: make(map[*quic.Conn]struct{}),
		sessions: make(map[*Session]struct{}), dials: make(map[string]*dialEntry),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	serverTLS := &tls.Config{GetConfigForClient: l.configForClient}
	ln, err := l.tr.Listen(serverTLS, c.quicConfig())
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("protocol.Listen: %w", err)
	}
	l.ln = ln
	return l, nil
}

// requiresClientCert reports whether c makes the handshake fail without a
// verified client certificate.
func requiresClientCert(c *tls.Config) bool {
	switch c.ClientAuth {
	case tls.RequireAndVerifyClientCert:
		return c.ClientCAs != nil || c.VerifyPeerCertificate != nil || c.VerifyConnection != nil
	case tls.RequireAnyClientCert:
		return c.VerifyPeerCertificate != nil || c.VerifyConnection != nil
	}
	return false
}

// configForClient picks the TLS configuration for one ClientHello: the
// enrollment configuration (no client certificate) only when the client
// offers ALPNEnroll and no other registered ALPN; otherwise the caller's
// configuration with the certificate ALPNs. A client that offers no
// registered ALPN gets the caller's base configuration, whose ALPN list
// it does not match: crypto/tls then refuses it with the
// no_application_protocol alert (the caller's GetConfigForClient is not
// asked, since its error would reach the client as an internal_error).
func (l *Listener) configForClient(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	l.mu.Lock()
	_, enroll := l.routes[ALPNEnroll]
	var protos []string
	for alpn := range l.routes {
		if alpn != ALPNEnroll {
			protos = append(protos, alpn)
		}
	}
	l.mu.Unlock()
	slices.Sort(protos)
	offersOther := slices.ContainsFunc(chi.SupportedProtos, func(p string) bool { return slices.Contains(protos, p) })
	offersEnroll := enroll && slices.Contains(chi.SupportedProtos, ALPNEnroll)
	base := l.base
	if base.GetConfigForClient != nil && (offersOther || offersEnroll) {
		c, err := base.GetConfigForClient(chi)
		if err != nil {
			return nil, err
		}
		if c != nil {
			base = c
		}
	}
	c := base.Clone()
	c.GetConfigForClient = nil
	if offersEnroll && !offersOther {
		c.NextProtos = []string{ALPNEnroll}
		c.ClientAuth = tls.NoClientCert
		c.VerifyPeerCertificate = nil
		c.VerifyConnection = nil
		return c, nil
	}
	if !requiresClientCert(c) {
		return nil, ErrInsecureTLS
	}
	c.NextProtos = protos
	if len(protos) == 0 {
		// Nothing to negotiate: an empty list would let the handshake
		// go on without ALPN; name one nobody offers instead.
		c.NextProtos = []string{ALPNEnroll}
	}
	return c, nil
}

// Handle registers h for the session ALPN alpn (ALPNAgent, ALPNAdmin,
// ALPNEnroll). It may be called while serving; new handshakes see it.
func (l *Listener) Handle(alpn string, h Handler) error {
	if h == nil || alpn == "" {
		return errors.New("protocol.Listener.Handle: empty ALPN or nil handler")
	}
	return l.addRoute(alpn, route{handler: h})
}

func (l *Listener) addRoute(alpn string, r route) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("protocol.Listener: %w", ErrClosed)
	}
	if _, dup := l.routes[alpn]; dup {
		return fmt.Errorf("protocol.Listener: ALPN %q already registered", alpn)
	}
	l.routes[alpn] = r
	return nil
}

// Addr returns the bound UDP address.
func (l *Listener) Addr() net.Addr { return l.udp.LocalAddr() }

// Serve accepts connections until ctx ends or the listener is closed, then
// closes the listener. It returns nil after a Close or ctx end.
func (l *Listener) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	for {
		conn, err := l.ln.Accept(l.ctx)
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("protocol.Listener.Serve: %w", err)
		}
		if !l.track(conn) {
			_ = conn.CloseWithError(CloseShutdown, "shutting down")
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.untrack(conn)
			l.serveConn(conn)
		}()
	}
}

func (l *Listener) track(c *quic.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Listener) untrack(c *quic.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// serveConn authorizes a connection and hands it to its route.
func (l *Listener) serveConn(conn *quic.Conn) {
	cs := conn.ConnectionState().TLS
	alpn := cs.NegotiatedProtocol
	l.mu.Lock()
	r, ok := l.routes[alpn]
	l.mu.Unlock()
	if !ok {
		_ = conn.CloseWithError(CloseUnauthorized, "no handler for ALPN")
		return
	}
	if alpn != ALPNEnroll && len(cs.PeerCertificates) == 0 {
		_ = conn.CloseWithError(CloseUnauthorized, "client certificate required")
		return
	}
	cfg := l.cfg
	if alpn == ALPNEnroll {
		// A peer without a certificate: it keeps its admission place
		// until it leaves, and its frames are small.
		cfg.Limits.MaxFrame = min(cfg.Limits.MaxFrame, cfg.Admission.EnrollMaxFrame)
	} else {
		// The handshake verified its certificate (the configuration
		// required one).
		releaseVerified(conn)
	}
	if l.cfg.Authorize != nil {
		if err := l.cfg.Authorize(alpn, cs); err != nil {
			l.log.Info("connection refused", "peer", conn.RemoteAddr().String(), "alpn", alpn, "err", err)
			_ = conn.CloseWithError(CloseUnauthorized, truncate(err.Error(), 256))
			return
		}
	}
	if r.streams != nil {
		l.replaceDialed(alpn, conn)
		r.streams.serveConn(conn)
		return
	}
	s, err := l.accept(conn, r.handler, cfg)
	if err != nil {
		l.log.Debug("session refused", "peer", conn.RemoteAddr().String(), "alpn", alpn, "err", err)
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		s.closeWith(CloseShutdown, ErrClosed)
		return
	}
	l.sessions[s] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(s.ctx, func() {
		l.mu.Lock()
		delete(l.sessions, s)
		l.mu.Unlock()
	})
}

// accept runs the listener's side of the Hello exchange; cfg is the
// listener's configuration with the limits of the connection's ALPN.
func (l *Listener) accept(conn *quic.Conn, h Handler, cfg Config) (*Session, error) {
	ctx, cancel := context.WithTimeout(conn.Context(), cfg.HandshakeTimeout)
	defer cancel()
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		_ = conn.CloseWithError(CloseProtocolError, "no control stream")
		return nil, err
	}
	_ = ctrl.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	s := newSession(conn, ctrl, cfg, h)
	f, err := s.fr.ReadFrame()
	var hello *Hello
	if err == nil {
		var m Message
		m, err = Unmarshal(f.Type, f.Body, cfg.Limits)
		hello, _ = m.(*Hello)
		if err == nil && (hello == nil || f.Flags != FlagRequest) {
			err = fmt.Errorf("%w: first frame is %v, want a Hello request", ErrMalformed, f.Type)
		}
	}
	if err != nil {
		s.closeWith(CloseProtocolError, err)
		return nil, err
	}
	_ = ctrl.SetReadDeadline(time.Time{})
	s.hello = hello
	refuse := func(resp Message, cause error) (*Session, error) {
		s.version = MinVersion
		_ = s.writeFrame(resp, FlagResponse, f.ID)
		_ = ctrl.Close()
		// Let the refusal reach the dialer before the connection goes.
		select {
		case <-conn.Context().Done():
		case <-time.After(cfg.HandshakeTimeout):
		}
		s.closeWith(CloseRefused, cause)
		return nil, cause
	}
	v, err := negotiate(cfg.MinVersion, cfg.MaxVersion, hello.MinVersion, hello.Version)
	if err != nil {
		return refuse(&Error{Code: CodeVersionMismatch, Message: err.Error()}, err)
	}
	s.version = v
	ack, err := h.Hello(ctx, s, hello)
	if err != nil {
		return refuse(errorMessage(err), err)
	}
	if ack == nil {
		ack = &HelloAck{}
	}
	ack.Version = v
	s.ack = ack
	if err := s.writeFrame(ack, FlagResponse, f.ID); err != nil {
		return nil, err
	}
	s.start()
	return s, nil
}

// Close stops accepting, closes every connection and the UDP socket, and
// waits for the connection goroutines. Every call returns only once the
// socket is closed: a second caller (Serve's context ending at the same
// time) waits for the first, so the port can be bound again on return.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Listener) close() error {
	l.mu.Lock()
	l.closed = true
	sessions := make([]*Session, 0, len(l.sessions))
	for s := range l.sessions {
		sessions = append(sessions, s)
	}
	conns := make([]*quic.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	var streamLns []*streamListener
	for _, r := range l.routes {
		if r.streams != nil {
			streamLns = append(streamLns, r.streams)
		}
	}
	l.mu.Unlock()
	l.cancel()
	err := l.ln.Close()
	for _, s := range sessions {
		s.closeWith(CloseShutdown, ErrClosed)
	}
	for _, s := range sessions {
		s.wg.Wait()
	}
	for _, c := range conns {
		_ = c.CloseWithError(CloseShutdown, "shutting down")
	}
	for _, sl := range streamLns {
		_ = sl.Close()
	}
	l.closeDials()
	l.wg.Wait()
	if terr := l.tr.Close(); err == nil {
		err = terr
	}
	// quic.Transport closes only sockets it created itself: release ours so
	// the port can be bound again at once (a restarted node reuses it).
	if uerr := l.udp.Close(); err == nil && !errors.Is(uerr, net.ErrClosed) {
		err = uerr
	}
	return err
}

// Dial opens a session from the listener's UDP port (see the package-level
// Dial).
func (l *Listener) Dial(ctx context.Context, addr string, tlsConf *tls.Config, alpn string, cfg *Config) (*Session, error) {
	return dialSession(ctx, addr, tlsConf, alpn, cfg, l.tr)
}

// Dial connects to a fedge listener at addr on ALPN alpn with the client
// TLS configuration tlsConf (certificate, root CAs, ServerName), sends
// cfg.Hello and returns the session once the listener accepted it. A
// refusal is returned as *Error or *Redirect. The session owns a UDP
// socket of its own.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, alpn string, cfg *Config) (*Session, error) {
	return dialSession(ctx, addr, tlsConf, alpn, cfg, nil)
}

// dialConn opens a QUIC connection on tr, or on a fresh socket if tr is nil.
func dialConn(ctx context.Context, addr string, tlsConf *tls.Config, alpn string, c *Config, tr *quic.Transport) (*quic.Conn, error) {
	if tlsConf == nil {
		return nil, errors.New("nil tls.Config")
	}
	tc := tlsConf.Clone()
	tc.NextProtos = []string{alpn}
	ctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	if tr == nil {
		return quic.DialAddr(ctx, addr, tc, c.quicConfig())
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return tr.Dial(ctx, ua, tc, c.quicConfig())
}

func dialSession(ctx context.Context, addr string, tlsConf *tls.Config, alpn string, cfg *Config, tr *quic.Transport) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("protocol.Dial: %w", err)
	}
	c := cfg.withDefaults()
	conn, err := dialConn(ctx, addr, tlsConf, alpn, &c, tr)
	if err != nil {
		return nil, fmt.Errorf("protocol.Dial %s: %w", addr, err)
	}
	s, err := handshakeSession(ctx, conn, &c)
	if err != nil {
		_ = conn.CloseWithError(CloseNormal, "")
		return nil, fmt.Errorf("protocol.Dial %s: %w", addr, err)
	}
	return s, nil
}

// handshakeSession runs the dialer's side of the Hello exchange.
func handshakeSession(ctx context.Context, conn *quic.Conn, c *Config) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	s := newSession(conn, ctrl, *c, c.Handler)
	hello := c.Hello
	hello.MinVersion, hello.Version = c.MinVersion, c.MaxVersion
	s.hello = &hello
	s.version = MinVersion // Hello exists in every version
	id := s.nextID.Add(1)
	if err := s.writeFrame(&hello, FlagRequest, id); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = ctrl.SetReadDeadline(time.Now()) })
	defer stop()
	_ = ctrl.SetReadDeadline(time.Now().Add(c.HandshakeTimeout))
	f, m, err := s.fr.ReadMessage()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if f.Flags != FlagResponse || f.ID != id {
		return nil, fmt.Errorf("%w: unexpected %v frame before HelloAck", ErrMalformed, f.Type)
	}
	switch r := m.(type) {
	case *HelloAck:
		if r.Version < c.MinVersion || r.Version > c.MaxVersion {
			return nil, fmt.Errorf("%w: listener chose %d, ours [%d, %d]", ErrVersion, r.Version, c.MinVersion, c.MaxVersion)
		}
		s.version, s.ack = r.Version, r
	case *Error:
		return nil, r
	case *Redirect:
		return nil, r
	default:
		return nil, fmt.Errorf("%w: %v in answer to Hello", ErrMalformed, m.Type())
	}
	if !stop() {
		return nil, ctx.Err()
	}
	_ = ctrl.SetReadDeadline(time.Time{})
	s.start()
	return s, nil
}
