package protocol

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN protocol IDs: one UDP port serves every role, and the TLS handshake
// picks the role. A version bump of a role's framing changes its ALPN.
const (
	// ALPNAgent carries agent sessions (mutual TLS with an agent cert).
	ALPNAgent = "fedge-agent/1"
	// ALPNRaft carries raw streams for the coordinators' Raft transport.
	ALPNRaft = "fedge-raft/1"
	// ALPNAdmin carries operator sessions from the CLI.
	ALPNAdmin = "fedge-admin/1"
	// ALPNEnroll is the only ALPN a client without a certificate may use:
	// it carries one EnrollRequest with a join token.
	ALPNEnroll = "fedge-enroll/1"
	// ALPNPeer carries sessions between coordinators (mutual TLS with a
	// coordinator cert): a follower forwards operators' writes to the
	// leader over it.
	ALPNPeer = "fedge-peer/1"
)

// QUIC application error codes sent when a connection is closed.
const (
	CloseNormal        quic.ApplicationErrorCode = 0 // orderly close
	CloseProtocolError quic.ApplicationErrorCode = 1 // malformed frame or unknown mandatory type
	CloseUnauthorized  quic.ApplicationErrorCode = 2 // certificate missing, wrong or not authorized for the ALPN
	CloseRefused       quic.ApplicationErrorCode = 3 // Hello refused (Error or Redirect sent)
	CloseShutdown      quic.ApplicationErrorCode = 4 // the listener is shutting down
)

// Default transport settings, suited to edge hosts behind NATs: a keep-alive
// well inside common NAT binding timeouts, and an idle timeout that notices a
// vanished host within a minute.
const (
	DefaultKeepAlivePeriod  = 15 * time.Second
	DefaultMaxIdleTimeout   = 60 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultMaxConcurrent    = 64
	DefaultMaxBulkStreams   = 32
	// Raw-stream (Raft) connections between coordinators use a short
	// keep-alive and idle timeout: a peer that died without closing (kill
	// -9, power loss) is noticed in seconds, not after a minute.
	DefaultStreamKeepAlivePeriod = time.Second
	DefaultStreamMaxIdleTimeout  = 5 * time.Second
	// Flow-control windows. The stream window bounds what one bulk
	// transfer has in flight, the connection window what all streams of a
	// session have together; that is also what a receiver may end up
	// buffering for a peer when it reads slower than the peer sends. quic-go
	// grows each window from its initial value up to the maximum while the
	// reader keeps up, and allocates nothing for an idle session. Larger
	// windows (64/96 MiB) gave no measurable gain on loopback
	// (BenchmarkBlobQUICLargeWindows_256MiB), while a coordinator taking
	// uploads from thousands of agents must bound that buffering, so the
	// maxima stay near quic-go's (6 MiB per stream, 8 MiB per connection:
	// 160 MB/s on a 50 ms path).
	DefaultInitialStreamWindow = 512 << 10
	DefaultMaxStreamWindow     = 6 << 20
	DefaultInitialConnWindow   = 768 << 10
	DefaultMaxConnWindow       = 8 << 20
)

// Errors of the transport.
var (
	// ErrClosed is returned by calls on a closed Session or Listener.
	ErrClosed = errors.New("protocol: closed")
	// ErrVersion means the peers share no capability version, or a message
	// type is newer than the session's negotiated version.
	ErrVersion = errors.New("protocol: no common capability version")
	// ErrInsecureTLS means a server tls.Config that does not require and
	// verify client certificates was given for a certificate ALPN.
	ErrInsecureTLS = errors.New("protocol: tls.Config must require and verify client certificates")
	// ErrUnauthorized means a connection was refused after the handshake
	// (Config.Authorize rejected it, or it presented no certificate).
	ErrUnauthorized = errors.New("protocol: peer not authorized")
)

