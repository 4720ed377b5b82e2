package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedge/fedge/internal/testutil"
)

// sourceTransport returns a QUIC transport bound to ip (a loopback
// address such as 127.0.0.2), so a test can dial from several sources.
func sourceTransport(t testing.TB, ip string) *quic.Transport {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("binding %s: %v", ip, err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() {
		_ = tr.Close()
		_ = udp.Close()
	})
	return tr
}

// dialFrom opens a QUIC connection from tr offering one ALPN.
func dialFrom(ctx context.Context, tr *quic.Transport, addr net.Addr, tc *tls.Config, alpn string) (*quic.Conn, error) {
	tc = tc.Clone()
	tc.NextProtos = []string{alpn}
	c := (*Config)(nil).withDefaults()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return tr.Dial(ctx, addr, tc, c.quicConfig())
}

func isRefused(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused
}

// TestAdmissionBoundsUnverifiedConnections: connections without a
// certificate (enrollment) hold places per source and in total; past the
// bounds new connections are refused, a verified peer gives its place
// back, and a closed connection frees its place.
func TestAdmissionBoundsUnverifiedConnections(t *testing.T) {
	pki := newTestPKI(t, "ca")
	cfg := &Config{Admission: Admission{MaxUnverified: 6, MaxUnverifiedPerSource: 4}}
	l := startListener(t, pki, cfg, map[string]Handler{ALPNAgent: newAgentHandler(), ALPNEnroll: HandlerFuncs{}})
	anon := pki.clientTLS(t, "")
	ctx := testCtx(t)

	// A verified agent does not keep a place once its handshake is done.
	dialAgent(t, pki, l, "agent-1", nil)
	testutil.WaitFor(t, 10*time.Second, "the agent's place to be given back", func() bool { n, _ := l.adm.counts(netip.Addr{}); return n == 0 })

	hold := func(ip string, n int) []*quic.Conn {
		tr := sourceTransport(t, ip)
		var conns []*quic.Conn
		for i := 0; i < n; i++ {
			c, err := dialFrom(ctx, tr, l.Addr(), anon, ALPNEnroll)
			if err != nil {
				t.Fatalf("%s connection %d: %v", ip, i+1, err)
			}
			conns = append(conns, c)
		}
		c, err := dialFrom(ctx, tr, l.Addr(), anon, ALPNEnroll)
		if err == nil {
			_ = c.CloseWithError(0, "")
			t.Fatalf("%s: connection %d admitted past the bound", ip, n+1)
		}
		if !isRefused(err) {
			t.Fatalf("%s: connection %d: %v, want CONNECTION_REFUSED", ip, n+1, err)
		}
		return conns
	}
	first := hold("127.0.0.2", 4)  // the per-source bound
	second := hold("127.0.0.3", 2) // the total bound: 4 + 2
	if n, src := l.adm.counts(netip.MustParseAddr("127.0.0.2")); n != 6 || src != 4 {
		t.Fatalf("places: %d in total, %d from 127.0.0.2; want 6 and 4", n, src)
	}
	// Each Initial packet of a refused connection is refused again (a
	// ClientHello may take two).
	if got := l.adm.refused.Load(); got < 2 {
		t.Fatalf("refused %d connection attempts, want at least 2", got)
	}

	// Closing connections frees their places: at once when the listener
	// hears the CONNECTION_CLOSE, which is one best-effort packet; if it
	// is lost (seen once in CI, under -race beside other packages' tests),
	// at the idle timeout. The wait covers both.
	for _, c := range append(first, second...) {
		_ = c.CloseWithError(0, "")
	}
	testutil.WaitFor(t, DefaultMaxIdleTimeout+15*time.Second, "the places to be given back", func() bool { n, _ := l.adm.counts(netip.Addr{}); return n == 0 })
	if s, err := Dial(ctx, l.Addr().String(), anon, ALPNEnroll, nil); err != nil {
		t.Fatalf("enrollment after the flood: %v", err)
	} else {
		s.Close()
	}
}

