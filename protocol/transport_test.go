package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// agentHandler is the coordinator-side handler used by most tests: it
// records sessions by agent ID and echoes heartbeats.
type agentHandler struct {
	HandlerFuncs
	mu       sync.Mutex
	sessions map[string]*Session
	hellos   atomic.Int32
}

func newAgentHandler() *agentHandler {
	h := &agentHandler{sessions: map[string]*Session{}}
	h.HelloFunc = func(ctx context.Context, s *Session, m *Hello) (*HelloAck, error) {
		h.hellos.Add(1)
		h.mu.Lock()
		h.sessions[m.AgentID] = s
		h.mu.Unlock()
		return &HelloAck{NodeID: "coord-a", HeartbeatInterval: 30 * time.Second}, nil
	}
	h.MessageFunc = func(ctx context.Context, s *Session, m Message) (Message, error) {
		switch m := m.(type) {
		case *Heartbeat:
			// Answer later requests sooner, to prove out-of-order responses
			// reach the right caller.
			time.Sleep(time.Duration(20-m.Seq%20) * time.Millisecond)
			return &Heartbeat{Seq: m.Seq, ModelVersion: m.ModelVersion + 1}, nil
		case *AdminRequest:
			if m.Verb == "missing" {
				return nil, &Error{Code: CodeNotFound, Message: "no such thing"}
			}
			if m.Verb == "plain-error" {
				return nil, errors.New("disk on fire")
			}
			return &AdminResponse{Body: append([]byte("echo:"), m.Body...)}, nil
		case *Ack:
			return nil, nil
		}
		return nil, &Error{Code: CodeUnsupported}
	}
	return h
}

func (h *agentHandler) session(id string) *Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id]
}

func dialAgent(t *testing.T, pki *testPKI, l *Listener, id string, cfg *Config) *Session {
	t.Helper()
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Hello.AgentID = id
	s, err := Dial(testCtx(t), l.Addr().String(), pki.clientTLS(t, id), ALPNAgent, &c)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSessionRequests(t *testing.T) {
	pki := newTestPKI(t, "ca")
	h := newAgentHandler()
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	s := dialAgent(t, pki, l, "agent-1", nil)

	if s.Version() != CurrentVersion || s.HelloAck().NodeID != "coord-a" || s.HelloAck().HeartbeatInterval != 30*time.Second {
		t.Fatalf("ack = %+v, version %d", s.HelloAck(), s.Version())
	}
	if s.ALPN() != ALPNAgent || s.PeerCertificate() == nil || s.PeerCertificate().Subject.CommonName != "coordinator" {
		t.Fatalf("alpn %q peer %v", s.ALPN(), s.PeerCertificate())
	}
	srv := h.session("agent-1")
	if srv == nil || srv.PeerHello().AgentID != "agent-1" || srv.PeerCertificate().Subject.CommonName != "agent-1" {
		t.Fatalf("server session = %v", srv)
	}

	// Many concurrent requests, answered out of order.
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.Request(ctx, &Heartbeat{Seq: uint64(i), ModelVersion: uint64(i)})
			if err != nil {
				errs <- err
				return
			}
			if hb, ok := resp.(*Heartbeat); !ok || hb.Seq != uint64(i) || hb.ModelVersion != uint64(i)+1 {
				errs <- fmt.Errorf("request %d got %#v", i, resp)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	tests := []struct {
		name    string
		req     Message
		want    Message
		wantErr *Error
	}{
		{"response", &AdminRequest{Verb: "x", Body: []byte("hi")}, &AdminResponse{Body: []byte("echo:hi")}, nil},
		{"nil means ack", &Ack{}, &Ack{}, nil},
		{"typed error", &AdminRequest{Verb: "missing"}, nil, &Error{Code: CodeNotFound}},
		{"plain error", &AdminRequest{Verb: "plain-error"}, nil, &Error{Code: CodeInternal}},
		{"unsupported", &RoundAbort{}, nil, &Error{Code: CodeUnsupported}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Request(ctx, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want code %v", err, tt.wantErr.Code)
				}
				return
			}
			if err != nil || resp.Type() != tt.want.Type() {
				t.Fatalf("resp = %v, %v", resp, err)
			}
			if ar, ok := resp.(*AdminResponse); ok && string(ar.Body) != "echo:hi" {
				t.Fatalf("body %q", ar.Body)
			}
		})
	}
}

