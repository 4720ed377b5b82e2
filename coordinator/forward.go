package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
)

// forwardSep separates the operator from the verb in a forwarded admin
// request: "<who>\x00<verb>". Only the peer ALPN, where both ends hold
// coordinator certificates, takes it.
const forwardSep = "\x00"

// peers holds this node's session to the leader for forwarded writes.
type peers struct {
	mu   sync.Mutex
	addr string
	sess *protocol.Session
}

// forward runs a write verb (or a read only the leader can answer) on the
// leader for who and returns the leader's answer. It fails when no leader is known or reachable; the
// caller then redirects the client instead.
func (n *Node) forward(ctx context.Context, who, verb string, body []byte) (protocol.Message, error) {
	id, addr := n.rep.leader()
	if addr == "" || id == n.cfg.NodeID {
		return nil, ErrNoLeader
	}
	s, err := n.peerSession(ctx, addr)
	if err != nil {
		return nil, err
	}
	out, err := s.Request(ctx, &protocol.AdminRequest{Verb: who + forwardSep + verb, Body: body})
	var pe *protocol.Error
	if err != nil && !errors.As(err, &pe) {
		n.peers.drop(s)
	}
	if err != nil {
		return nil, err
	}
	ar, ok := out.(*protocol.AdminResponse)
	if !ok {
		return nil, fmt.Errorf("coordinator: forwarded %s: unexpected %s answer", verb, out.Type())
	}
	var f forwarded
	if err := json.Unmarshal(ar.Body, &f); err != nil {
		return nil, fmt.Errorf("coordinator: forwarded %s: %w", verb, err)
	}
	// Read your writes: answer once this replica has applied the write, so
	// the operator's next read here sees it.
	wctx, cancel := context.WithTimeout(ctx, forwardCatchUp)
	defer cancel()
	for n.rep.raft.AppliedIndex() < f.Index {
		select {
		case <-wctx.Done():
			return &protocol.AdminResponse{Body: f.Body}, nil // applied soon; the write itself succeeded
		case <-time.After(2 * time.Millisecond):
		}
	}
	return &protocol.AdminResponse{Body: f.Body}, nil
}

// forwardCatchUp bounds how long a follower waits to apply a write it
// forwarded before answering the operator.
const forwardCatchUp = 5 * time.Second

// forwarded is the leader's answer to a forwarded write: the answer for
// the operator and the log index that holds the write.
type forwarded struct {
	Index uint64          `json:"index"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// peerSession returns a session with the coordinator at addr, dialing it
// from this node's UDP port with the node's certificate.
func (n *Node) peerSession(ctx context.Context, addr string) (*protocol.Session, error) {
	p := &n.peers
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess != nil && p.sess.Err() == nil && p.addr == addr {
		return p.sess, nil
	}
	if p.sess != nil {
		p.sess.Close()
		p.sess = nil
	}
	s, err := n.dialPeer(ctx, addr)
	if err != nil {
		return nil, err
	}
	p.sess, p.addr = s, addr
	return s, nil
}

// drop forgets a broken session.
func (p *peers) drop(s *protocol.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess == s {
		p.sess.Close()
		p.sess = nil
	}
}

// close ends the session, if any.
func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess != nil {
		p.sess.Close()
		p.sess = nil
	}
}

// peerHandler serves other coordinators (fedge-peer/1): forwarded admin
// writes and leader reads, run for the operator the forwarding node names.
type peerHandler struct{ n *Node }

func (h peerHandler) Hello(ctx context.Context, s *protocol.Session, hello *protocol.Hello) (*protocol.HelloAck, error) {
	if err := h.n.checkReady(); err != nil {
		return nil, err
	}
	return &protocol.HelloAck{NodeID: h.n.cfg.NodeID}, nil
}

func (h peerHandler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	switch v := m.(type) {
	case *protocol.Heartbeat:
		// The leader's probe before it hands this node a group.
		if _, err := peerCoordinator(s); err != nil {
			return nil, err
		}
		return &protocol.Ack{}, nil
	case *protocol.GroupStart:
		return h.n.serveGroupStart(ctx, s, v)
	case *protocol.GroupResult:
		return h.n.serveGroupResult(s, v)
	}
	req, ok := m.(*protocol.AdminRequest)
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
	}
	who, verb, ok := strings.Cut(req.Verb, forwardSep)
	rt := adminRoutes[strings.TrimPrefix(verb, api.ConsistentPrefix)]
	if !ok || !(rt.write || rt.leaderRead) || !strings.HasPrefix(who, "operator") {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "a forwarded request names an operator and a write verb or a leader read"}
	}
	via, err := identity.PeerIdentity(s.TLS())
	if err != nil || via.Role != identity.RoleCoordinator {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "a coordinator certificate is required"}
	}
	// The leader answers; a node that stopped leading meanwhile answers
	// with a Redirect, which the forwarding node passes to the client.
	out, err := h.n.answerAdmin(ctx, who+" via "+via.ID, verb, req.Body)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(forwarded{Index: h.n.rep.raft.AppliedIndex(), Body: out.(*protocol.AdminResponse).Body})
	if err != nil {
		return nil, err
	}
	return &protocol.AdminResponse{Body: b}, nil
}

// ServeBulk serves model blobs to other coordinators (BlobGet) and
// receives the ones the leader pushes (BlobPut).
func (h peerHandler) ServeBulk(ctx context.Context, s *protocol.Session, first protocol.Message, b *protocol.BulkStream) error {
	if via, err := identity.PeerIdentity(s.TLS()); err != nil || via.Role != identity.RoleCoordinator {
		return &protocol.Error{Code: protocol.CodeUnauthorized, Message: "a coordinator certificate is required"}
	}
	switch m := first.(type) {
	case *protocol.BlobGet:
		return h.n.blobsync.serveBlobGet(ctx, m, b)
	case *protocol.BlobPut:
		return h.n.blobsync.serveBlobPut(ctx, m, b)
	case *protocol.GroupResult:
		return h.n.receiveGroupResult(ctx, s, m, b)
	}
	return &protocol.Error{Code: protocol.CodeUnsupported, Message: "bulk " + first.Type().String()}
}
