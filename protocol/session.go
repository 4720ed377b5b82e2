package protocol

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/quic-go/quic-go"
)

// Handler serves what a peer sends on a session. Its methods run on the
// session's goroutines and must be safe for concurrent use.
type Handler interface {
	// Hello is called on the listening side with the dialer's Hello,
	// before anything else is served. It returns the HelloAck to send (its
	// Version is overwritten with the negotiated one) or refuses the
	// session: a *Redirect or *Error reaches the dialer as is, any other
	// error as CodeInternal. s may be kept (e.g. to push to the agent
	// later); sends on it wait until the HelloAck is out.
	Hello(ctx context.Context, s *Session, h *Hello) (*HelloAck, error)
	// ServeMessage handles one message. For a request, the returned
	// message is the response (nil means Ack) and an error is sent as an
	// Error (or Redirect); for a one-way message both are dropped.
	// Messages are served concurrently, up to Config.MaxConcurrent, in no
	// guaranteed order. ctx ends with the session or when the peer
	// cancels the request.
	ServeMessage(ctx context.Context, s *Session, m Message) (Message, error)
	// ServeBulk handles a bulk stream the peer opened; first is the
	// stream's first message. When it returns the stream is finished; a
	// returned error is first sent to the peer as an Error frame.
	ServeBulk(ctx context.Context, s *Session, first Message, b *BulkStream) error
}

// HandlerFuncs adapts functions to Handler; nil fields accept the Hello,
// answer requests with CodeUnsupported and reset bulk streams.
type HandlerFuncs struct {
	HelloFunc   func(ctx context.Context, s *Session, h *Hello) (*HelloAck, error)
	MessageFunc func(ctx context.Context, s *Session, m Message) (Message, error)
	BulkFunc    func(ctx context.Context, s *Session, first Message, b *BulkStream) error
}

var _ Handler = HandlerFuncs{}

// Hello implements Handler.
func (h HandlerFuncs) Hello(ctx context.Context, s *Session, m *Hello) (*HelloAck, error) {
	if h.HelloFunc == nil {
		return &HelloAck{}, nil
	}
	return h.HelloFunc(ctx, s, m)
}

// ServeMessage implements Handler.
func (h HandlerFuncs) ServeMessage(ctx context.Context, s *Session, m Message) (Message, error) {
	if h.MessageFunc == nil {
		return nil, &Error{Code: CodeUnsupported, Message: m.Type().String()}
	}
	return h.MessageFunc(ctx, s, m)
}

// ServeBulk implements Handler.
func (h HandlerFuncs) ServeBulk(ctx context.Context, s *Session, first Message, b *BulkStream) error {
	if h.BulkFunc == nil {
		return &Error{Code: CodeUnsupported, Message: "bulk " + first.Type().String()}
	}
	return h.BulkFunc(ctx, s, first, b)
}

// Session is one peer connection on a session ALPN (agent, admin, enroll):
// a long-lived control stream carrying requests, responses and one-way
// messages in both directions, plus bulk streams opened per transfer. Both
// the dialer and the listener hold a Session; either side may push.
type Session struct {
	conn    *quic.Conn
	ctrl    *quic.Stream
	fr      *FrameReader // control stream reader, shared by the handshake and readLoop
	cfg     Config
	handler Handler
	log     *slog.Logger
	version uint32
	hello   *Hello    // the dialer's Hello
	ack     *HelloAck // the listener's answer

	ctx    context.Context // ends when the connection closes
	cancel context.CancelCauseFunc
	ready  chan struct{} // closed once the Hello exchange is done

	wmu    sync.Mutex // serialises control-stream writes
	nextID atomic.Uint64

	mu       sync.Mutex
	pending  map[uint64]chan result        // our outstanding requests
	inflight map[uint64]context.CancelFunc // peer requests being served
	sem      chan struct{}                 // bounds concurrent handlers
	wg       sync.WaitGroup                // session goroutines
	closed   bool
}

