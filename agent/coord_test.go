package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// testCoord is a minimal coordinator over the real transport: a QUIC
// listener with the cluster's TLS (identity.ServerConfig with a
// revocation list), serving enrollment with one-time tokens, agent
// sessions (heartbeats with model announcements, renewal, round stages
// through a hub, whose SecAgg+ server steps are stagedriver.SecAgg, the
// coordinator's own) and model downloads.
type testCoord struct {
	t        *testing.T
	ca       *identity.CA
	ln       *protocol.Listener
	revoked  identity.RevocationList
	hub      *hub
	agentTTL time.Duration
	// redirectTo, if set, makes this node a follower that redirects every
	// Hello there.
	redirectTo string

	mu       sync.Mutex
	tokens   map[string]*identity.TokenRecord
	sessions map[string]*protocol.Session
	target   uint64 // model version agents should serve; 0 none

	heartbeats, renewals, downloads, enrollments atomic.Int64
	// status is the last status report a heartbeat carried.
	status atomic.Pointer[protocol.AgentStatus]
	// concurrent is the last Heartbeat.Concurrent (0: none sent yet, or
	// a heartbeat without it).
	concurrent atomic.Uint32
	// declined are the rounds agents withdrew from (RoundJoin, Accept
	// false), in order.
	declined []uint64
}

func newTestCoord(t *testing.T, ca *identity.CA, h *hub) *testCoord {
	t.Helper()
	return newTestCoordVersion(t, ca, h, 0)
}

// newTestCoordVersion is newTestCoord speaking protocol versions up to
// maxVersion (0: the current one), as an older coordinator does.
func newTestCoordVersion(t *testing.T, ca *identity.CA, h *hub, maxVersion uint32) *testCoord {
	t.Helper()
	if ca == nil {
		var err error
		if ca, err = identity.NewCA(rand.Reader, "testcluster", time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	c := &testCoord{t: t, ca: ca, hub: h, agentTTL: time.Hour, tokens: map[string]*identity.TokenRecord{}, sessions: map[string]*protocol.Session{}}
	key, _ := identity.NewKey(rand.Reader)
	der, err := ca.IssueCoordinator(key.Public().(ed25519.PublicKey), "coord-1", []string{"127.0.0.1"}, 0, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.TLSCertificate(key, der, ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := identity.ServerConfig(identity.ServerOptions{Certificate: &cert, ClientCAs: ca.Pool(), Revoker: &c.revoked})
	if err != nil {
		t.Fatal(err)
	}
	c.ln, err = protocol.Listen("127.0.0.1:0", serverTLS, &protocol.Config{HandshakeTimeout: 3 * time.Second, MaxVersion: maxVersion})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ln.Handle(protocol.ALPNEnroll, protocol.HandlerFuncs{HelloFunc: c.hello, MessageFunc: c.enroll}); err != nil {
		t.Fatal(err)
	}
	if err := c.ln.Handle(protocol.ALPNAgent, protocol.HandlerFuncs{HelloFunc: c.agentHello, MessageFunc: c.agentMessage, BulkFunc: c.bulk}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.ln.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		c.ln.Close()
		<-done
	})
	return c
}

func (c *testCoord) addr() string { return c.ln.Addr().String() }

// token creates a one-time join token.
func (c *testCoord) token(labels map[string]string) string {
	tok, rec, err := identity.NewJoinToken(rand.Reader, c.ca, time.Hour, labels, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.tokens[rec.ID] = &rec
	c.mu.Unlock()
	return tok
}

func (c *testCoord) hello(ctx context.Context, s *protocol.Session, h *protocol.Hello) (*protocol.HelloAck, error) {
	if c.redirectTo != "" {
		return nil, &protocol.Redirect{Addr: c.redirectTo, NodeID: "leader"}
	}
	return &protocol.HelloAck{NodeID: "coord-1"}, nil
}

func (c *testCoord) enroll(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	req, ok := m.(*protocol.EnrollRequest)
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnsupported}
	}
	invalid := &protocol.Error{Code: protocol.CodeInvalidToken, Message: "join token unknown, used or expired"}
	id, _, err := identity.ParseJoinToken(req.Token)
	if err != nil {
		return nil, invalid
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.tokens[id]
	if rec == nil || identity.VerifyJoinToken(*rec, req.Token, time.Now()) != nil {
		return nil, invalid
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || len(csr.URIs) != 1 {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "bad CSR"}
	}
	who, err := identity.ParseIdentity(csr.URIs[0].String())
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "bad CSR identity"}
	}
	der, err := c.ca.IssueAgent(req.CSR, who.ID, c.agentTTL, time.Now())
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
	}
	rec.Used = true
	c.enrollments.Add(1)
	return &protocol.EnrollResponse{AgentID: who.ID, Cert: der, CACert: c.ca.Certificate().Raw}, nil
}