// Config tunes the transport. The zero value means the documented defaults;
// a nil *Config is the zero value.
type Config struct {
	// KeepAlivePeriod is how often an idle connection sends a keep-alive.
	// If zero, DefaultKeepAlivePeriod; negative disables keep-alives.
	KeepAlivePeriod time.Duration
	// MaxIdleTimeout closes a connection that heard nothing for this long.
	// If zero, DefaultMaxIdleTimeout.
	MaxIdleTimeout time.Duration
	// HandshakeTimeout bounds the QUIC+TLS handshake and the Hello
	// exchange (and the first frame of a bulk stream). If zero,
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write on the control stream; a peer that
	// stops reading for longer loses its session. If zero,
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Limits bounds every length read from peers.
	Limits Limits
	// MinVersion and MaxVersion bound the capability versions offered or
	// accepted. If zero, MinVersion and CurrentVersion.
	MinVersion, MaxVersion uint32
	// MaxConcurrent bounds the peer's messages served at once per session;
	// further frames wait (back-pressure on the control stream). If zero,
	// DefaultMaxConcurrent.
	MaxConcurrent int
	// MaxBulkStreams bounds the bulk (or raw) streams a peer may have open
	// at once on one connection. If zero, DefaultMaxBulkStreams.
	MaxBulkStreams int64
	// Flow-control windows in bytes; zero fields mean the Default*Window
	// constants.
	InitialStreamWindow, MaxStreamWindow uint64
	InitialConnWindow, MaxConnWindow     uint64
	// StreamKeepAlivePeriod and StreamMaxIdleTimeout replace
	// KeepAlivePeriod and MaxIdleTimeout on the connections
	// Listener.DialStream opens (QUIC uses the smaller idle timeout of the
	// two ends, so both ends of a Raft connection notice a dead peer). If
	// zero, DefaultStreamKeepAlivePeriod and DefaultStreamMaxIdleTimeout.
	StreamKeepAlivePeriod, StreamMaxIdleTimeout time.Duration
	// Admission bounds what clients without a verified certificate may
	// hold on a Listener.
	Admission Admission
	// Handler serves the peer's messages and bulk streams. On a dialed
	// session it serves server pushes; nil answers every request with
	// CodeUnsupported. Listener.Handle takes its own handler.
	Handler Handler
	// Hello is the dialer's introduction; Dial sets its version fields.
	Hello Hello
	// Authorize, on a Listener, vets every connection after the TLS
	// handshake and before any stream is read; an error refuses it. Use
	// it to check that a certificate's role fits the ALPN (only
	// coordinators on ALPNRaft, only operators on ALPNAdmin).
	Authorize func(alpn string, cs tls.ConnectionState) error
	// Logger receives transport events; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns a copy of c (nil allowed) with defaults filled in.
func (c *Config) withDefaults() Config {
	var r Config
	if c != nil {
		r = *c
	}
	if r.KeepAlivePeriod == 0 {
		r.KeepAlivePeriod = DefaultKeepAlivePeriod
	}
	if r.MaxIdleTimeout <= 0 {
		r.MaxIdleTimeout = DefaultMaxIdleTimeout
	}
	if r.HandshakeTimeout <= 0 {
		r.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if r.WriteTimeout <= 0 {
		r.WriteTimeout = DefaultWriteTimeout
	}
	r.Limits = r.Limits.withDefaults()
	if r.MinVersion == 0 {
		r.MinVersion = MinVersion
	}
	if r.MaxVersion == 0 {
		r.MaxVersion = CurrentVersion
	}
	if r.MaxConcurrent <= 0 {
		r.MaxConcurrent = DefaultMaxConcurrent
	}
	if r.MaxBulkStreams <= 0 {
		r.MaxBulkStreams = DefaultMaxBulkStreams
	}
	if r.InitialStreamWindow == 0 {
		r.InitialStreamWindow = DefaultInitialStreamWindow
	}
	if r.MaxStreamWindow == 0 {
		r.MaxStreamWindow = DefaultMaxStreamWindow
	}
	if r.InitialConnWindow == 0 {
		r.InitialConnWindow = DefaultInitialConnWindow
	}
	if r.MaxConnWindow == 0 {
		r.MaxConnWindow = DefaultMaxConnWindow
	}
	if r.StreamKeepAlivePeriod <= 0 {
		r.StreamKeepAlivePeriod = DefaultStreamKeepAlivePeriod
	}
	if r.StreamMaxIdleTimeout <= 0 {
		r.StreamMaxIdleTimeout = DefaultStreamMaxIdleTimeout
	}
	r.Admission = r.Admission.withDefaults()
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	r := c.withDefaults()
	if r.MinVersion > r.MaxVersion {
		return fmt.Errorf("protocol.Config: MinVersion %d > MaxVersion %d", r.MinVersion, r.MaxVersion)
	}
	if r.KeepAlivePeriod > 0 && r.KeepAlivePeriod >= r.MaxIdleTimeout {
		return fmt.Errorf("protocol.Config: KeepAlivePeriod %v must be shorter than MaxIdleTimeout %v", r.KeepAlivePeriod, r.MaxIdleTimeout)
	}
	if r.StreamKeepAlivePeriod >= r.StreamMaxIdleTimeout {
		return fmt.Errorf("protocol.Config: StreamKeepAlivePeriod %v must be shorter than StreamMaxIdleTimeout %v", r.StreamKeepAlivePeriod, r.StreamMaxIdleTimeout)
	}
	if r.InitialStreamWindow > r.MaxStreamWindow || r.InitialConnWindow > r.MaxConnWindow {
		return errors.New("protocol.Config: an initial flow-control window exceeds its maximum")
	}
	return nil
}

// quicConfig translates c (with defaults) into quic-go's configuration.
func (c *Config) quicConfig() *quic.Config {
	keepAlive := c.KeepAlivePeriod
	if keepAlive < 0 {
		keepAlive = 0
	}
	return &quic.Config{
		HandshakeIdleTimeout:           c.HandshakeTimeout,
		MaxIdleTimeout:                 c.MaxIdleTimeout,
		KeepAlivePeriod:                keepAlive,
		InitialStreamReceiveWindow:     c.InitialStreamWindow,
		MaxStreamReceiveWindow:         c.MaxStreamWindow,
		InitialConnectionReceiveWindow: c.InitialConnWindow,
		MaxConnectionReceiveWindow:     c.MaxConnWindow,
		// One control stream plus the bulk streams.
		MaxIncomingStreams:    c.MaxBulkStreams + 1,
		MaxIncomingUniStreams: -1,
	}
}

// streamConfig is c with the raw-stream keep-alive and idle timeout.
func (c *Config) streamConfig() Config {
	r := *c
	r.KeepAlivePeriod, r.MaxIdleTimeout = c.StreamKeepAlivePeriod, c.StreamMaxIdleTimeout
	return r
}

// negotiate picks the highest capability version both ranges contain.
func negotiate(min, max, peerMin, peerMax uint32) (uint32, error) {
	v := max
	if peerMax < v {
		v = peerMax
	}
	lo := min
	if peerMin > lo {
		lo = peerMin
	}
	if v < lo || v == 0 {
		return 0, fmt.Errorf("%w: ours [%d, %d], peer's [%d, %d]", ErrVersion, min, max, peerMin, peerMax)
	}
	return v, nil
}
