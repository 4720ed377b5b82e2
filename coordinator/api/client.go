package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// Errors the Client returns (wrapped) besides the server's own
// (*protocol.Error, whose Code says not found, bad request, revoked, …).
var (
	// ErrUnreachable: no coordinator answered.
	ErrUnreachable = errors.New("no coordinator reachable")
	// ErrNoLeader: the coordinators answered, but none knows a leader
	// (an election is under way, or a quorum is down).
	ErrNoLeader = errors.New("no leader")
)

// The files of an operator credential folder, as `fedge init` writes it.
const (
	FileCA        = "ca.pem"    // the cluster CA certificate
	FileAdminCert = "admin.pem" // the operator's certificate
	FileAdminKey  = "admin.key" // the operator's Ed25519 key
)

// QueryOptions qualify a read.
type QueryOptions struct {
	// Consistent makes the read linearizable: the leader answers after a
	// Raft barrier, so it sees every write acknowledged before. Off, any
	// coordinator answers from its replica (possibly a little behind),
	// except for the reads only the leader can answer (agents' connection
	// state, why a job or rollout waits), which followers forward.
	Consistent bool
}

// Client talks to a coordinator cluster as an operator. It dials the
// given addresses in turn (a node that answers "starting" is retried),
// follows redirects to the leader (followers also forward writes
// themselves), and reuses one session. It is safe for concurrent use.
type Client struct {
	addrs     []string
	tls       *tls.Config
	transport Transport // set: calls go through it, not QUIC

	mu   sync.Mutex
	sess *protocol.Session
	addr string
}

// New returns a client of the coordinators at addrs using an operator
// certificate (cert) and the cluster's CA (roots).
func New(addrs []string, cert tls.Certificate, roots *x509.CertPool) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("api.New: no coordinator addresses")
	}
	conf, err := identity.AdminConfig(cert, roots, protocol.ALPNAdmin)
	if err != nil {
		return nil, fmt.Errorf("api.New: %w", err)
	}
	return &Client{addrs: append([]string(nil), addrs...), tls: conf}, nil
}

// Transport carries one admin call for a Client without a QUIC session:
// a coordinator's web console calls its own node this way, as the
// operator logged in to it. verb is the wire verb (with ConsistentPrefix
// for a linearizable read); the answer is the JSON body of the response,
// or the server's error (*protocol.Error, *protocol.Redirect).
type Transport func(ctx context.Context, verb string, body []byte) ([]byte, error)

// NewWithTransport returns a client whose calls go through t. Model
// downloads (ExportModel, FetchModel) need a session and fail on it.
func NewWithTransport(t Transport) *Client {
	return &Client{transport: t}
}

// Load returns a client using an operator credential folder (ca.pem,
// admin.pem, admin.key).
func Load(dir string, addrs []string) (*Client, error) {
	ca, err := identity.LoadPEMCert(filepath.Join(dir, FileCA))
	if err != nil {
		return nil, fmt.Errorf("api.Load: %w", err)
	}
	tc, _, err := identity.LoadKeyPair(filepath.Join(dir, FileAdminCert), filepath.Join(dir, FileAdminKey), nil)
	if err != nil {
		return nil, fmt.Errorf("api.Load: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return New(addrs, tc, roots)
}

// Addr returns the coordinator the client's session is with ("" before
// the first call).
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Close ends the session.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		err := c.sess.Close()
		c.sess = nil
		return err
	}
	return nil
}

// drop closes s if it is still the client's session, moving its address
// to the back of the list.
func (c *Client) drop(s *protocol.Session) {
	c.mu.Lock()
	current := c.sess == s
	c.mu.Unlock()
	if current {
		c.rotate()
	}
}

// rotate closes the current session and moves its address to the back of
// the list, so the next call asks another coordinator first.
func (c *Client) rotate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return
	}
	c.sess.Close()
	c.sess = nil
	var rest []string
	for _, a := range c.addrs {
		if a != c.addr {
			rest = append(rest, a)
		}
	}
	if len(rest) < len(c.addrs) {
		c.addrs = append(rest, c.addr)
	}
}