func (c *testCoord) agentHello(ctx context.Context, s *protocol.Session, h *protocol.Hello) (*protocol.HelloAck, error) {
	c.mu.Lock()
	to := c.redirectTo
	c.mu.Unlock()
	if to != "" {
		return nil, &protocol.Redirect{Addr: to, NodeID: "leader"}
	}
	who, err := identity.PeerIdentity(s.TLS())
	if err != nil || who.ID != h.AgentID {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "hello names another agent"}
	}
	c.mu.Lock()
	if old := c.sessions[who.ID]; old != nil {
		old.Close()
	}
	c.sessions[who.ID] = s
	c.mu.Unlock()
	return &protocol.HelloAck{NodeID: "coord-1", HeartbeatInterval: 50 * time.Millisecond}, nil
}

func (c *testCoord) agentMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	who, err := identity.PeerIdentity(s.TLS())
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized}
	}
	switch v := m.(type) {
	case *protocol.Heartbeat:
		c.concurrent.Store(v.Concurrent)
		c.heartbeats.Add(1)
		if v.Status != nil {
			c.status.Store(v.Status)
		}
		c.mu.Lock()
		target := c.target
		c.mu.Unlock()
		if target == 0 || target == v.ModelVersion {
			return &protocol.Ack{}, nil
		}
		c.hub.mu.Lock()
		blob := c.hub.models[target]
		c.hub.mu.Unlock()
		m, err := tensor.UnmarshalModel(blob)
		if err != nil {
			return nil, err
		}
		return &protocol.ModelAnnounce{Version: target, Hash: m.Hash(), Size: uint64(len(blob)), Encoding: "fedge-model/1"}, nil
	case *protocol.RoundJoin:
		if v.Accept {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "unsolicited join"}
		}
		c.mu.Lock()
		c.declined = append(c.declined, v.RoundID)
		c.mu.Unlock()
		return &protocol.Ack{}, nil
	case *protocol.EnrollRequest:
		der, err := c.ca.Renew(s.PeerCertificate(), v.CSR, &c.revoked, c.agentTTL, time.Now())
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
		}
		c.renewals.Add(1)
		return &protocol.EnrollResponse{AgentID: who.ID, Cert: der, CACert: c.ca.Certificate().Raw}, nil
	default:
		return c.hub.deliver(ctx, who.ID, m)
	}
}

func (c *testCoord) bulk(ctx context.Context, s *protocol.Session, first protocol.Message, b *protocol.BulkStream) error {
	req, ok := first.(*protocol.ModelRequest)
	if !ok {
		return &protocol.Error{Code: protocol.CodeUnsupported}
	}
	c.hub.mu.Lock()
	blob, ok := c.hub.models[req.Version]
	c.hub.mu.Unlock()
	if !ok {
		return &protocol.Error{Code: protocol.CodeNotFound, Message: "no such model"}
	}
	c.downloads.Add(1)
	info, err := protocol.NewBlobInfo(fmt.Sprintf("model/%d", req.Version), bytes.NewReader(blob), int64(len(blob)), 0)
	if err != nil {
		return err
	}
	return b.ServeBlob(ctx, bytes.NewReader(blob), &info, req.Offset)
}

// setRedirect makes the node a follower redirecting to addr ("": it
// accepts sessions).
func (c *testCoord) setRedirect(addr string) {
	c.mu.Lock()
	c.redirectTo = addr
	c.mu.Unlock()
}

func (c *testCoord) setTarget(v uint64) {
	c.mu.Lock()
	c.target = v
	c.mu.Unlock()
}

func (c *testCoord) session(agentID string) *protocol.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[agentID]
	if s != nil && s.Err() != nil {
		return nil
	}
	return s
}

// kick closes an agent's session, as a coordinator restart would.
func (c *testCoord) kick(agentID string) {
	c.mu.Lock()
	s := c.sessions[agentID]
	delete(c.sessions, agentID)
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// writeSynthCSV writes synthData as a CSV with columns f0..f11 and label.
func writeSynthCSV(t testing.TB, dir string, n int, seed uint64) string {
	t.Helper()
	ds := synthData(n, 12, 3, seed)
	var b strings.Builder
	for j := range 12 {
		fmt.Fprintf(&b, "f%d,", j)
	}
	b.WriteString("label\n")
	for i := range n {
		for _, v := range ds.Row(i) {
			fmt.Fprintf(&b, "%g,", v)
		}
		fmt.Fprintf(&b, "%d\n", ds.Y[i])
	}
	p := filepath.Join(dir, fmt.Sprintf("data-%d.csv", seed))
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// agentConfig is a configuration for an agent of coordinators addrs on a
// synthetic CSV dataset.
func agentConfig(t testing.TB, dataDir, csv, token string, addrs ...string) Config {
	cfg := DefaultConfig()
	cfg.Coordinators = addrs
	cfg.JoinToken = token
	cfg.DataDir = dataDir
	cfg.InferenceListen = "127.0.0.1:0"
	cfg.ShutdownTimeout = Duration(5 * time.Second)
	cfg.Dataset = DatasetConfig{Kind: DatasetCSV, Path: csv, LabelColumn: "label", Classes: []string{"0", "1", "2"}, HeldOut: 0.2}
	return cfg
}

// runningAgent is an agent whose Run runs on a goroutine.
type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg, testLogger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a.grace = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and returns its error.
func (r *runningAgent) stop(t *testing.T) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}
