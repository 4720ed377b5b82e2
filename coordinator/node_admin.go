package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

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
	if leaderReads[req.Verb] && !h.n.rep.isLeader() {
		// Only the leader knows which agents are connected and why rounds
		// wait: ask it, and answer from this replica if it cannot be asked.
		if fwd, err := h.n.forward(ctx, who, req.Verb, req.Body); err == nil {
			return fwd, nil
		}
	}
	out, err := h.n.answerAdmin(ctx, who, req.Verb, req.Body)
	var re *protocol.Redirect
	if errors.As(err, &re) && writeVerbs[req.Verb] {
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

// writeVerbs change state and run on the leader only.
var writeVerbs = map[string]bool{
	VerbClusterJoin: true, VerbClusterRemove: true, VerbTokensCreate: true, VerbAgentsRevoke: true,
	VerbAgentsLabel: true, VerbJobsStart: true, VerbJobsStop: true, VerbModelsPin: true,
	VerbRolloutStart: true, VerbRolloutAction: true, VerbAdminCert: true,
}

// leaderReads are reads whose answer holds what only the leader knows
// (connected agents, why rounds wait): a follower forwards them.
var leaderReads = map[string]bool{
	VerbAgentsList: true, VerbAgentsShow: true, VerbJobsStatus: true, VerbRolloutStatus: true,
}

// consistentPrefix on a read verb asks for a linearizable read.
const consistentPrefix = "consistent:"

// admin runs one admin verb.
func (n *Node) admin(ctx context.Context, who, verb string, body []byte) (any, error) {
	if n.rep.removed() {
		// Its view of the cluster is frozen at the removal: send the
		// caller to another coordinator.
		return nil, n.redirect()
	}
	if rest, ok := strings.CutPrefix(verb, consistentPrefix); ok {
		// Linearizable read: only the leader, after confirming it still
		// leads and has applied everything committed before this call.
		if !n.rep.isLeader() {
			return nil, n.redirect()
		}
		if err := n.rep.barrier(ctx); err != nil {
			return nil, n.redirect()
		}
		verb = rest
	}
	if writeVerbs[verb] && !n.rep.isLeader() {
		return nil, n.redirect()
	}
	decode := func(v any) error {
		if len(body) == 0 {
			return nil
		}
		if err := jsonUnmarshalStrict(body, v); err != nil {
			return fmt.Errorf("%s: bad request body: %w", verb, err)
		}
		return nil
	}
	now := time.Now().UTC()
	switch verb {
	case VerbClusterStatus:
		return n.clusterStatus()
	case VerbClusterJoin:
		var r JoinRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		if r.ID == "" || r.Addr == "" {
			return nil, errors.New("cluster.join: id and addr are required")
		}
		return nil, n.rep.raft.AddVoter(raft.ServerID(r.ID), raft.ServerAddress(r.Addr), 0, 30*time.Second).Error()
	case VerbClusterRemove:
		var r IDRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		if r.ID == "" {
			return nil, errors.New("cluster.remove: id is required")
		}
		return nil, n.rep.raft.RemoveServer(raft.ServerID(r.ID), 0, 30*time.Second).Error()
	case VerbTokensCreate:
		var r TokenRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return n.createToken(ctx, r, now)
	case VerbAgentsList:
		return n.agentInfos(""), nil
	case VerbAgentsShow:
		var r IDRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		infos := n.agentInfos(r.ID)
		if len(infos) == 0 {
			return nil, fmt.Errorf("%w: agent %s", ErrNotFound, r.ID)
		}
		return infos[0], nil
	case VerbAgentsRevoke:
		var r IDRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		if _, err := n.rep.apply(ctx, cmdAgentRevoke, revokeCmd{ID: r.ID, At: now}, nil); err != nil {
			return nil, err
		}
		n.agentsMu.Lock()
		a, ok := n.agents[r.ID]
		n.agentsMu.Unlock()
		if ok {
			a.sess.Close() // the revoked agent is cut off now, not at its next handshake
		}
		return nil, nil
	case VerbAgentsLabel:
		var r LabelRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		if err := identity.ValidateLabels(r.Labels); err != nil {
			return nil, err
		}
		_, err := n.rep.apply(ctx, cmdAgentLabel, labelCmd{ID: r.ID, Labels: r.Labels}, nil)
		return nil, err
	case VerbJobsStart:
		var spec JobSpec
		if err := decode(&spec); err != nil {
			return nil, err
		}
		return n.startJob(ctx, spec, now)
	case VerbJobsList:
		var out []JobRecord
		n.fsm.Read(func(s *State) {
			for _, id := range sortedKeys(s.Jobs) {
				out = append(out, *s.Jobs[id])
			}
		})
		return out, nil
	case VerbJobsStatus:
		var r IDRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		var out *JobRecord
		n.fsm.Read(func(s *State) {
			if j, ok := s.Jobs[r.ID]; ok {
				c := *j
				out = &c
			}
		})
		if out != nil && out.State == JobRunning {
			out.Waiting = n.eng.waiting("job/" + out.ID)
		}
		if out == nil {
			return nil, fmt.Errorf("%w: job %s", ErrNotFound, r.ID)
		}
		return out, nil
	case VerbJobsStop:
		var r IDRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		_, err := n.rep.apply(ctx, cmdJobUpdate, jobUpdateCmd{ID: r.ID, State: JobStopped, At: now}, nil)
		return nil, err
	case VerbRoundsList:
		var r RoundsRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return n.rounds(r), nil
	case VerbRoundsShow:
		var r VersionRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		var out *RoundRecord
		n.fsm.Read(func(s *State) {
			if rr, ok := s.Rounds[r.Version]; ok {
				c := *rr
				out = &c
			}
		})
		if out == nil {
			return nil, fmt.Errorf("%w: round %d", ErrNotFound, r.Version)
		}
		return out, nil
	case VerbModelsList:
		var out []ModelRecord
		n.fsm.Read(func(s *State) {
			for _, v := range sortedKeys(s.Models) {
				m := *s.Models[v]
				m.Blob, m.StrategyState = nil, nil
				out = append(out, m)
			}
		})
		return out, nil
	case VerbModelsShow:
		var r VersionRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		var out *ModelRecord
		n.fsm.Read(func(s *State) {
			if m, ok := s.Models[r.Version]; ok {
				c := *m
				c.Blob, c.StrategyState = nil, nil
				out = &c
			}
		})
		if out == nil {
			return nil, fmt.Errorf("%w: model %d", ErrNotFound, r.Version)
		}
		return out, nil
	case VerbModelsPin:
		var r VersionRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		_, err := n.rep.apply(ctx, cmdModelPin, pinCmd{Version: r.Version, Pinned: r.Pinned}, nil)
		return nil, err
	case VerbRolloutStart:
		var r RolloutRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return n.startRollout(ctx, r, now)
	case VerbRolloutStatus:
		var out []RolloutRecord
		n.fsm.Read(func(s *State) {
			for _, id := range sortedKeys(s.Rollouts) {
				out = append(out, *s.Rollouts[id])
			}
		})
		for i := range out {
			if out[i].State == RolloutRunning {
				out[i].Waiting = n.eng.waiting("rollout/" + out[i].ID)
			}
		}
		sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.Before(out[b].CreatedAt) })
		return out, nil
	case VerbRolloutAction:
		var r RolloutActionRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return nil, n.rolloutAction(ctx, who, r, now)
	case VerbAdminCert:
		var r AdminCertRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return n.issueAdmin(ctx, r, now)
	}
	return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: "unknown verb " + verb}
}