// TestEnrollFloodCutOff opens many enrollment connections from one source
// at once, each announcing a 16 MiB Hello and trying to send it. The
// listener must cut each one off after at most a flow-control window
// (the frame limit on ALPNEnroll is a few KiB), refuse those past the
// per-source bound, and never hand a Hello to the handler.
func TestEnrollFloodCutOff(t *testing.T) {
	const conns, frame = 200, 16 << 20
	pki := newTestPKI(t, "ca")
	var hellos atomic.Int32
	h := HandlerFuncs{HelloFunc: func(context.Context, *Session, *Hello) (*HelloAck, error) {
		hellos.Add(1)
		return &HelloAck{}, nil
	}}
	l := startListener(t, pki, nil, map[string]Handler{ALPNEnroll: h})
	tr := sourceTransport(t, "127.0.0.2")
	anon := pki.clientTLS(t, "")
	ctx := testCtx(t)

	var refused, cut, late atomic.Int32
	var maxSent atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, err := floodOne(ctx, tr, l.Addr(), anon, frame)
			switch {
			case isRefused(err):
				refused.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				// Its handshake did not finish in time on a loaded
				// machine (the race detector, 200 at once): it sent
				// nothing past it either.
				late.Add(1)
			case err != nil:
				t.Error(err)
			default:
				cut.Add(1)
				for m := maxSent.Load(); sent > m && !maxSent.CompareAndSwap(m, sent); m = maxSent.Load() {
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d connections: %d refused at once, %d cut off, %d not through the handshake in time; at most %d bytes sent on one", conns, refused.Load(), cut.Load(), late.Load(), maxSent.Load())
	if cut.Load() == 0 {
		t.Fatal("no connection got through the handshake")
	}
	// A connection may send what its first flow-control window allows
	// before the listener reads the header and closes it.
	if limit := int64(DefaultInitialConnWindow + DefaultEnrollMaxFrame); maxSent.Load() > limit {
		t.Fatalf("a connection without a certificate sent %d bytes, want at most %d", maxSent.Load(), limit)
	}
	if n := hellos.Load(); n != 0 {
		t.Fatalf("the handler saw %d Hellos", n)
	}
	testutil.WaitFor(t, 10*time.Second, "the places to be given back", func() bool { n, _ := l.adm.counts(netip.Addr{}); return n == 0 })
}

// floodOne dials ALPNEnroll, announces a Hello request of frame bytes and
// writes until the listener stops it. It returns the bytes the stream
// took, or the dial error.
func floodOne(ctx context.Context, tr *quic.Transport, addr net.Addr, tc *tls.Config, frame int) (int64, error) {
	c, err := dialFrom(ctx, tr, addr, tc, ALPNEnroll)
	if err != nil {
		return 0, err
	}
	defer c.CloseWithError(0, "")
	str, err := c.OpenStreamSync(ctx)
	if err != nil {
		return 0, nil // closed by the listener already
	}
	_ = str.SetWriteDeadline(time.Now().Add(15 * time.Second))
	hdr := []byte{byte(TypeHello), byte(FlagRequest), 1}
	hdr = appendUvarint(hdr, uint64(frame))
	var sent int64
	n, err := str.Write(hdr)
	sent += int64(n)
	chunk := make([]byte, 64<<10)
	for err == nil && sent < int64(frame) {
		n, err = str.Write(chunk)
		sent += int64(n)
	}
	if err == nil {
		return sent, fmt.Errorf("the listener took the whole %d-byte frame", frame)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return sent, fmt.Errorf("the listener neither read nor closed after %d bytes", sent)
	}
	return sent, nil
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// noApplicationProtocol is the QUIC error code of TLS alert 120.
const noApplicationProtocol = quic.TransportErrorCode(0x100 + 120)

// TestUnknownALPNAlert: a client offering only ALPNs nobody registered is
// refused with the no_application_protocol alert, also when the caller's
// tls.Config picks its configuration per ALPN with a GetConfigForClient
// that fails on unknown ones (as crypto/identity's does); that failure
// used to reach the client as an internal_error alert.
func TestUnknownALPNAlert(t *testing.T) {
	pki := newTestPKI(t, "ca")
	perALPN := pki.serverTLS(t)
	base := pki.serverTLS(t)
	base.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		for _, p := range chi.SupportedProtos {
			if p == ALPNAgent || p == ALPNEnroll {
				return perALPN, nil
			}
		}
		return nil, errors.New("no known ALPN")
	}
	l, err := Listen("127.0.0.1:0", base, nil)
	if err != nil {
		t.Fatal(err)
	}
	for alpn, h := range map[string]Handler{ALPNAgent: newAgentHandler(), ALPNEnroll: HandlerFuncs{}} {
		if err := l.Handle(alpn, h); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = l.Serve(context.Background()) }()
	t.Cleanup(func() { _ = l.Close() })

	for _, tt := range []struct{ name, cn, alpn string }{
		{"unknown ALPN with a certificate", "agent-1", "fedge-nonsense/9"},
		{"unknown ALPN without a certificate", "", "h3"},
		{"unregistered fedge ALPN", "agent-1", ALPNRaft},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(testCtx(t), l.Addr().String(), pki.clientTLS(t, tt.cn), tt.alpn, &Config{HandshakeTimeout: 3 * time.Second})
			var te *quic.TransportError
			if !errors.As(err, &te) || te.ErrorCode != noApplicationProtocol {
				t.Fatalf("err = %v, want the no_application_protocol alert", err)
			}
		})
	}
	// The registered ALPNs still work.
	s, err := Dial(testCtx(t), l.Addr().String(), pki.clientTLS(t, "agent-1"), ALPNAgent, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestNewConnectionReplacesDialedOne: a peer killed without closing its
// connections (its socket just vanishes, as with kill -9) and restarted on
// the same address dials in; the listener must drop the connection it had
// dialed to the dead process at once, so its next stream reaches the new
// one instead of vanishing until an idle timeout.
func TestNewConnectionReplacesDialedOne(t *testing.T) {
	pki := newTestPKI(t, "ca")
	a := startListener(t, pki, nil, nil)
	aln, err := a.ListenStreams(ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	b := startKillable(t, pki, nil)
	bln, err := b.ListenStreams(ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	addrB := b.Addr().String()
	ctx := testCtx(t)
	roundTrip(t, a, bln, addrB, pki)

	// B dies: its socket closes without a word to A, and stays dead for
	// longer than a live peer is ever silent.
	_ = b.udp.Close()
	time.Sleep(replaceQuiet) // the fault's duration, not a synchronisation
	b2, err := Listen(addrB, pki.serverTLS(t), nil)
	if err != nil {
		t.Fatalf("restarting B on %s: %v", addrB, err)
	}
	b2ln, err := b2.ListenStreams(ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = b2.Serve(context.Background()) }()
	t.Cleanup(func() { _ = b2.Close() })

	// The new B speaks first (as a restarted Raft node asks for votes).
	c, err := b2.DialStream(ctx, a.Addr().String(), pki.clientTLS(t, "coord-b"), ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A serves the new connection's streams once it has looked at it.
	select {
	case in := <-acceptOne(t, aln):
		defer in.Close()
	case <-ctx.Done():
		t.Fatal("A never accepted the restarted B's stream")
	}
	roundTrip(t, a, b2ln, addrB, pki)
}

// startKillable starts a listener the test may kill by closing its socket
// (Serve then fails, which startListener would report).
func startKillable(t *testing.T, pki *testPKI, cfg *Config) *Listener {
	t.Helper()
	l, err := Listen("127.0.0.1:0", pki.serverTLS(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.Serve(context.Background()) }()
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// roundTrip opens a stream from l to addr and checks that ln (the peer's
// raw-stream listener) receives what it carries within 2 s.
func roundTrip(t *testing.T, l *Listener, ln net.Listener, addr string, pki *testPKI) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err == nil {
			got <- b
		}
	}()
	c, err := l.DialStream(ctx, addr, pki.clientTLS(t, "coord-a"), ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "ping" {
			t.Fatalf("got %q", b)
		}
	case <-ctx.Done():
		t.Fatal("the stream did not reach the peer within 2 s")
	}
}

// TestDialedStreamConnNoticesDeadPeer: a raw-stream connection to a peer
// that vanished closes after Config.StreamMaxIdleTimeout, not the session
// idle timeout.
func TestDialedStreamConnNoticesDeadPeer(t *testing.T) {
	pki := newTestPKI(t, "ca")
	a := startListener(t, pki, &Config{StreamKeepAlivePeriod: 200 * time.Millisecond, StreamMaxIdleTimeout: time.Second}, nil)
	b := startKillable(t, pki, nil)
	bln, err := b.ListenStreams(ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, bln, b.Addr().String(), pki)
	a.mu.Lock()
	e := a.dials[ALPNRaft+" "+b.Addr().String()]
	a.mu.Unlock()
	e.mu.Lock()
	conn := e.conn
	e.mu.Unlock()
	start := time.Now()
	_ = b.udp.Close()
	select {
	case <-conn.Context().Done():
		t.Logf("dead peer noticed after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the connection to a dead peer still stands after 5 s")
	}
}

// TestLiveDialsSurviveEachOther: two live nodes that dial each other at
// the same time (as Raft candidates do in an election) keep their
// connections: a new incoming connection replaces only a dialed one whose
// peer has been silent.
func TestLiveDialsSurviveEachOther(t *testing.T) {
	pki := newTestPKI(t, "ca")
	a, b := startListener(t, pki, nil, nil), startListener(t, pki, nil, nil)
	ctx := testCtx(t)
	echo := func(l *Listener) {
		ln, err := l.ListenStreams(ALPNRaft)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 1)
					if _, err := io.ReadFull(c, buf); err == nil {
						_, _ = c.Write(buf)
					}
				}()
			}
		}()
	}
	echo(a)
	echo(b)
	ping := func(from, to *Listener, name string) error {
		c, err := from.DialStream(ctx, to.Addr().String(), pki.clientTLS(t, name), ALPNRaft)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte{7}); err != nil {
			return err
		}
		buf := make([]byte, 1)
		_, err = io.ReadFull(c, buf)
		return err
	}
	dialed := func(from, to *Listener) *quic.Conn {
		from.mu.Lock()
		e := from.dials[ALPNRaft+" "+to.Addr().String()]
		from.mu.Unlock()
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.conn
	}
	if err := ping(a, b, "coord-a"); err != nil {
		t.Fatal(err)
	}
	if err := ping(b, a, "coord-b"); err != nil {
		t.Fatal(err)
	}
	ca, cb := dialed(a, b), dialed(b, a)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, p := range [][2]*Listener{{a, b}, {b, a}} {
		wg.Add(1)
		go func(from, to *Listener) {
			defer wg.Done()
			name := "coord-a"
			if from == b {
				name = "coord-b"
			}
			for range 50 {
				if err := ping(from, to, name); err != nil {
					errs <- err
					return
				}
			}
		}(p[0], p[1])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if dialed(a, b) != ca || dialed(b, a) != cb {
		t.Fatal("live connections were replaced while both nodes dialed each other")
	}
}
