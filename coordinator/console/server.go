package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors of New and Login.
var (
	// ErrInsecure: the console would serve plain HTTP on an address other
	// hosts can reach; give it a certificate, or allow it explicitly.
	ErrInsecure = errors.New("console: a non-loopback address needs TLS (ui_tls_cert, ui_tls_key) or ui_allow_insecure_http")
	// ErrLoginTTL: a login link may live at most MaxLoginTTL.
	ErrLoginTTL = errors.New("console: login link lifetime out of range")
	// ErrTooManyLogins: too many login links are outstanding.
	ErrTooManyLogins = errors.New("console: too many login links outstanding")
)

// Defaults and bounds of Config and Login.
const (
	DefaultLoginTTL   = 2 * time.Minute
	MaxLoginTTL       = 10 * time.Minute
	DefaultSessionTTL = 8 * time.Hour
	// maxLogins and maxSessions bound what the console holds in memory:
	// an operator who mints links in a loop cannot grow it.
	maxLogins   = 64
	maxSessions = 1024
)

// Config configures a console. Zero values mean the documented defaults.
type Config struct {
	// Listen is the TCP host:port to serve on (required). Port 0 picks a
	// free port (Server.Addr).
	Listen string
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS with that key
	// pair; TLS, if set, wins over them.
	TLSCertFile, TLSKeyFile string
	TLS                     *tls.Config
	// AllowInsecureHTTP lets the console serve plain HTTP on an address
	// that is not loopback (behind a TLS-terminating proxy, say). Without
	// it New refuses with ErrInsecure.
	AllowInsecureHTTP bool
	// URL is the base URL login links name (e.g. https://fedge.example:8443);
	// default: the scheme and the bound address.
	URL string
	// Node is the coordinator's ID, shown in the page header.
	Node string
	// SessionTTL bounds a session; default DefaultSessionTTL. A session
	// also ends when the operator's certificate expires or is revoked.
	SessionTTL time.Duration
	// Logger receives the console's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Operator is who a login link (and the session it opens) acts as: the
// name and serial of the admin certificate that minted it.
type Operator struct {
	Name    string
	Serial  string    // hex, as the cluster's revocation list holds it
	Expires time.Time // the certificate's NotAfter; zero: no bound
}

// Backend carries the console's calls to the cluster.
type Backend interface {
	// Call runs an admin verb (coordinator/api's Verb*, with the
	// ConsistentPrefix for a linearizable read) for who
	// ("operator:<name> (console)") and returns the JSON answer, or the
	// server's error (*protocol.Error, *protocol.Redirect).
	Call(ctx context.Context, who, verb string, body []byte) ([]byte, error)
	// Model returns the file of a committed model version from the
	// coordinator's replica, or an error wrapping a protocol.Error of
	// code not found.
	Model(ctx context.Context, version uint64) ([]byte, error)
	// Revoked reports whether the operator certificate with this serial
	// has been revoked.
	Revoked(serial string) bool
}

// Server is a running console.
type Server struct {
	cfg    Config
	log    *slog.Logger
	be     Backend
	ln     net.Listener
	srv    *http.Server
	tls    bool
	base   string
	now    func() time.Time
	h      http.Handler
	pages  *pages
	closed chan struct{}

	mu       sync.Mutex
	logins   map[string]login    // by SHA-256 of the link's token
	sessions map[string]*session // by SHA-256 of the cookie
}

type login struct {
	op      Operator
	expires time.Time
}

// session is one logged-in browser.
type session struct {
	op      Operator
	csrf    string
	expires time.Time
	flash   string // the last action's outcome, shown once (under Server.mu)
}

// New checks the configuration, listens and serves the console until
// Close. A non-loopback address without TLS is refused unless
// AllowInsecureHTTP.
func New(cfg Config, be Backend) (*Server, error) {
	if cfg.Listen == "" {
		return nil, errors.New("console.New: no listen address")
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	s := &Server{cfg: cfg, be: be, log: cfg.Logger, now: cfg.Now, closed: make(chan struct{}),
		logins: map[string]login{}, sessions: map[string]*session{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	tc := cfg.TLS
	if tc == nil && (cfg.TLSCertFile != "" || cfg.TLSKeyFile != "") {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return nil, errors.New("console.New: give both a TLS certificate and its key")
		}
		kp, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("console.New: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	}
	s.tls = tc != nil
	if !s.tls && !cfg.AllowInsecureHTTP {
		loop, err := loopback(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("console.New: %w", err)
		}
		if !loop {
			return nil, fmt.Errorf("console.New: %s: %w", cfg.Listen, ErrInsecure)
		}
	}
	p, err := newPages()
	if err != nil {
		return nil, fmt.Errorf("console.New: %w", err)
	}
	s.pages = p
	s.h = s.routes()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("console.New: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	s.ln = ln
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	s.base = strings.TrimSuffix(cfg.URL, "/")
	if s.base == "" {
		s.base = scheme + "://" + ln.Addr().String()
	}
	s.srv = &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.closed)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("console server stopped", "err", err)
		}
	}()
	return s, nil
}

// loopback reports whether every address host:port can name is a
// loopback one ("localhost" counts; an empty or unspecified host does
// not).
func loopback(hostport string) (bool, error) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL login links start with.
func (s *Server) URL() string { return s.base }

// Handler is the console's HTTP handler (what the server serves).
func (s *Server) Handler() http.Handler { return s.h }

// Close stops serving and forgets every session and login link.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.closed
	s.mu.Lock()
	clear(s.logins)
	clear(s.sessions)
	s.mu.Unlock()
	return err
}

// Login mints a one-time login link for op, valid for ttl (zero:
// DefaultLoginTTL; at most MaxLoginTTL). Only its hash is kept.
func (s *Server) Login(op Operator, ttl time.Duration) (link string, expires time.Time, err error) {
	if ttl == 0 {
		ttl = DefaultLoginTTL
	}
	if ttl < 0 || ttl > MaxLoginTTL {
		return "", time.Time{}, fmt.Errorf("console.Login: %v (at most %v): %w", ttl, MaxLoginTTL, ErrLoginTTL)
	}
	tok := randomToken()
	now := s.now()
	expires = now.Add(ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	if len(s.logins) >= maxLogins {
		return "", time.Time{}, fmt.Errorf("console.Login: %w", ErrTooManyLogins)
	}
	s.logins[hashToken(tok)] = login{op: op, expires: expires}
	s.log.Info("console login link minted", "operator", op.Name, "expires", expires)
	return s.base + "/login?token=" + url.QueryEscape(tok), expires, nil
}

// pruneLocked forgets expired login links and sessions.
func (s *Server) pruneLocked(now time.Time) {
	for k, l := range s.logins {
		if !now.Before(l.expires) {
			delete(s.logins, k)
		}
	}
	for k, ss := range s.sessions {
		if !now.Before(ss.expires) {
			delete(s.sessions, k)
		}
	}
}

// redeem spends a login link and opens a session: it returns the
// session's cookie value, or false when the token is unknown, spent or
// expired.
func (s *Server) redeem(tok string) (string, *session, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := hashToken(tok)
	l, ok := s.logins[k]
	delete(s.logins, k) // spent, whatever happens next
	if !ok || !now.Before(l.expires) || s.be.Revoked(l.op.Serial) {
		return "", nil, false
	}
	s.pruneLocked(now)
	if len(s.sessions) >= maxSessions {
		// Drop the session closest to its end.
		var oldest string
		for k, ss := range s.sessions {
			if oldest == "" || ss.expires.Before(s.sessions[oldest].expires) {
				oldest = k
			}
		}
		delete(s.sessions, oldest)
	}
	exp := now.Add(s.cfg.SessionTTL)
	if !l.op.Expires.IsZero() && l.op.Expires.Before(exp) {
		exp = l.op.Expires
	}
	cookie := randomToken()
	ss := &session{op: l.op, csrf: randomToken(), expires: exp}
	s.sessions[hashToken(cookie)] = ss
	return cookie, ss, true
}

// session returns the live session of r's cookie, if any.
func (s *Server) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := hashToken(c.Value)
	ss, ok := s.sessions[k]
	if !ok {
		return nil
	}
	if !now.Before(ss.expires) || s.be.Revoked(ss.op.Serial) {
		delete(s.sessions, k)
		return nil
	}
	return ss
}

// logout ends r's session.
func (s *Server) logout(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.mu.Lock()
		delete(s.sessions, hashToken(c.Value))
		s.mu.Unlock()
	}
}

// cookieName names the session cookie.
const cookieName = "fedge_console"

// sessionCookie is the session cookie: HttpOnly, SameSite=Strict, and
// Secure when the console serves TLS.
func (s *Server) sessionCookie(value string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: value, Path: "/", Expires: expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.tls,
	}
}

// validCSRF reports whether a form's CSRF token is the session's.
func validCSRF(ss *session, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// sameOrigin reports whether a state-changing request comes from the
// console's own pages: its Origin (when the browser sends one) names the
// host it was sent to, and its Sec-Fetch-Site (likewise) says so.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// randomToken is a secret of 128 random bits (login links, cookies,
// CSRF tokens).
func randomToken() string { return rand.Text() }

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}