func (n *Node) clusterStatus() (*ClusterStatus, error) {
	st := &ClusterStatus{Node: n.cfg.NodeID, Term: n.rep.raft.CurrentTerm(), LastIndex: n.rep.raft.LastIndex(), AppliedIndex: n.rep.raft.AppliedIndex()}
	st.LeaderID, st.LeaderAddr = n.rep.leader()
	f := n.rep.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	for _, s := range f.Configuration().Servers {
		st.Servers = append(st.Servers, ServerInfo{ID: string(s.ID), Addr: string(s.Address), Suffrage: s.Suffrage.String(), Leader: string(s.ID) == st.LeaderID})
	}
	n.fsm.Read(func(s *State) { st.Cluster, st.Stable = s.ClusterName, s.Stable })
	st.ConnectedAgents = len(n.ConnectedAgents())
	return st, nil
}

func (n *Node) createToken(ctx context.Context, r TokenRequest, now time.Time) (*TokenResponse, error) {
	if err := identity.ValidateLabels(r.Labels); err != nil {
		return nil, err
	}
	ca, err := n.openCA()
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(r.TTL)
	if ttl == 0 {
		ttl = identity.DefaultTokenTTL
	}
	tok, rec, err := identity.NewJoinToken(rand.Reader, ca, ttl, r.Labels, now)
	if err != nil {
		return nil, err
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := n.rep.apply(ctx, cmdTokenCreate, TokenRecord{ID: rec.ID, Record: b, Expiry: rec.Expires, Labels: r.Labels, CreatedAt: now}, nil); err != nil {
		return nil, err
	}
	return &TokenResponse{Token: tok, ID: rec.ID, Expires: rec.Expires}, nil
}

func (n *Node) agentInfos(only string) []AgentInfo {
	connected := map[string]bool{}
	for _, id := range n.ConnectedAgents() {
		connected[id] = true
	}
	var out []AgentInfo
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Agents) {
			if only != "" && id != only {
				continue
			}
			a := *s.Agents[id]
			out = append(out, AgentInfo{AgentRecord: a, Connected: connected[id], Serving: s.TargetVersion(id)})
		}
	})
	return out
}