type result struct {
	m   Message
	err error
}

func newSession(conn *quic.Conn, ctrl *quic.Stream, cfg Config, h Handler) *Session {
	if h == nil {
		h = HandlerFuncs{}
	}
	ctx, cancel := context.WithCancelCause(conn.Context())
	return &Session{
		conn: conn, ctrl: ctrl, cfg: cfg, handler: h,
		fr:       NewFrameReader(bufio.NewReaderSize(ctrl, 2<<10), cfg.Limits),
		log:      cfg.Logger.With("peer", conn.RemoteAddr().String(), "alpn", conn.ConnectionState().TLS.NegotiatedProtocol),
		ctx:      ctx,
		cancel:   cancel,
		ready:    make(chan struct{}),
		pending:  make(map[uint64]chan result),
		inflight: make(map[uint64]context.CancelFunc),
		sem:      make(chan struct{}, cfg.MaxConcurrent),
	}
}

// ALPN returns the session's negotiated role.
func (s *Session) ALPN() string { return s.conn.ConnectionState().TLS.NegotiatedProtocol }

// Version returns the negotiated capability version.
func (s *Session) Version() uint32 { return s.version }

// PeerHello returns the dialer's Hello (on both sides).
func (s *Session) PeerHello() *Hello { return s.hello }

// HelloAck returns the listener's HelloAck (on both sides).
func (s *Session) HelloAck() *HelloAck { return s.ack }

// TLS returns the connection's TLS state (peer certificates, ALPN).
func (s *Session) TLS() tls.ConnectionState { return s.conn.ConnectionState().TLS }

// PeerCertificate returns the peer's leaf certificate, or nil (enrollment).
func (s *Session) PeerCertificate() *x509.Certificate {
	if pc := s.TLS().PeerCertificates; len(pc) > 0 {
		return pc[0]
	}
	return nil
}

// RemoteAddr returns the peer's current address (it changes if the peer
// migrates).
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// LocalAddr returns the local address.
func (s *Session) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// Context returns a context that ends when the session does; its cause is
// the reason.
func (s *Session) Context() context.Context { return s.ctx }

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.ctx.Done() }

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	return context.Cause(s.ctx)
}

// Close ends the session and its connection and waits for the session's
// goroutines (not for handlers still running, which see ctx end).
func (s *Session) Close() error {
	s.closeWith(CloseNormal, ErrClosed)
	return nil
}

// closeWith closes the connection with a QUIC application error code and
// records cause as the session's error.
func (s *Session) closeWith(code quic.ApplicationErrorCode, cause error) {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return
	}
	s.cancel(cause)
	msg := ""
	if code != CloseNormal && cause != nil {
		msg = truncate(cause.Error(), 256)
	}
	_ = s.conn.CloseWithError(code, msg)
}

// start runs the control-stream reader and the bulk-stream acceptor.
func (s *Session) start() {
	close(s.ready)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.readLoop()
	}()
	go func() {
		defer s.wg.Done()
		s.acceptLoop()
	}()
	// Mark the session closed however the connection ends (no goroutine
	// waits for it: idle sessions are counted in thousands).
	context.AfterFunc(s.ctx, func() { s.closeWith(CloseNormal, context.Cause(s.ctx)) })
}

// writeFrame writes one frame to the control stream. A failed or timed out
// write leaves the stream mid-frame, so it ends the session.
func (s *Session) writeFrame(m Message, flags Flags, id uint64) error {
	if m.Type().Since() > s.version {
		return fmt.Errorf("protocol.Session: %w: %v needs version %d, session runs %d", ErrVersion, m.Type(), m.Type().Since(), s.version)
	}
	buf, err := EncodeFrame(nil, m, flags, id, s.cfg.Limits)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("protocol.Session: %w: %w", ErrClosed, context.Cause(s.ctx))
	}
	_ = s.ctrl.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := s.ctrl.Write(buf); err != nil {
		s.closeWith(CloseProtocolError, fmt.Errorf("control stream write: %w", err))
		return fmt.Errorf("protocol.Session: write %v: %w", m.Type(), err)
	}
	return nil
}

