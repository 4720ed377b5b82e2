package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// raftListener starts a listener with a raw-stream route on ALPNRaft and
// counts the connections that reach it.
func raftListener(t *testing.T, pki *testPKI) (*Listener, net.Listener, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	cfg := &Config{Authorize: func(alpn string, cs tls.ConnectionState) error {
		if alpn == ALPNRaft {
			conns.Add(1)
		}
		return nil
	}}
	l := startListener(t, pki, cfg, nil)
	ln, err := l.ListenStreams(ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	return l, ln, &conns
}

func acceptOne(t *testing.T, ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("Accept: %v", err)
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func TestStreamConnRoundTrip(t *testing.T) {
	pki := newTestPKI(t, "ca")
	l, ln, _ := raftListener(t, pki)
	dialers := []struct {
		name string
		dial func(ctx context.Context) (net.Conn, error)
	}{
		{"own connection", func(ctx context.Context) (net.Conn, error) {
			return DialStream(ctx, l.Addr().String(), pki.clientTLS(t, "coord-b"), ALPNRaft)
		}},
		{"listener connection", func(ctx context.Context) (net.Conn, error) {
			peer := startListener(t, pki, nil, nil)
			return peer.DialStream(ctx, l.Addr().String(), pki.clientTLS(t, "coord-b"), ALPNRaft)
		}},
	}
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			accepted := acceptOne(t, ln)
			c, err := d.dial(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			// The server speaks first: Accept must not wait for client data.
			srv := <-accepted
			if srv == nil {
				t.FailNow()
			}
			if cs := srv.(*StreamConn).ConnectionState(); cs.PeerCertificates[0].Subject.CommonName != "coord-b" {
				t.Fatalf("peer %v", cs.PeerCertificates[0].Subject)
			}
			if _, err := srv.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			greet := make([]byte, 5)
			if _, err := io.ReadFull(c, greet); err != nil || string(greet) != "hello" {
				t.Fatalf("greeting %q, %v", greet, err)
			}

			// 2 MiB each way at once.
			up, down := randomBytes(t, 2<<20), randomBytes(t, 2<<20)
			errc := make(chan error, 2)
			go func() {
				_, err := c.Write(up)
				errc <- err
			}()
			go func() {
				_, err := srv.Write(down)
				errc <- err
			}()
			gotUp, gotDown := make([]byte, len(up)), make([]byte, len(down))
			if _, err := io.ReadFull(srv, gotUp); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, gotDown); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
				t.Fatal("data corrupted")
			}

			// Deadlines: a read with nothing to read times out, and the
			// stream still works afterwards.
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var ne net.Error
			if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read past deadline: %v", err)
			}
			_ = c.SetReadDeadline(time.Time{})
			if _, err := srv.Write([]byte{42}); err != nil {
				t.Fatal(err)
			}
			one := make([]byte, 1)
			if _, err := io.ReadFull(c, one); err != nil || one[0] != 42 {
				t.Fatalf("after deadline: %v %v", one, err)
			}

			// Clean close: the last bytes arrive, then EOF; our side then
			// fails with net.ErrClosed, and Close is idempotent.
			if _, err := c.Write([]byte("bye")); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(srv)
			if err != nil || string(rest) != "bye" {
				t.Fatalf("after close the server read %q, %v", rest, err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after close: %v", err)
			}
			if _, err := c.Read(one); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second close: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestListenerDialStreamReusesConnection checks that the listener's dialer
// multiplexes streams on one QUIC connection and redials after it dies.
func TestListenerDialStreamReusesConnection(t *testing.T) {
	pki := newTestPKI(t, "ca")
	l, ln, conns := raftListener(t, pki)
	peer := startListener(t, pki, nil, nil)
	ctx := testCtx(t)
	var clients []net.Conn
	for i := range 3 {
		accepted := acceptOne(t, ln)
		c, err := peer.DialStream(ctx, l.Addr().String(), pki.clientTLS(t, "coord-b"), ALPNRaft)
		if err != nil {
			t.Fatal(err)
		}
		srv := <-accepted
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(srv, b); err != nil || b[0] != byte(i) {
			t.Fatalf("stream %d: %v %v", i, b, err)
		}
		clients = append(clients, c)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 3 streams, want 1", n)
	}
	if clients[0].LocalAddr().String() != peer.Addr().String() {
		t.Fatalf("dialed from %v, not the listener's port %v", clients[0].LocalAddr(), peer.Addr())
	}
	// Kill the connection from the server side; the next dial redials.
	dead := clients[0].(*StreamConn).conn
	dead.CloseWithError(0, "test")
	<-dead.Context().Done()
	accepted := acceptOne(t, ln)
	c, err := peer.DialStream(ctx, l.Addr().String(), pki.clientTLS(t, "coord-b"), ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if srv := <-accepted; srv == nil {
		t.Fatal("no stream after redial")
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after redial, want 2", n)
	}
}

func TestStreamListenerClose(t *testing.T) {
	pki := newTestPKI(t, "ca")
	l, ln, _ := raftListener(t, pki)
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
	}
	// The ALPN is no longer offered.
	if _, err := DialStream(testCtx(t), l.Addr().String(), pki.clientTLS(t, "x"), ALPNRaft); err == nil {
		t.Fatal("dial to a closed stream listener succeeded")
	}
}

// TestPeerShutdownReadsAsEOF: when the peer's stream listener shuts down
// (a node stopping in order), a reader on its streams sees io.EOF, as over
// TCP, not an error (Raft logs every non-EOF read error as an ERROR).
func TestPeerShutdownReadsAsEOF(t *testing.T) {
	pki := newTestPKI(t, "ca")
	peer, ln, _ := raftListener(t, pki)
	dialer, _, _ := raftListener(t, pki)
	accepted := acceptOne(t, ln)
	c, err := dialer.DialStream(testCtx(t), peer.Addr().String(), pki.clientTLS(t, "coord-a"), ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := <-accepted
	if srv == nil {
		t.Fatal("no stream accepted")
	}
	if err := ln.Close(); err != nil { // the peer stops: CloseShutdown
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(c, make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			t.Fatalf("read after the peer's shutdown: %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not return after the peer's shutdown")
	}
}

// TestCloseAbortsDialStream: closing a listener while one of its
// DialStream calls is still handshaking with a peer that never answers (a
// node killed with SIGKILL) returns at once and fails the dial, instead of
// waiting for the handshake timeout (the dial holds the connection cache's
// lock that Close takes).
func TestCloseAbortsDialStream(t *testing.T) {
	pki := newTestPKI(t, "ca")
	// A UDP socket that reads every datagram and never answers.
	hole, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	heard := make(chan struct{})
	go func() {
		b := make([]byte, 2048)
		if _, _, err := hole.ReadFromUDP(b); err == nil {
			close(heard)
		}
	}()
	l, err := Listen("127.0.0.1:0", pki.serverTLS(t), &Config{HandshakeTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	dialed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		c, err := l.DialStream(ctx, hole.LocalAddr().String(), pki.clientTLS(t, "coord-b"), ALPNRaft)
		if c != nil {
			c.Close()
		}
		dialed <- err
	}()
	select {
	case <-heard:
	case <-time.After(20 * time.Second):
		t.Fatal("the dial sent nothing")
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a dial in progress")
	}
	if err := <-dialed; err == nil {
		t.Fatal("the dial to a peer that never answered succeeded")
	}
}