// session returns a live session, dialing addr (or each address in turn)
// if needed. It dials without holding the lock, so a slow handshake does
// not block other callers' use of a live session.
func (c *Client) session(ctx context.Context, addr string) (*protocol.Session, error) {
	c.mu.Lock()
	if c.sess != nil && c.sess.Err() == nil && (addr == "" || addr == c.addr) {
		s := c.sess
		c.mu.Unlock()
		return s, nil
	}
	targets := c.addrs
	if addr != "" {
		targets = []string{addr}
	}
	targets = append([]string(nil), targets...)
	c.mu.Unlock()

	var errs []error
	for i, a := range targets {
		// Each address gets its share of the time left, so one dead
		// coordinator (whose handshake never answers) cannot use up the
		// whole deadline before the live ones are tried.
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if d, ok := ctx.Deadline(); ok && len(targets) > 1 {
			share := time.Until(d) / time.Duration(len(targets)-i)
			dctx, cancel = context.WithTimeout(ctx, share)
		}
		s, err := protocol.Dial(dctx, a, c.tls, protocol.ALPNAdmin, &protocol.Config{
			Hello:           protocol.Hello{Software: "fedge-cli"},
			KeepAlivePeriod: SessionTimeout / 5, MaxIdleTimeout: SessionTimeout,
		})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		c.mu.Lock()
		if cur := c.sess; cur != nil && cur.Err() == nil && (addr == "" || addr == c.addr) {
			// Another call dialed while this one did (the client is
			// shared by goroutines): keep the session it installed, which
			// its callers may be using, and drop this one.
			c.mu.Unlock()
			s.Close()
			return cur, nil
		}
		if c.sess != nil {
			c.sess.Close()
		}
		c.sess, c.addr = s, a
		// Try this one first next time.
		if addr == "" {
			rest := []string{a}
			for _, x := range c.addrs {
				if x != a {
					rest = append(rest, x)
				}
			}
			c.addrs = rest
		}
		c.mu.Unlock()
		return s, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

// Call runs an admin verb by name: req is encoded as JSON, the answer
// decoded into resp (if not nil). Redirects to the leader are followed.
// The typed methods (Jobs().Start, …) are built on it; a write verb is
// never sent with the consistency prefix.
func (c *Client) Call(ctx context.Context, verb string, q QueryOptions, req, resp any) error {
	return c.do(ctx, verb, q, req, resp, false)
}

// Read is Call for a verb that changes nothing (a list, show or status):
// when the coordinator it asks does not answer (it died, froze, or the
// network broke), it asks another one once, which a write cannot do
// without risking running twice.
func (c *Client) Read(ctx context.Context, verb string, q QueryOptions, req, resp any) error {
	return c.do(ctx, verb, q, req, resp, true)
}

func (c *Client) do(ctx context.Context, verb string, q QueryOptions, req, resp any, read bool) error {
	var body []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = b
	}
	if c.transport != nil {
		v := verb
		if q.Consistent {
			v = ConsistentPrefix + verb
		}
		out, err := c.transport(ctx, v, body)
		if err != nil {
			return fmt.Errorf("%s: %w", verb, err)
		}
		if resp == nil || len(out) == 0 || string(out) == "null" {
			return nil
		}
		return json.Unmarshal(out, resp)
	}
	addr := ""
	retried := false
	backoff := 100 * time.Millisecond
	for hop := 0; hop < 12; hop++ {
		s, err := c.dialReady(ctx, addr)
		if err != nil {
			return err
		}
		v := verb
		if q.Consistent {
			v = ConsistentPrefix + verb
		}
		out, err := s.Request(ctx, &protocol.AdminRequest{Verb: v, Body: body})
		var re *protocol.Redirect
		if errors.As(err, &re) {
			if re.Addr == "" {
				// An election is under way, or this node was partitioned
				// or removed and will never learn of a leader: ask the
				// next coordinator after a pause (a few seconds at most).
				c.rotate()
				if hop == 11 || !wait.Sleep(ctx, backoff) {
					return fmt.Errorf("%s: %w", verb, ErrNoLeader)
				}
				backoff = min(2*backoff, time.Second)
				addr = ""
				continue
			}
			addr = re.Addr
			continue
		}
		if err != nil {
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				// No answer (the node died, froze or the network broke):
				// the session may never recover, so drop it; the next call
				// dials again, another coordinator first. A read goes
				// there now.
				c.drop(s)
				if read && !retried && ctx.Err() == nil {
					retried = true
					addr = ""
					continue
				}
			}
			return fmt.Errorf("%s: %w", verb, err)
		}
		ar, ok := out.(*protocol.AdminResponse)
		if !ok {
			return fmt.Errorf("%s: unexpected %s answer", verb, out.Type())
		}
		if resp == nil || len(ar.Body) == 0 || string(ar.Body) == "null" {
			return nil
		}
		return json.Unmarshal(ar.Body, resp)
	}
	return fmt.Errorf("%s: too many redirects", verb)
}

