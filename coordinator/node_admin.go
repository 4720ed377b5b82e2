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

func (h adminHandler) ServeBulk(ctx context.Context, s *protocol.Session, first protocol.Message, b *protocol.BulkStream) error {
	return agentHandler(h).ServeBulk(ctx, s, first, b)
}

func (h adminHandler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	req, ok := m.(*protocol.AdminRequest)
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
	}
	who := "operator"
	if id, err := identity.PeerIdentity(s.TLS()); err == nil {
		who = "operator:" + id.ID
	}
	if h.n.adminRevoked(s) {
		// Revoked while its session was open: the handshake refuses it
		// from now on, and so does every request on the old session.
		return nil, &protocol.Error{Code: protocol.CodeRevoked, Message: "admin certificate revoked"}
	}
	verb, _ := strings.CutPrefix(req.Verb, api.ConsistentPrefix)
	rt, known := adminRoutes[verb]
	if known && rt.leaderRead && !h.n.rep.isLeader() {
		// Only the leader knows which agents are connected and why rounds
		// wait: ask it, and answer from this replica if it cannot be asked.
		if fwd, err := h.n.forward(ctx, who, req.Verb, req.Body); err == nil {
			return fwd, nil
		}
	}
	out, err := h.n.answerAdmin(ctx, who, req.Verb, req.Body)
	var re *protocol.Redirect
	if errors.As(err, &re) && known && rt.write {
		// A write reached a follower: forward it to the leader, so the
		// operator's client need not reach the leader itself. If that
		// fails, the redirect stands and the client follows it.
		fwd, ferr := h.n.forward(ctx, who, req.Verb, req.Body)
		if ferr == nil {
			return fwd, nil
		}
		h.n.log.Debug("forwarding an admin write to the leader", "verb", req.Verb, "err", ferr)
	}
	return out, err
}

// answerAdmin runs an admin verb for who and shapes the answer for the
// wire: the JSON response, or a typed error (a Redirect when this node
// cannot take it).
func (n *Node) answerAdmin(ctx context.Context, who, verb string, body []byte) (protocol.Message, error) {
	out, err := n.admin(ctx, who, verb, body)
	if err != nil {
		var pe *protocol.Error
		var re *protocol.Redirect
		if errors.As(err, &pe) || errors.As(err, &re) {
			return nil, err
		}
		code := protocol.CodeBadRequest
		switch {
		case errors.Is(err, ErrNotFound):
			code = protocol.CodeNotFound
		case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader):
			return nil, n.redirect()
		}
		return nil, &protocol.Error{Code: code, Message: err.Error()}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return &protocol.AdminResponse{Body: b}, nil
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
	api.VerbRolloutStart:  route(write, anyNode, (*Node).apiRolloutStart),
	api.VerbRolloutStatus: route(read, leaderOnly, (*Node).apiRolloutStatus),
	api.VerbRolloutAction: route(write, anyNode, (*Node).apiRolloutAction),
	api.VerbAdminCert:     route(write, anyNode, (*Node).apiAdminCert),
	api.VerbAdminsList:    route(read, anyNode, (*Node).apiAdminsList),
	api.VerbAdminsRevoke:  route(write, anyNode, (*Node).apiAdminsRevoke),
	api.VerbAuditList:     route(read, anyNode, (*Node).apiAuditList),
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
