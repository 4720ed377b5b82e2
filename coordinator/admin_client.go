package coordinator

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
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// ErrUnreachable is returned when no coordinator answered.
var ErrUnreachable = errors.New("coordinator: no coordinator reachable")

// AdminClient talks to a coordinator cluster as an operator. It dials
// the given addresses in turn, follows redirects to the leader for writes,
// and reuses one session.
type AdminClient struct {
	// Consistent makes reads linearizable: they are served by the leader
	// after a Raft barrier, so they see every write acknowledged before.
	// Off, any node answers from its replica (possibly a little behind).
	Consistent bool

	addrs []string
	tls   *tls.Config

	mu   sync.Mutex
	sess *protocol.Session
	addr string
}

// NewAdminClient returns a client using an admin certificate.
func NewAdminClient(addrs []string, cert tls.Certificate, roots *x509.CertPool) (*AdminClient, error) {
	if len(addrs) == 0 {
		return nil, errors.New("coordinator.NewAdminClient: no coordinator addresses")
	}
	conf, err := identity.AdminConfig(cert, roots, protocol.ALPNAdmin)
	if err != nil {
		return nil, fmt.Errorf("coordinator.NewAdminClient: %w", err)
	}
	return &AdminClient{addrs: addrs, tls: conf}, nil
}

// LoadAdminClient reads an operator credential folder (ca.pem, admin.pem,
// admin.key, as InitCluster writes it).
func LoadAdminClient(dir string, addrs []string) (*AdminClient, error) {
	ca, err := LoadPEMCert(filepath.Join(dir, FileCACert))
	if err != nil {
		return nil, fmt.Errorf("coordinator.LoadAdminClient: %w", err)
	}
	tc, _, err := LoadKeyPair(filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin.key"), nil)
	if err != nil {
		return nil, fmt.Errorf("coordinator.LoadAdminClient: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return NewAdminClient(addrs, tc, roots)
}

// Addr returns the coordinator the client's session is with ("" before
// the first call).
func (c *AdminClient) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Close ends the session.
func (c *AdminClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		err := c.sess.Close()
		c.sess = nil
		return err
	}
	return nil
}

// rotate closes the current session and moves its address to the back of
// the list, so the next call asks another coordinator first.
func (c *AdminClient) rotate() {
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

// session returns a live session, dialing addr (or each address) if needed.
func (c *AdminClient) session(ctx context.Context, addr string) (*protocol.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil && c.sess.Err() == nil && (addr == "" || addr == c.addr) {
		return c.sess, nil
	}
	if c.sess != nil {
		c.sess.Close()
		c.sess = nil
	}
	targets := c.addrs
	if addr != "" {
		targets = []string{addr}
	}
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
		s, err := protocol.Dial(dctx, a, c.tls, protocol.ALPNAdmin, &protocol.Config{Hello: protocol.Hello{Software: "fedge-cli"}})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			continue
		}
		c.sess, c.addr = s, a
		// Try this one first next time.
		if addr == "" && i > 0 {
			c.addrs = append([]string{a}, append(append([]string(nil), c.addrs[:i]...), c.addrs[i+1:]...)...)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

// Call runs an admin verb: req is encoded as JSON, the answer decoded into
// resp (if not nil). Redirects to the leader are followed.
func (c *AdminClient) Call(ctx context.Context, verb string, req, resp any) error {
	var body []byte
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = b
	}
	addr := ""
	backoff := 100 * time.Millisecond
	for hop := 0; hop < 12; hop++ {
		s, err := c.dialReady(ctx, addr)
		if err != nil {
			return err
		}
		v := verb
		if c.Consistent && !writeVerbs[verb] {
			v = consistentPrefix + verb
		}
		out, err := s.Request(ctx, &protocol.AdminRequest{Verb: v, Body: body})
		var re *protocol.Redirect
		if errors.As(err, &re) {
			if re.Addr == "" {
				// An election is under way, or this node was partitioned
				// or removed and will never learn of a leader: ask the
				// next coordinator after a pause (a few seconds at most).
				c.rotate()
				if hop == 11 || !sleepCtx(ctx, backoff) {
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

// startingWait bounds how long a call waits for coordinators that answer
// protocol.ErrStarting (a node opening its Raft state after a restart
// takes a few seconds).
const startingWait = 30 * time.Second

// dialReady returns a session like session, retrying with backoff while
// the coordinators it reaches are still starting.
func (c *AdminClient) dialReady(ctx context.Context, addr string) (*protocol.Session, error) {
	backoff := 50 * time.Millisecond
	give := time.Now().Add(startingWait)
	for {
		s, err := c.session(ctx, addr)
		if err == nil || !errors.Is(err, protocol.ErrStarting) || time.Now().After(give) {
			return s, err
		}
		if !sleepCtx(ctx, backoff) {
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// FetchModel downloads a model version into memory and decodes it: how an
// operator or ML engineer evaluates a committed model on its own data.
func (c *AdminClient) FetchModel(ctx context.Context, version uint64) (*tensor.Model, error) {
	var f protocol.MemBlob
	if err := c.ExportModel(ctx, version, &f); err != nil {
		return nil, fmt.Errorf("coordinator.FetchModel %d: %w", version, err)
	}
	m, err := tensor.UnmarshalModel(f.Bytes())
	if err != nil {
		return nil, fmt.Errorf("coordinator.FetchModel %d: %w", version, err)
	}
	return m, nil
}

// EvaluateModel downloads a model version and evaluates it on ds: the ML
// engineer's own check on held-out data, outside the fleet.
func (c *AdminClient) EvaluateModel(ctx context.Context, version uint64, ds *tensor.Dataset) (tensor.Metrics, error) {
	m, err := c.FetchModel(ctx, version)
	if err != nil {
		return tensor.Metrics{}, err
	}
	met, err := tensor.Evaluate(m, ds)
	if err != nil {
		return tensor.Metrics{}, fmt.Errorf("coordinator.EvaluateModel %d: %w", version, err)
	}
	return met, nil
}

// ExportModel downloads a model version's file into w.
func (c *AdminClient) ExportModel(ctx context.Context, version uint64, w io.WriterAt) error {
	s, err := c.dialReady(ctx, "")
	if err != nil {
		return err
	}
	var p protocol.BlobProgress
	return s.FetchBlob(ctx, &protocol.ModelRequest{Version: version}, w, &p)
}