// SessionTimeout is how long a client's session may hear nothing from its
// coordinator before it counts as dead (killed, frozen, cut off); the
// client sends keep-alives five times as often, so a coordinator busy with
// a long call keeps the session. A read on a dead session then moves to
// another coordinator (Read) instead of waiting out QUIC's default idle
// timeout of a minute.
const SessionTimeout = 5 * time.Second

// startingWait bounds how long a call waits for coordinators that answer
// protocol.ErrStarting (a node opening its Raft state after a restart
// takes a few seconds).
const startingWait = 30 * time.Second

// dialReady returns a session like session, retrying with backoff while
// the coordinators it reaches are still starting.
func (c *Client) dialReady(ctx context.Context, addr string) (*protocol.Session, error) {
	backoff := 50 * time.Millisecond
	give := time.Now().Add(startingWait)
	for {
		s, err := c.session(ctx, addr)
		if err == nil || !errors.Is(err, protocol.ErrStarting) || time.Now().After(give) {
			return s, err
		}
		if !wait.Sleep(ctx, backoff) {
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// FetchModel downloads a model version into memory and decodes it: how an
// operator or ML engineer evaluates a committed model on its own data.
func (c *Client) FetchModel(ctx context.Context, version uint64) (*tensor.Model, error) {
	var f protocol.MemBlob
	if err := c.ExportModel(ctx, version, &f); err != nil {
		return nil, fmt.Errorf("api.FetchModel %d: %w", version, err)
	}
	m, err := tensor.UnmarshalModel(f.Bytes())
	if err != nil {
		return nil, fmt.Errorf("api.FetchModel %d: %w", version, err)
	}
	return m, nil
}

// EvaluateModel downloads a model version and evaluates it on ds: the ML
// engineer's own check on held-out data, outside the fleet.
func (c *Client) EvaluateModel(ctx context.Context, version uint64, ds *tensor.Dataset) (tensor.Metrics, error) {
	m, err := c.FetchModel(ctx, version)
	if err != nil {
		return tensor.Metrics{}, err
	}
	met, err := tensor.Evaluate(m, ds)
	if err != nil {
		return tensor.Metrics{}, fmt.Errorf("api.EvaluateModel %d: %w", version, err)
	}
	return met, nil
}

// ExportModel downloads a model version's file into w.
func (c *Client) ExportModel(ctx context.Context, version uint64, w io.WriterAt) error {
	if c.transport != nil {
		return errors.New("api.ExportModel: a client over a Transport has no session to download on")
	}
	s, err := c.dialReady(ctx, "")
	if err != nil {
		return err
	}
	var p protocol.BlobProgress
	return s.FetchBlob(ctx, &protocol.ModelRequest{Version: version}, w, &p)
}
