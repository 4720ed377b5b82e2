package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// AgentCertTTL is the lifetime of agent certificates; agents renew after
// two thirds of it.
const AgentCertTTL = 24 * time.Hour

// agentConn is a connected agent's session on this node. It implements
// AgentLink for the engine.
type agentConn struct {
	id   string
	key  ed25519.PublicKey
	sess *protocol.Session
	// served is the model version the agent reports it serves (Hello,
	// then each Heartbeat): what it answers predictions with, which may
	// lag the version it should serve (a download or a save failed).
	served atomic.Uint64
	// report is the agent's latest status report (Heartbeat.Status, on
	// version 3 sessions), nil before the first.
	report atomic.Pointer[agentReport]
	// concurrent is how many rounds of different jobs the agent runs at
	// once (Heartbeat.Concurrent, on version 6 sessions), 0 before its
	// first report: the engine then gives it one round at a time.
	concurrent atomic.Uint32
}

var _ ConcurrentLink = (*agentConn)(nil)

// agentReport is an agent's status report and when it arrived.
type agentReport struct {
	status *protocol.AgentStatus
	at     time.Time
}

// maxReportText bounds each string of a kept status report in bytes: an
// agent sends at most 200, a foreign one up to the protocol's bound.
const maxReportText = 512

// keepReport stores st, with its strings bounded, as c's latest report.
func (c *agentConn) keepReport(st *protocol.AgentStatus, at time.Time) {
	cp := *st
	cp.DataKind = clipText(cp.DataKind)
	cp.Trainer = clipText(cp.Trainer)
	cp.TrainerFailure = clipText(cp.TrainerFailure)
	cp.Events = make([]protocol.StatusEvent, len(st.Events))
	for i, e := range st.Events {
		cp.Events[i] = protocol.StatusEvent{At: e.At, Level: clipText(e.Level), Message: clipText(e.Message)}
	}
	c.report.Store(&agentReport{status: &cp, at: at})
}

// clipText cuts s to maxReportText bytes, keeping it valid UTF-8.
func clipText(s string) string {
	if len(s) <= maxReportText {
		return s
	}
	return strings.ToValidUTF8(s[:maxReportText], "")
}

func (a *agentConn) AgentID() string               { return a.id }
func (a *agentConn) SigningKey() ed25519.PublicKey { return a.key }
func (a *agentConn) Request(ctx context.Context, m protocol.Message) (protocol.Message, error) {
	return a.sess.Request(ctx, m)
}
func (a *agentConn) Send(ctx context.Context, m protocol.Message) error { return a.sess.Send(ctx, m) }

// Concurrent implements ConcurrentLink: the agent's reported
// jobs.concurrent, 0 if it reported none.
func (a *agentConn) Concurrent() int { return int(min(a.concurrent.Load(), math.MaxInt32)) }

// Version is the protocol version the agent's session runs.
func (a *agentConn) Version() uint32 { return a.sess.Version() }

// links lists the agents connected to this node.
func (n *Node) links() []AgentLink {
	n.agentsMu.Lock()
	defer n.agentsMu.Unlock()
	out := make([]AgentLink, 0, len(n.agents))
	for _, a := range n.agents {
		out = append(out, a)
	}
	return out
}

// servedVersions returns, per connected agent, the model version it
// reports serving.
func (n *Node) servedVersions() map[string]uint64 {
	n.agentsMu.Lock()
	defer n.agentsMu.Unlock()
	out := make(map[string]uint64, len(n.agents))
	for id, a := range n.agents {
		out[id] = a.served.Load()
	}
	return out
}

// agentReports returns, per connected agent that sent one, its latest
// status report.
func (n *Node) agentReports() map[string]*agentReport {
	n.agentsMu.Lock()
	defer n.agentsMu.Unlock()
	out := make(map[string]*agentReport, len(n.agents))
	for id, a := range n.agents {
		if r := a.report.Load(); r != nil {
			out[id] = r
		}
	}
	return out
}

// ConnectedAgents returns the IDs of agents with a session on this node.
func (n *Node) ConnectedAgents() []string {
	n.agentsMu.Lock()
	defer n.agentsMu.Unlock()
	return sortedKeys(n.agents)
}

// agentHandler serves agent sessions (fedge-agent/1).
type agentHandler struct{ n *Node }