// waitReady blocks until the Hello exchange is over, so nothing a
// listener's Hello handler starts can overtake the HelloAck.
func (s *Session) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return fmt.Errorf("protocol.Session: %w: %w", ErrClosed, context.Cause(s.ctx))
	}
}

// Send sends a one-way message: no response, no delivery confirmation
// beyond QUIC's.
func (s *Session) Send(ctx context.Context, m Message) error {
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	return s.writeFrame(m, 0, 0)
}

// Request sends m and waits for the peer's response, until ctx ends. A
// remote Error or Redirect comes back as the error (a *Error or
// *Redirect); any other response is returned as the message.
func (s *Session) Request(ctx context.Context, m Message) (Message, error) {
	return s.RequestSent(ctx, m, nil)
}

// RequestSent is Request that calls sent, if not nil, once m is written
// to the connection (the session no longer holds m or its encoding),
// before the response arrives; it is not called if the write fails. A
// caller that waits long for responses (a SecAgg+ stage answers when the
// stage ends) bounds its memory with it, releasing a large message's
// buffer slot as soon as it is on its way.
func (s *Session) RequestSent(ctx context.Context, m Message, sent func()) (Message, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	id := s.nextID.Add(1)
	ch := make(chan result, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("protocol.Session.Request: %w: %w", ErrClosed, context.Cause(s.ctx))
	}
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if err := s.writeFrame(m, FlagRequest, id); err != nil {
		return nil, err
	}
	if sent != nil {
		sent()
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		switch resp := r.m.(type) {
		case *Error:
			return nil, resp
		case *Redirect:
			return nil, resp
		}
		return r.m, nil
	case <-ctx.Done():
		// Best effort: an old peer skips the optional Cancel.
		_ = s.writeFrame(&Cancel{ID: id}, 0, 0)
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, fmt.Errorf("protocol.Session.Request: %w: %w", ErrClosed, context.Cause(s.ctx))
	}
}

// readLoop reads the control stream until it fails.
func (s *Session) readLoop() {
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			if s.ctx.Err() == nil {
				s.closeWith(CloseProtocolError, fmt.Errorf("control stream: %w", err))
			}
			return
		}
		m, err := Unmarshal(f.Type, f.Body, s.cfg.Limits)
		if f.Flags&FlagResponse != 0 {
			if err == nil && m == nil {
				m = &Error{Code: CodeUnsupported, Message: "response of unknown type " + f.Type.String()}
			}
			s.deliver(f.ID, result{m: m, err: err})
			continue
		}
		if err != nil {
			code := CodeBadRequest
			if errors.Is(err, ErrUnknownType) {
				code = CodeUnsupported
			}
			if f.Flags&FlagRequest != 0 {
				_ = s.writeFrame(&Error{Code: code, Message: truncate(err.Error(), 256)}, FlagResponse, f.ID)
			}
			s.log.Warn("protocol error on control stream", "err", err)
			s.closeWith(CloseProtocolError, err)
			return
		}
		if m == nil { // unknown optional type: skip it
			if f.Flags&FlagRequest != 0 {
				_ = s.writeFrame(&Error{Code: CodeUnsupported, Message: f.Type.String()}, FlagResponse, f.ID)
			}
			continue
		}
		if c, ok := m.(*Cancel); ok {
			s.mu.Lock()
			if cancel := s.inflight[c.ID]; cancel != nil {
				cancel()
			}
			s.mu.Unlock()
			continue
		}
		if !s.dispatch(f, m) {
			return
		}
	}
}