func TestServerPush(t *testing.T) {
	pki := newTestPKI(t, "ca")
	h := newAgentHandler()
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	aborts := make(chan uint64, 1)
	agent := HandlerFuncs{MessageFunc: func(ctx context.Context, s *Session, m Message) (Message, error) {
		switch m := m.(type) {
		case *RoundInvite:
			at, _ := m.Deadline(StageTrain)
			return &RoundJoin{RoundID: m.RoundID, Accept: !at.IsZero()}, nil
		case *RoundAbort:
			aborts <- m.RoundID
			return nil, nil
		}
		return nil, &Error{Code: CodeUnsupported}
	}}
	dialAgent(t, pki, l, "agent-7", &Config{Handler: agent})
	srv := h.session("agent-7")

	ctx := testCtx(t)
	resp, err := srv.Request(ctx, &RoundInvite{RoundID: 42, Job: "mnist", Deadlines: []StageDeadline{{StageTrain, time.Now().Add(time.Minute)}}})
	if err != nil {
		t.Fatal(err)
	}
	if j, ok := resp.(*RoundJoin); !ok || j.RoundID != 42 || !j.Accept {
		t.Fatalf("push response = %#v", resp)
	}
	if err := srv.Send(ctx, &RoundAbort{RoundID: 43, Reason: "leader changed"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-aborts:
		if id != 43 {
			t.Fatalf("abort for round %d", id)
		}
	case <-ctx.Done():
		t.Fatal("one-way push never arrived")
	}
}

func TestRequestDeadlineCancelsHandler(t *testing.T) {
	pki := newTestPKI(t, "ca")
	cancelled := make(chan struct{})
	h := HandlerFuncs{MessageFunc: func(ctx context.Context, s *Session, m Message) (Message, error) {
		select {
		case <-ctx.Done():
			close(cancelled)
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return &Ack{}, nil
		}
	}}
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	s := dialAgent(t, pki, l, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Request(ctx, &Ack{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Request returned after %v", d)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's handler was not cancelled")
	}
	// The session survives a cancelled request.
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
}

func TestHelloRefusals(t *testing.T) {
	pki := newTestPKI(t, "ca")
	tests := []struct {
		name      string
		helloFunc func(context.Context, *Session, *Hello) (*HelloAck, error)
		check     func(t *testing.T, err error)
	}{
		{"redirect", func(context.Context, *Session, *Hello) (*HelloAck, error) {
			return nil, &Redirect{Addr: "10.1.2.3:7443", NodeID: "leader"}
		}, func(t *testing.T, err error) {
			var rd *Redirect
			if !errors.As(err, &rd) || rd.Addr != "10.1.2.3:7443" {
				t.Fatalf("err = %v, want redirect", err)
			}
		}},
		{"error", func(context.Context, *Session, *Hello) (*HelloAck, error) {
			return nil, &Error{Code: CodeRevoked, Message: "certificate revoked"}
		}, func(t *testing.T, err error) {
			if !errors.Is(err, &Error{Code: CodeRevoked}) {
				t.Fatalf("err = %v, want revoked", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: HandlerFuncs{HelloFunc: tt.helloFunc}})
			s, err := Dial(testCtx(t), l.Addr().String(), pki.clientTLS(t, "a"), ALPNAgent, nil)
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			tt.check(t, err)
		})
	}
}

func TestVersionNegotiation(t *testing.T) {
	pki := newTestPKI(t, "ca")
	tests := []struct {
		name           string
		srvMin, srvMax uint32
		cliMin, cliMax uint32
		want           uint32
		wantErr        bool
	}{
		{"same", 1, 1, 1, 1, 1, false},
		{"newer client", 1, 1, 1, 3, 1, false},
		{"newer server", 1, 4, 1, 2, 2, false},
		{"client too new", 1, 1, 2, 3, 0, true},
		{"server too new", 3, 4, 1, 2, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := startListener(t, pki, &Config{MinVersion: tt.srvMin, MaxVersion: tt.srvMax}, map[string]Handler{ALPNAgent: HandlerFuncs{}})
			s, err := Dial(testCtx(t), l.Addr().String(), pki.clientTLS(t, "a"), ALPNAgent, &Config{MinVersion: tt.cliMin, MaxVersion: tt.cliMax})
			if tt.wantErr {
				if !errors.Is(err, &Error{Code: CodeVersionMismatch}) {
					t.Fatalf("err = %v, want version mismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Version() != tt.want {
				t.Fatalf("negotiated %d, want %d", s.Version(), tt.want)
			}
		})
	}
	if v, err := negotiate(1, 1, 0, 0); err == nil {
		t.Fatalf("negotiate with empty peer range = %d", v)
	}
}

// TestTLSRefusals proves that peers are refused in the handshake, before
// any handler sees a message: a certificate from another CA, no
// certificate, an unknown ALPN, and an Authorize veto. Enrollment without
// a certificate works on ALPNEnroll only.
func TestTLSRefusals(t *testing.T) {
	pki := newTestPKI(t, "ca")
	other := newTestPKI(t, "other-ca")
	h := newAgentHandler()
	enrolled := make(chan string, 1)
	enroll := HandlerFuncs{MessageFunc: func(ctx context.Context, s *Session, m Message) (Message, error) {
		req, ok := m.(*EnrollRequest)
		if !ok || s.PeerCertificate() != nil {
			return nil, &Error{Code: CodeBadRequest}
		}
		enrolled <- req.Token
		return &EnrollResponse{AgentID: "agent-new", Cert: []byte{1}, CACert: pki.ca.Raw}, nil
	}}
	var authCalls atomic.Int32
	cfg := &Config{Authorize: func(alpn string, cs tls.ConnectionState) error {
		authCalls.Add(1)
		if len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0].Subject.CommonName == "banned" {
			return errors.New("banned agent")
		}
		return nil
	}, HandshakeTimeout: 3 * time.Second}
	l := startListener(t, pki, cfg, map[string]Handler{ALPNAgent: h, ALPNEnroll: enroll})
	addr := l.Addr().String()

	wrongCA := pki.clientTLS(t, "")
	otherCert := other.cert(t, "agent-x")
	// Present it even though the server's CertificateRequest names another
	// CA (Go's client would otherwise send no certificate at all).
	wrongCA.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &otherCert, nil }
	refusals := []struct {
		name string
		tls  *tls.Config
		alpn string
		// inTLS: refused by a TLS alert during the handshake; otherwise
		// by an application close with CloseUnauthorized.
		inTLS bool
	}{
		{"certificate from another CA", wrongCA, ALPNAgent, true},
		{"no certificate", pki.clientTLS(t, ""), ALPNAgent, true},
		{"no certificate on admin", pki.clientTLS(t, ""), ALPNAdmin, true},
		{"no certificate offering enroll and agent", pki.clientTLS(t, ""), ALPNAgent, true},
		{"unknown ALPN", pki.clientTLS(t, "agent-1"), "fedge-nonsense/9", true},
		{"unregistered ALPN", pki.clientTLS(t, "agent-1"), ALPNRaft, true},
		{"authorize veto", pki.clientTLS(t, "banned"), ALPNAgent, false},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			var s *Session
			var err error
			if tt.name == "no certificate offering enroll and agent" {
				// Offering ALPNEnroll next to a certificate ALPN must not
				// open the certificate-free configuration.
				var c *quic.Conn
				if c, err = dialConnProtos(testCtx(t), addr, tt.tls, []string{ALPNEnroll, ALPNAgent}); err == nil {
					dc := (*Config)(nil).withDefaults()
					s, err = handshakeSession(testCtx(t), c, &dc)
					_ = c.CloseWithError(0, "")
				}
			} else {
				s, err = Dial(testCtx(t), addr, tt.tls, tt.alpn, &Config{HandshakeTimeout: 3 * time.Second})
			}
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			var te *quic.TransportError
			var ae *quic.ApplicationError
			switch {
			case tt.inTLS && !(errors.As(err, &te) && te.ErrorCode.IsCryptoError()):
				t.Fatalf("err = %v, want a TLS alert", err)
			case !tt.inTLS && !(errors.As(err, &ae) && ae.ErrorCode == CloseUnauthorized):
				t.Fatalf("err = %v, want close code %d", err, CloseUnauthorized)
			}
		})
	}
	if n := h.hellos.Load(); n != 0 {
		t.Fatalf("handler saw %d Hellos from refused peers", n)
	}
	if n := authCalls.Load(); n != 1 {
		t.Fatalf("Authorize ran %d times; only the banned peer should reach it", n)
	}

	// Enrollment: no certificate, ALPNEnroll only.
	s, err := Dial(testCtx(t), addr, pki.clientTLS(t, ""), ALPNEnroll, nil)
	if err != nil {
		t.Fatalf("enroll dial: %v", err)
	}
	defer s.Close()
	resp, err := s.Request(testCtx(t), &EnrollRequest{Token: "jt_1", CSR: []byte{0x30}})
	if err != nil {
		t.Fatal(err)
	}
	if er, ok := resp.(*EnrollResponse); !ok || er.AgentID != "agent-new" || <-enrolled != "jt_1" {
		t.Fatalf("enroll response %#v", resp)
	}

	// A certified agent still works next to all that.
	dialAgent(t, pki, l, "agent-1", nil)
	if h.hellos.Load() != 1 {
		t.Fatalf("hellos = %d", h.hellos.Load())
	}
}