func (h agentHandler) Hello(ctx context.Context, s *protocol.Session, hello *protocol.Hello) (*protocol.HelloAck, error) {
	n := h.n
	if err := n.checkReady(); err != nil {
		return nil, err
	}
	if hello.Round != 0 {
		// A session for a sharded round's group (round_group_peer.go).
		return n.roundSessionHello(s, hello)
	}
	if !n.rep.isLeader() {
		return nil, n.redirect()
	}
	id, err := identity.PeerIdentity(s.TLS())
	if err != nil || id.Role != identity.RoleAgent {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "an agent certificate is required"}
	}
	if hello.AgentID != "" && hello.AgentID != id.ID {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "hello names another agent than the certificate"}
	}
	known, revoked := false, false
	n.fsm.Read(func(st *State) {
		if a, ok := st.Agents[id.ID]; ok {
			known, revoked = true, a.Revoked
		}
	})
	if revoked {
		return nil, &protocol.Error{Code: protocol.CodeRevoked, Message: "agent revoked"}
	}
	if !known {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "agent not enrolled in this cluster"}
	}
	cert := s.PeerCertificate()
	key, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "agent key is not Ed25519"}
	}
	conn := &agentConn{id: id.ID, key: key, sess: s}
	conn.served.Store(hello.ModelVersion)
	n.agentsMu.Lock()
	old, had := n.agents[id.ID]
	n.agents[id.ID] = conn
	n.seen[id.ID] = time.Now()
	n.agentsMu.Unlock()
	if had && old.sess != s {
		// The agent reconnected: the newer session wins. Closed outside
		// agentsMu: closing waits for the old session's handlers, which
		// may themselves need the lock.
		old.sess.Close()
	}
	go func() {
		<-s.Done()
		n.agentsMu.Lock()
		if cur, ok := n.agents[id.ID]; ok && cur == conn {
			delete(n.agents, id.ID)
		}
		n.agentsMu.Unlock()
		// Whatever round the agent ran on this session is lost with it
		// (a newer session of the same agent starts afresh).
		n.eng.agentGone(id.ID)
	}()
	n.eng.agentConnected()
	n.log.Debug("agent connected", "agent", id.ID, "model", hello.ModelVersion)
	return &protocol.HelloAck{NodeID: n.cfg.NodeID, HeartbeatInterval: n.cfg.HeartbeatInterval}, nil
}

func (h agentHandler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	n := h.n
	id, err := identity.PeerIdentity(s.TLS())
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: err.Error()}
	}
	switch v := m.(type) {
	case *protocol.Heartbeat:
		if !n.rep.isLeader() {
			// Rounds run on the leader: send the agent there.
			go s.Close()
			return nil, n.redirect()
		}
		n.agentsMu.Lock()
		n.seen[id.ID] = time.Now()
		if c, ok := n.agents[id.ID]; ok && c.sess == s {
			c.served.Store(v.ModelVersion)
			c.concurrent.Store(v.Concurrent)
			if v.Status != nil {
				c.keepReport(v.Status, time.Now().UTC())
			}
		}
		n.agentsMu.Unlock()
		return n.announceFor(id.ID, v.ModelVersion, v.Lines, s.Version() >= 5), nil
	case *protocol.EnrollRequest:
		return n.renew(ctx, id, s.PeerCertificate(), v)
	case *protocol.AdvertiseKeys, *protocol.ShareKeys, *protocol.MaskedInput, *protocol.ConsistencyCheck, *protocol.Unmask, *protocol.EvalResult, *protocol.RoundJoin:
		reply, err := n.eng.deliver(ctx, id.ID, m)
		if err != nil {
			return nil, toWireError(err)
		}
		return reply, nil
	}
	return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
}

// toWireError maps engine errors to protocol errors agents understand:
// the stage errors as stagedriver.WireError maps them, and a finished
// round as a closed one.
func toWireError(err error) error {
	if errors.Is(err, ErrRoundFinished) {
		return &protocol.Error{Code: protocol.CodeRoundClosed, Message: err.Error()}
	}
	return stagedriver.WireError(err)
}