// deliver hands a response to the waiting Request; late responses (the
// request was cancelled) are dropped.
func (s *Session) deliver(id uint64, r result) {
	s.mu.Lock()
	ch := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// dispatch serves one message in its own goroutine once a slot is free.
func (s *Session) dispatch(f Frame, m Message) bool {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	isReq, id := f.Flags&FlagRequest != 0, f.ID
	ctx, cancel := context.WithCancel(s.ctx)
	if isReq {
		s.mu.Lock()
		if old := s.inflight[id]; old != nil {
			s.mu.Unlock()
			cancel()
			<-s.sem
			s.closeWith(CloseProtocolError, fmt.Errorf("%w: request ID %d reused while in flight", ErrMalformed, id))
			return false
		}
		s.inflight[id] = cancel
		s.mu.Unlock()
	}
	go func() {
		defer func() { <-s.sem }()
		defer cancel()
		resp, err := s.handler.ServeMessage(ctx, s, m)
		if !isReq {
			if err != nil {
				s.log.Debug("one-way message failed", "type", m.Type(), "err", err)
			}
			return
		}
		s.mu.Lock()
		delete(s.inflight, id)
		s.mu.Unlock()
		if err != nil {
			resp = errorMessage(err)
		} else if resp == nil {
			resp = &Ack{}
		}
		if werr := s.writeFrame(resp, FlagResponse, id); werr != nil && !errors.Is(werr, ErrClosed) {
			if errors.Is(werr, ErrTooLarge) || errors.Is(werr, ErrMalformed) || errors.Is(werr, ErrVersion) {
				_ = s.writeFrame(&Error{Code: CodeInternal, Message: truncate(werr.Error(), 256)}, FlagResponse, id)
			}
		}
	}()
	return true
}

// errorMessage turns a handler error into the response sent to the peer.
func errorMessage(err error) Message {
	var pe *Error
	if errors.As(err, &pe) {
		return &Error{Code: pe.Code, Message: truncate(pe.Message, DefaultMaxString)}
	}
	var rd *Redirect
	if errors.As(err, &rd) {
		return rd
	}
	code := CodeInternal
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = CodeTimeout
	case errors.Is(err, ErrHashMismatch):
		code = CodeHashMismatch
	case errors.Is(err, ErrTooLarge):
		code = CodeTooLarge
	case errors.Is(err, ErrMalformed):
		code = CodeBadRequest
	}
	return &Error{Code: code, Message: truncate(err.Error(), DefaultMaxString)}
}

// truncate cuts s to at most n bytes of valid UTF-8.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// acceptLoop serves the bulk streams the peer opens.
func (s *Session) acceptLoop() {
	for {
		str, err := s.conn.AcceptStream(s.ctx)
		if err != nil {
			return
		}
		go s.serveBulk(str)
	}
}

func (s *Session) serveBulk(str *quic.Stream) {
	b := newBulkStream(str, s.cfg.Limits)
	_ = str.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	_, m, err := b.fr.ReadMessage()
	_ = str.SetReadDeadline(time.Time{})
	if err != nil {
		s.log.Debug("bulk stream without a valid first frame", "err", err)
		b.Abort()
		return
	}
	stop := context.AfterFunc(s.ctx, b.Abort)
	defer stop()
	if err := s.handler.ServeBulk(s.ctx, s, m, b); err != nil {
		s.log.Debug("bulk stream failed", "type", m.Type(), "err", err)
		// Tell the peer why if the stream still works, then reset.
		_ = b.Send(errorMessage(err))
		_ = b.Close()
		return
	}
	_ = b.Close()
}

// OpenBulk opens a bulk stream and sends its first message (the request
// or header that tells the peer's ServeBulk what the stream is for).
func (s *Session) OpenBulk(ctx context.Context, first Message) (*BulkStream, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	if first.Type().Since() > s.version {
		return nil, fmt.Errorf("protocol.Session.OpenBulk: %w: %v", ErrVersion, first.Type())
	}
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("protocol.Session.OpenBulk: %w", err)
	}
	b := newBulkStream(str, s.cfg.Limits)
	if err := b.Send(first); err != nil {
		b.Abort()
		return nil, fmt.Errorf("protocol.Session.OpenBulk: %w", err)
	}
	return b, nil
}
