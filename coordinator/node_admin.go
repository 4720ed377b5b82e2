package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
)

// adminHandler serves operators (fedge-admin/1). Reads are answered from
// this node's replica; writes go to the leader: a follower forwards them
// (forward.go), or, when it cannot reach the leader, answers with a
// Redirect the client follows.
type adminHandler struct{ n *Node }

func (h adminHandler) Hello(ctx context.Context, s *protocol.Session, hello *protocol.Hello) (*protocol.HelloAck, error) {
	if err := h.n.checkReady(); err != nil {
		return nil, err
	}
	_, addr := h.n.rep.leader()
	if h.n.rep.isLeader() {
		addr = ""
	}
	return &protocol.HelloAck{NodeID: h.n.cfg.NodeID, LeaderHint: addr}, nil
}

// ServeBulk serves model downloads (as for agents) and the admin calls
// whose request carries a file (adminRoute.bulk): the client opens the
// stream with the AdminRequest, the blob follows, and the answer is an
// AdminResponse on the same stream. Only the leader takes them; a
// follower redirects the client.
func (h adminHandler) ServeBulk(ctx context.Context, s *protocol.Session, first protocol.Message, b *protocol.BulkStream) error {
	req, ok := first.(*protocol.AdminRequest)
	if !ok {
		return agentHandler(h).ServeBulk(ctx, s, first, b)
	}
	if err := h.n.checkReady(); err != nil {
		return err
	}
	if h.n.adminRevoked(s) {
		return &protocol.Error{Code: protocol.CodeRevoked, Message: "admin certificate revoked"}
	}
	rt, known := adminRoutes[req.Verb]
	if !known || rt.bulk == nil {
		return &protocol.Error{Code: protocol.CodeUnsupported, Message: "verb " + req.Verb + " takes no bulk stream"}
	}
	if h.n.rep.removed() || (rt.write && !h.n.rep.isLeader()) {
		return h.n.redirect()
	}
	out, err := rt.bulk(h.n, adminCall{ctx: ctx, who: operatorName(s), now: time.Now().UTC()}, req.Body, b)
	if err != nil {
		return h.n.adminError(err)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return b.Send(&protocol.AdminResponse{Body: body})
}

// operatorName is who an admin session acts as: "operator:<name>".
func operatorName(s *protocol.Session) string {
	if id, err := identity.PeerIdentity(s.TLS()); err == nil {
		return "operator:" + id.ID
	}
	return "operator"
}

func (h adminHandler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	req, ok := m.(*protocol.AdminRequest)
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
	}
	who := operatorName(s)
	if h.n.adminRevoked(s) {
		// Revoked while its session was open: the handshake refuses it
		// from now on, and so does every request on the old session.
		return nil, &protocol.Error{Code: protocol.CodeRevoked, Message: "admin certificate revoked"}
	}
	if cs := s.TLS(); len(cs.PeerCertificates) > 0 {
		ctx = context.WithValue(ctx, operatorCertKey{}, cs.PeerCertificates[0])
	}
	return h.n.serveAdmin(ctx, who, req.Verb, req.Body)
}

// serveAdmin answers an admin verb for who as this node should: reads
// only the leader can answer are forwarded to it (answered from this
// replica if it cannot be asked), and a write that reaches a follower is
// forwarded to the leader; if that fails, the Redirect stands. The admin
// ALPN and the web console both call it.
func (n *Node) serveAdmin(ctx context.Context, who, wireVerb string, body []byte) (protocol.Message, error) {
	verb, _ := strings.CutPrefix(wireVerb, api.ConsistentPrefix)
	rt, known := adminRoutes[verb]
	if known && rt.leaderRead && !n.rep.isLeader() {
		// Only the leader knows which agents are connected and why rounds
		// wait: ask it, and answer from this replica if it cannot be asked.
		if fwd, err := n.forward(ctx, who, wireVerb, body); err == nil {
			return fwd, nil
		}
	}
	out, err := n.answerAdmin(ctx, who, wireVerb, body)
	var re *protocol.Redirect
	if errors.As(err, &re) && known && rt.write {
		// A write reached a follower: forward it to the leader, so the
		// operator's client need not reach the leader itself. If that
		// fails, the redirect stands and the client follows it.
		fwd, ferr := n.forward(ctx, who, wireVerb, body)
		if ferr == nil {
			return fwd, nil
		}
		n.log.Debug("forwarding an admin write to the leader", "verb", wireVerb, "err", ferr)
	}
	return out, err
}