// announceFor tells an agent which model to serve if it serves another:
// with lines (an agent at protocol version 5 reports every line it
// serves or declines), the first line, default line first, whose target
// it does not serve and does not decline; without, the default line's
// target against has, the one version older agents serve. named puts the
// line's name in the announce.
func (n *Node) announceFor(agentID string, has uint64, lines []protocol.ServedLine, named bool) protocol.Message {
	var ann *protocol.ModelAnnounce
	n.fsm.Read(func(s *State) {
		var line string
		var v uint64
		if lines == nil {
			if v = s.TargetVersion(agentID); v == has {
				return
			}
			line, _ = s.DefaultLine()
		} else {
			held := make(map[string]protocol.ServedLine, len(lines))
			for _, l := range lines {
				held[l.Name] = l
			}
			for _, t := range s.TargetVersions(agentID) {
				if h, ok := held[t.Line]; !ok || (!h.Declined && h.Version != t.Version) {
					line, v = t.Line, t.Version
					break
				}
			}
		}
		if v == 0 {
			return
		}
		m, ok := s.Models[v]
		if !ok || !m.held() {
			return
		}
		ann = &protocol.ModelAnnounce{Version: v, Size: uint64(m.Size), Encoding: "fedge-model/1"}
		if named {
			ann.Name = line
		}
		copy(ann.Hash[:], mustHex(m.Hash))
	})
	if ann == nil {
		return &protocol.Ack{}
	}
	return ann
}

// ServeBulk serves model downloads from this node's replica.
func (h agentHandler) ServeBulk(ctx context.Context, s *protocol.Session, first protocol.Message, b *protocol.BulkStream) error {
	if up, ok := first.(*protocol.MaskedUpdate); ok {
		id, err := identity.PeerIdentity(s.TLS())
		if err != nil || id.Role != identity.RoleAgent {
			return &protocol.Error{Code: protocol.CodeUnauthorized, Message: "an agent certificate is required"}
		}
		return h.n.eng.acceptUpload(ctx, id.ID, up, b)
	}
	req, ok := first.(*protocol.ModelRequest)
	if !ok {
		return &protocol.Error{Code: protocol.CodeUnsupported, Message: "bulk " + first.Type().String()}
	}
	mb, err := h.n.openModelBlob(ctx, req.Version)
	if err != nil {
		return &protocol.Error{Code: protocol.CodeNotFound, Message: fmt.Sprintf("model %d is not held: %v", req.Version, err)}
	}
	defer mb.Close()
	m := &mb.rec
	// What to send: the job's quantized push for holders of the parent, a
	// lossless delta against a base the agent holds (from a spool file;
	// to agents below chunkedDeltaVersion for models up to
	// maxDeltaModelBytes only), else the model file itself, straight from
	// the blob store.
	var src io.ReaderAt = mb.file()
	size, id := int64(m.Size), "model/"+m.Hash
	if !req.HaveBase.IsZero() {
		want := hex.EncodeToString(req.HaveBase[:])
		var parentHash string
		var base uint64
		h.n.fsm.Read(func(st *State) {
			if p, ok := st.Models[m.Parent]; ok {
				parentHash = p.Hash
			}
			for _, v := range sortedKeys(st.Models) {
				if b := st.Models[v]; b.Hash == want && b.held() && b.Version != m.Version {
					base = b.Version
					break
				}
			}
		})
		switch {
		case m.PushSize > 0 && parentHash == want:
			off, n := m.pushPart()
			src, size, id = io.NewSectionReader(mb.r, off, n), n, "model/"+m.Hash+"/push"
		case base != 0 && sendsDelta(int64(m.Size), s.Version()):
			if ref, ok := h.n.deltaFor(mb, base, req.HaveBase); ok {
				defer ref.Release()
				src, size, id = ref.R, ref.Size, ref.ID
			}
		}
	}
	info, err := h.n.downloads.manifest(id, src, size)
	if err != nil {
		return err
	}
	if req.Offset > uint64(size) {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "offset past the end"}
	}
	if err := b.ServeBlob(ctx, src, &info, req.Offset); err != nil {
		return err
	}
	agentID := ""
	if who, err := identity.PeerIdentity(s.TLS()); err == nil && who.Role == identity.RoleAgent {
		agentID = who.ID
	}
	h.n.eng.countDownload(agentID, req.Version, size-int64(req.Offset))
	return nil
}

// deltaFor returns the lossless delta of mb's model file against version
// base (whose parameters hash to baseHash), from the node's cache, and
// false when none is worth sending. The caller releases it.
func (n *Node) deltaFor(mb *modelBlob, base uint64, baseHash protocol.Hash) (*deltaRef, bool) {
	bb, err := n.fsm.openModel(base)
	if err != nil {
		return nil, false
	}
	defer bb.Close()
	return n.downloads.delta(mb.rec.Version, mb.rec.Hash, mb.file(), baseHash, bb.file())
}