func TestListenRejectsInsecureTLS(t *testing.T) {
	pki := newTestPKI(t, "ca")
	c := pki.serverTLS(t)
	c.ClientAuth = tls.VerifyClientCertIfGiven
	if _, err := Listen("127.0.0.1:0", c, nil); !errors.Is(err, ErrInsecureTLS) {
		t.Fatalf("err = %v, want ErrInsecureTLS", err)
	}
	if err := (&Config{MinVersion: 3, MaxVersion: 2}).Validate(); err == nil {
		t.Fatal("Validate accepted MinVersion > MaxVersion")
	}
	if err := (&Config{KeepAlivePeriod: time.Minute, MaxIdleTimeout: time.Second}).Validate(); err == nil {
		t.Fatal("Validate accepted keep-alive longer than the idle timeout")
	}
}

func TestProtocolViolations(t *testing.T) {
	pki := newTestPKI(t, "ca")
	h := newAgentHandler()
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})

	t.Run("unknown optional request is answered, session lives", func(t *testing.T) {
		s := dialAgent(t, pki, l, "opt", nil)
		id := s.nextID.Add(1)
		ch := make(chan result, 1)
		s.mu.Lock()
		s.pending[id] = ch
		s.mu.Unlock()
		s.wmu.Lock()
		_, err := s.ctrl.Write(AppendFrame(nil, Frame{Type: Optional | 0x66, Flags: FlagRequest, ID: id, Body: []byte("future")}))
		s.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			if e, ok := r.m.(*Error); !ok || e.Code != CodeUnsupported {
				t.Fatalf("response %#v %v", r.m, r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no response")
		}
		if _, err := s.Request(testCtx(t), &Ack{}); err != nil {
			t.Fatalf("session broken after optional frame: %v", err)
		}
	})
	t.Run("unknown mandatory type ends the session", func(t *testing.T) {
		s := dialAgent(t, pki, l, "mand", nil)
		s.wmu.Lock()
		_, err := s.ctrl.Write(AppendFrame(nil, Frame{Type: 0x7e, Body: []byte("x")}))
		s.wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("session survived an unknown mandatory type")
		}
		if _, err := s.Request(context.Background(), &Ack{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("request after close: %v", err)
		}
	})
	t.Run("too new for the session", func(t *testing.T) {
		s := dialAgent(t, pki, l, "old", nil)
		s.version = 0 // pretend the session predates every type
		if _, err := s.Request(testCtx(t), &Ack{}); !errors.Is(err, ErrVersion) {
			t.Fatalf("err = %v, want ErrVersion", err)
		}
	})
}