func (n *Node) startJob(ctx context.Context, spec JobSpec, now time.Time) (*JobRecord, error) {
	if err := spec.Normalize(); err != nil {
		return nil, err
	}
	if spec.InitModel == 0 {
		if _, err := jobTensorSpec(&spec); err != nil {
			return nil, err
		}
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := spec.Name
	if name == "" {
		name = "job"
	}
	rec := JobRecord{ID: fmt.Sprintf("%s-%x", name, b), Spec: spec, State: JobRunning, CreatedAt: now, UpdatedAt: now, Model: spec.InitModel}
	if err := identity.ValidateID(rec.ID); err != nil {
		return nil, fmt.Errorf("%w: job name %q: %v", ErrInvalidJob, name, err)
	}
	if _, err := n.rep.apply(ctx, cmdJobCreate, rec, nil); err != nil {
		return nil, err
	}
	return &rec, nil
}

func (n *Node) rounds(r RoundsRequest) []RoundRecord {
	var out []RoundRecord
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rounds) {
			rr := s.Rounds[id]
			if r.Job == "" || rr.Job == r.Job {
				out = append(out, *rr)
			}
		}
	})
	if r.Limit > 0 && len(out) > r.Limit {
		out = out[len(out)-r.Limit:]
	}
	return out
}

func (n *Node) startRollout(ctx context.Context, r RolloutRequest, now time.Time) (*RolloutRecord, error) {
	if _, err := ParseGate(r.Gate); err != nil {
		return nil, err
	}
	if len(r.Cohorts) == 0 {
		return nil, errors.New("rollout.start: at least one cohort")
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	rec := RolloutRecord{ID: fmt.Sprintf("ro-%d-%x", r.Model, b), Model: r.Model, Cohorts: r.Cohorts, Gate: r.Gate, CreatedAt: now}
	if _, err := n.rep.apply(ctx, cmdRolloutCreate, rec, nil); err != nil {
		return nil, err
	}
	var out RolloutRecord
	n.fsm.Read(func(s *State) { out = *s.Rollouts[rec.ID] })
	return &out, nil
}

func (n *Node) rolloutAction(ctx context.Context, who string, r RolloutActionRequest, now time.Time) error {
	var ro *RolloutRecord
	n.fsm.Read(func(s *State) {
		if r.ID != "" {
			if x, ok := s.Rollouts[r.ID]; ok {
				c := *x
				ro = &c
			}
		} else if x := s.activeRollout(); x != nil {
			c := *x
			ro = &c
		}
	})
	if ro == nil {
		return fmt.Errorf("%w: no such rollout (or none active)", ErrNotFound)
	}
	switch r.Action {
	case "pause", "resume", "promote", "rollback":
	default:
		return fmt.Errorf("rollout: unknown action %q (pause, resume, promote, rollback)", r.Action)
	}
	d := Decision{At: now, Stage: ro.Stage, Action: r.Action, By: who, Reason: r.Reason}
	_, err := n.rep.apply(ctx, cmdRolloutDecide, decideCmd{ID: ro.ID, Decision: d}, nil)
	return err
}

func (n *Node) issueAdmin(ctx context.Context, r AdminCertRequest, now time.Time) (*AdminCertResponse, error) {
	if len(r.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("admin.cert: public_key must be 32 bytes of Ed25519")
	}
	ca, err := n.openCA()
	if err != nil {
		return nil, err
	}
	der, err := ca.IssueAdmin(ed25519.PublicKey(r.PublicKey), r.Name, AdminCertTTL, now)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if _, err := n.rep.apply(ctx, cmdAdminCert, adminCertCmd{Serial: cert.SerialNumber.Text(16), Name: r.Name}, nil); err != nil {
		return nil, err
	}
	return &AdminCertResponse{Cert: der, CACert: ca.Certificate().Raw}, nil
}