// renew issues a fresh certificate to an agent that holds a valid one.
func (n *Node) renew(ctx context.Context, id identity.Identity, current *x509.Certificate, req *protocol.EnrollRequest) (protocol.Message, error) {
	if !n.rep.isLeader() {
		return nil, n.redirect()
	}
	ca, err := n.openCA()
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeInternal, Message: err.Error()}
	}
	der, err := ca.Renew(current, req.CSR, identity.RevokerFunc(n.revoked), AgentCertTTL, time.Now())
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if _, err := n.rep.apply(ctx, cmdAgentRenew, renewCmd{ID: id.ID, Serial: cert.SerialNumber.Text(16), At: time.Now()}, nil); err != nil {
		return nil, toWireError(err)
	}
	return &protocol.EnrollResponse{AgentID: id.ID, Cert: der, CACert: ca.Certificate().Raw}, nil
}

// enrollHandler serves certificate-less agents that present a join token
// (fedge-enroll/1).
type enrollHandler struct{ n *Node }

func (h enrollHandler) Hello(ctx context.Context, s *protocol.Session, hello *protocol.Hello) (*protocol.HelloAck, error) {
	if err := h.n.checkReady(); err != nil {
		return nil, err
	}
	if !h.n.rep.isLeader() {
		return nil, h.n.redirect()
	}
	return &protocol.HelloAck{NodeID: h.n.cfg.NodeID}, nil
}

func (h enrollHandler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	req, ok := m.(*protocol.EnrollRequest)
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
	}
	resp, err := h.n.enroll(ctx, req)
	if rd := (*protocol.Redirect)(nil); !errors.As(err, &rd) {
		h.n.met.enrolled(err == nil)
	}
	return resp, err
}

func (h enrollHandler) ServeBulk(ctx context.Context, s *protocol.Session, first protocol.Message, b *protocol.BulkStream) error {
	return &protocol.Error{Code: protocol.CodeUnsupported, Message: "no bulk streams on enrollment"}
}

// enroll checks a join token, issues the agent's first certificate and
// registers the agent, consuming the token, in one Raft entry.
func (n *Node) enroll(ctx context.Context, req *protocol.EnrollRequest) (protocol.Message, error) {
	if !n.rep.isLeader() {
		return nil, n.redirect()
	}
	invalid := &protocol.Error{Code: protocol.CodeInvalidToken, Message: "join token unknown, used or expired"}
	tokID, _, err := identity.ParseJoinToken(req.Token)
	if err != nil {
		return nil, invalid
	}
	var rec []byte
	n.fsm.Read(func(s *State) {
		if t, ok := s.Tokens[tokID]; ok && !t.Used && !t.Revoked {
			rec = t.Record
		}
	})
	if rec == nil {
		return nil, invalid
	}
	var tr identity.TokenRecord
	if err := tr.UnmarshalBinary(rec); err != nil {
		return nil, &protocol.Error{Code: protocol.CodeInternal, Message: err.Error()}
	}
	now := time.Now()
	if err := identity.VerifyJoinToken(tr, req.Token, now); err != nil {
		return nil, invalid
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "bad CSR: " + err.Error()}
	}
	if len(csr.URIs) != 1 {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "CSR must name the agent in one URI"}
	}
	agentID, err := identity.ParseIdentity(csr.URIs[0].String())
	if err != nil || agentID.Role != identity.RoleAgent {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "CSR does not name an agent"}
	}
	if err := identity.ValidateLabels(req.Labels); err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
	}
	ca, err := n.openCA()
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeInternal, Message: err.Error()}
	}
	der, err := ca.IssueAgent(req.CSR, agentID.ID, AgentCertTTL, now)
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	_, err = n.rep.apply(ctx, cmdAgentEnroll, enrollCmd{TokenID: tokID, Agent: AgentRecord{
		ID: agentID.ID, Labels: req.Labels, CertSerial: cert.SerialNumber.Text(16), EnrolledAt: now,
	}}, nil)
	switch {
	case errors.Is(err, ErrTokenUsed), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenRevoked), errors.Is(err, ErrNotFound):
		return nil, invalid
	case errors.Is(err, ErrExists):
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "agent ID already enrolled"}
	case err != nil:
		return nil, toWireError(err)
	}
	n.log.Info("agent enrolled", "agent", agentID.ID, "token", tokID)
	return &protocol.EnrollResponse{AgentID: agentID.ID, Cert: der, CACert: ca.Certificate().Raw}, nil
}

// hashHex is the hex form of a protocol hash.
func hashHex(h protocol.Hash) string { return hex.EncodeToString(h[:]) }