func TestSessionCloseEndsBothSides(t *testing.T) {
	pki := newTestPKI(t, "ca")
	h := newAgentHandler()
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	s := dialAgent(t, pki, l, "c", nil)
	srv := h.session("c")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not notice the server closing")
	}
	if s.Err() == nil {
		t.Fatal("Err() is nil after close")
	}
	if _, err := s.Request(context.Background(), &Ack{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("request after close: %v", err)
	}
}

// dialConnProtos dials with several ALPNs offered at once.
func dialConnProtos(ctx context.Context, addr string, tc *tls.Config, protos []string) (*quic.Conn, error) {
	tc = tc.Clone()
	tc.NextProtos = protos
	c := (*Config)(nil).withDefaults()
	return quic.DialAddr(ctx, addr, tc, c.quicConfig())
}

// TestPushFromHello: a listener may start pushing from its Hello handler;
// the push must not overtake the HelloAck.
func TestPushFromHello(t *testing.T) {
	pki := newTestPKI(t, "ca")
	pushed := make(chan error, 1)
	h := HandlerFuncs{HelloFunc: func(ctx context.Context, s *Session, m *Hello) (*HelloAck, error) {
		go func() {
			_, err := s.Request(context.Background(), &RoundInvite{RoundID: 1, Job: "j"})
			pushed <- err
		}()
		// The push is under way; it cannot be answered before this
		// handler returns the HelloAck.
		select {
		case err := <-pushed:
			pushed <- fmt.Errorf("push answered before the HelloAck was sent (err %v)", err)
		case <-time.After(20 * time.Millisecond):
		}
		return &HelloAck{}, nil
	}}
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	agent := HandlerFuncs{MessageFunc: func(ctx context.Context, s *Session, m Message) (Message, error) {
		return &RoundJoin{RoundID: m.(*RoundInvite).RoundID, Accept: true}, nil
	}}
	dialAgent(t, pki, l, "early", &Config{Handler: agent})
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("push from Hello never answered")
	}
}