// answerAdmin runs an admin verb for who and shapes the answer for the
// wire: the JSON response, or a typed error (a Redirect when this node
// cannot take it).
func (n *Node) answerAdmin(ctx context.Context, who, verb string, body []byte) (protocol.Message, error) {
	out, err := n.admin(ctx, who, verb, body)
	if err != nil {
		return nil, n.adminError(err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	if len(b) > protocol.DefaultMaxAdminBody {
		// The session could not send it; say so in the caller's terms.
		return nil, &protocol.Error{Code: protocol.CodeTooLarge, Message: fmt.Sprintf(
			"%s: the answer is %d bytes, more than the %d an admin answer holds; ask for less (rounds: a job, a limit, or the rounds after an ID)",
			verb, len(b), protocol.DefaultMaxAdminBody)}
	}
	return &protocol.AdminResponse{Body: b}, nil
}

// adminError shapes a handler's error for the wire: a typed error as
// is, a Redirect when this node cannot take the call, else an Error whose
// code says not found, too large or bad request.
func (n *Node) adminError(err error) error {
	var pe *protocol.Error
	var re *protocol.Redirect
	if errors.As(err, &pe) || errors.As(err, &re) {
		return err
	}
	code := protocol.CodeBadRequest
	switch {
	case errors.Is(err, ErrNotFound):
		code = protocol.CodeNotFound
	case errors.Is(err, protocol.ErrTooLarge):
		code = protocol.CodeTooLarge
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader):
		return n.redirect()
	}
	return &protocol.Error{Code: code, Message: err.Error()}
}

// adminCall is what every admin handler gets besides its request: the
// caller's context, who asked ("operator:<name>", or "operator:<name> via
// cN" when a follower forwarded it) and when.
type adminCall struct {
	ctx context.Context
	who string
	now time.Time
}

// adminRoute is one admin verb: its rules and its handler.
type adminRoute struct {
	// write: the call changes state, so only the leader runs it; a
	// follower forwards it (or redirects the client).
	write bool
	// leaderRead: the answer holds what only the leader knows (agents'
	// connections, why a job or rollout waits); a follower forwards it
	// when it can.
	leaderRead bool
	// req and resp are the request and response types (for tests and
	// documentation; the handler decodes and encodes them).
	req, resp reflect.Type
	run       func(n *Node, c adminCall, body []byte) (any, error)
	// bulk, set instead of run, serves a call whose request carries a
	// file: it runs on the bulk stream the client opened with the
	// AdminRequest (ServeBulk), and reads the file from b.
	bulk func(n *Node, c adminCall, body []byte, b *protocol.BulkStream) (any, error)
}

// errBadRequest marks a request body that does not decode.
var errBadRequest = errors.New("bad request")

// none is the request or response of a call that has none.
type none = struct{}

// route builds an adminRoute from a typed handler: the request body is
// decoded strictly (an unknown field is an error) into Req.
func route[Req, Resp any](write, leaderRead bool, fn func(n *Node, c adminCall, req Req) (Resp, error)) adminRoute {
	return adminRoute{
		write: write, leaderRead: leaderRead,
		req: reflect.TypeFor[Req](), resp: reflect.TypeFor[Resp](),
		run: func(n *Node, c adminCall, body []byte) (any, error) {
			var req Req
			if len(body) > 0 && string(body) != "null" {
				if err := jsonUnmarshalStrict(body, &req); err != nil {
					return nil, fmt.Errorf("%w: bad request body: %v", errBadRequest, err)
				}
			}
			return fn(n, c, req)
		},
	}
}

// bulkRoute builds an adminRoute for a call whose request carries a file
// on a bulk stream (ServeBulk); its JSON request is decoded like route's.
func bulkRoute[Req, Resp any](write bool, fn func(n *Node, c adminCall, req Req, b *protocol.BulkStream) (Resp, error)) adminRoute {
	return adminRoute{
		write: write, req: reflect.TypeFor[Req](), resp: reflect.TypeFor[Resp](),
		bulk: func(n *Node, c adminCall, body []byte, b *protocol.BulkStream) (any, error) {
			var req Req
			if len(body) > 0 && string(body) != "null" {
				if err := jsonUnmarshalStrict(body, &req); err != nil {
					return nil, fmt.Errorf("%w: bad request body: %v", errBadRequest, err)
				}
			}
			return fn(n, c, req, b)
		},
	}
}

// Whether a call writes, and whether only the leader can answer it.
const (
	read, write         = false, true
	anyNode, leaderOnly = false, true
)

// adminRoutes is the admin API: every verb with its rules and handler
// (node_admin_calls.go). Reads are answered from this node's replica
// unless marked leaderOnly.
var adminRoutes = map[string]adminRoute{
	api.VerbClusterStatus: route(read, anyNode, (*Node).apiClusterStatus),
	api.VerbClusterJoin:   route(write, anyNode, (*Node).apiClusterJoin),
	api.VerbClusterRemove: route(write, anyNode, (*Node).apiClusterRemove),
	api.VerbTokensCreate:  route(write, anyNode, (*Node).apiTokensCreate),
	api.VerbTokensList:    route(read, anyNode, (*Node).apiTokensList),
	api.VerbTokensRevoke:  route(write, anyNode, (*Node).apiTokensRevoke),
	api.VerbAgentsList:    route(read, leaderOnly, (*Node).apiAgentsList),
	api.VerbAgentsShow:    route(read, leaderOnly, (*Node).apiAgentsShow),
	api.VerbAgentsRevoke:  route(write, anyNode, (*Node).apiAgentsRevoke),
	api.VerbAgentsLabel:   route(write, anyNode, (*Node).apiAgentsLabel),
	api.VerbJobsStart:     route(write, anyNode, (*Node).apiJobsStart),
	api.VerbJobsList:      route(read, anyNode, (*Node).apiJobsList),
	api.VerbJobsStatus:    route(read, leaderOnly, (*Node).apiJobsStatus),
	api.VerbJobsStop:      route(write, anyNode, (*Node).apiJobsStop),
	api.VerbRoundsList:    route(read, anyNode, (*Node).apiRoundsList),
	api.VerbRoundsShow:    route(read, anyNode, (*Node).apiRoundsShow),
	api.VerbModelsList:    route(read, anyNode, (*Node).apiModelsList),
	api.VerbModelsShow:    route(read, anyNode, (*Node).apiModelsShow),
	api.VerbModelsPin:     route(write, anyNode, (*Node).apiModelsPin),
	api.VerbModelsImport:  bulkRoute(write, (*Node).apiModelsImport),
	api.VerbRolloutStart:  route(write, anyNode, (*Node).apiRolloutStart),
	api.VerbRolloutStatus: route(read, leaderOnly, (*Node).apiRolloutStatus),
	api.VerbRolloutAction: route(write, anyNode, (*Node).apiRolloutAction),
	api.VerbAdminCert:     route(write, anyNode, (*Node).apiAdminCert),
	api.VerbAdminsList:    route(read, anyNode, (*Node).apiAdminsList),
	api.VerbAdminsRevoke:  route(write, anyNode, (*Node).apiAdminsRevoke),
	api.VerbAuditList:     route(read, anyNode, (*Node).apiAuditList),
	// console.login is answered by the node asked: the link opens its
	// own console (node_console.go).
	api.VerbConsoleLogin: route(read, anyNode, (*Node).apiConsoleLogin),

	// Global explanations (explain.go).
	api.VerbModelsExplain:     route(write, anyNode, (*Node).apiModelsExplain),
	api.VerbModelsExplanation: route(read, anyNode, (*Node).apiModelsExplanation),
}

// admin runs one admin verb by the rules of its route.
func (n *Node) admin(ctx context.Context, who, verb string, body []byte) (any, error) {
	if n.rep.removed() {
		// Its view of the cluster is frozen at the removal: send the
		// caller to another coordinator.
		return nil, n.redirect()
	}
	verb, consistent := strings.CutPrefix(verb, api.ConsistentPrefix)
	rt, ok := adminRoutes[verb]
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: "unknown verb " + verb}
	}
	if rt.bulk != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "verb " + verb + " carries a file: send it on a bulk stream (api.Client does)"}
	}
	if consistent && !rt.write {
		// Linearizable read: only the leader, after confirming it still
		// leads and has applied everything committed before this call.
		if !n.rep.isLeader() {
			return nil, n.redirect()
		}
		if err := n.rep.barrier(ctx); err != nil {
			return nil, n.redirect()
		}
	}
	if rt.write && !n.rep.isLeader() {
		return nil, n.redirect()
	}
	return rt.run(n, adminCall{ctx: ctx, who: who, now: time.Now().UTC()}, body)
}