// TestListenRebindsAtOnce: a listener closed in this process frees its
// port before Close returns, also when Serve's context ends at the same
// moment (a coordinator stopping: the node's context, then Close), so a
// node restarted in place binds it again; a live listener's port is
// refused.
func TestListenRebindsAtOnce(t *testing.T) {
	pki := newTestPKI(t, "rebind")
	l, err := Listen("127.0.0.1:0", pki.serverTLS(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if _, err := Listen(addr, pki.serverTLS(t), nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listener on a live port: %v", err)
	}
	for i := range 10 {
		h := newAgentHandler()
		inHandler := make(chan struct{}, 1)
		h.MessageFunc = func(context.Context, *Session, Message) (Message, error) {
			inHandler <- struct{}{}
			time.Sleep(50 * time.Millisecond) // a handler slow to notice the end
			return &Ack{}, nil
		}
		if err := l.Handle(ALPNAgent, h); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { _ = l.Serve(ctx); close(served) }()
		// A session with a request in its handler: closing waits for it.
		s := dialAgent(t, pki, l, "a", nil)
		go func() { _, _ = s.Request(context.Background(), &Heartbeat{Seq: 1}) }()
		<-inHandler
		cancel()                          // Serve closes the listener on its own goroutine...
		runtime.Gosched()                 // (let it start)
		if err := l.Close(); err != nil { // ...while this Close runs
			t.Fatal(err)
		}
		if l, err = Listen(addr, pki.serverTLS(t), nil); err != nil {
			t.Fatalf("rebind %d: %v", i, err)
		}
		<-served
	}
	l.Close()
}
