package coordinator

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// Timeouts of the exchanges between the leader and group coordinators.
const (
	// groupProbeTimeout bounds the leader's check that a coordinator
	// answers before it hands it a group.
	groupProbeTimeout = 2 * time.Second
	// groupStartTimeout bounds a GroupStart exchange.
	groupStartTimeout = 10 * time.Second
	// groupSendTimeout bounds sending a group's result to the leader.
	groupSendTimeout = time.Minute
	// groupSendAttempts bounds the tries of a result's upload; each retry
	// resumes after the chunks the leader verified.
	groupSendAttempts = 4
)

var _ groupPeers = (*Node)(nil)

// groupNodes lists this node and every other voter that answers a probe
// on fedge-peer/1 at protocol version 6 within groupProbeTimeout, in
// node ID order.
func (n *Node) groupNodes(ctx context.Context) []groupNode {
	out := []groupNode{{id: n.cfg.NodeID, addr: n.cfg.Advertise, self: true}}
	f := n.rep.raft.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var others []groupNode
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == n.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, groupProbeTimeout)
			defer cancel()
			if err := n.probePeer(pctx, addr); err != nil {
				n.log.Info("coordinator unreachable: it aggregates no group this round", "node", id, "err", err)
				return
			}
			mu.Lock()
			others = append(others, groupNode{id: id, addr: addr})
			mu.Unlock()
		}(string(s.ID), string(s.Address))
	}
	wg.Wait()
	sort.Slice(others, func(a, b int) bool { return others[a].id < others[b].id })
	return append(out, others...)
}

// probePeer checks that the coordinator at addr answers and speaks
// sharded rounds.
func (n *Node) probePeer(ctx context.Context, addr string) error {
	s, err := n.blobsync.session(ctx, addr)
	if err != nil {
		return err
	}
	if s.Version() < shardVersion {
		return fmt.Errorf("coordinator.probePeer: %s speaks protocol version %d, sharded rounds need %d", addr, s.Version(), shardVersion)
	}
	if _, err := s.Request(ctx, &protocol.Heartbeat{Sent: time.Now()}); err != nil {
		n.blobsync.dropSession(addr, s)
		return fmt.Errorf("coordinator.probePeer: %w", err)
	}
	return nil
}

// startGroup hands a group to the coordinator node (GroupStart) and
// returns once its first stage is open there.
func (n *Node) startGroup(ctx context.Context, node groupNode, gs *protocol.GroupStart) (<-chan struct{}, error) {
	s, err := n.blobsync.session(ctx, node.addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, groupStartTimeout)
	defer cancel()
	gs.Index = n.rep.raft.AppliedIndex()
	resp, err := s.Request(sctx, gs)
	if err != nil {
		if pe := (*protocol.Error)(nil); !errors.As(err, &pe) {
			n.blobsync.dropSession(node.addr, s)
		}
		return nil, fmt.Errorf("coordinator.startGroup: %s: %w", node.id, err)
	}
	if _, ok := resp.(*protocol.Ack); !ok {
		return nil, fmt.Errorf("coordinator.startGroup: %s answered %v", node.id, resp.Type())
	}
	return s.Done(), nil
}

// peerCoordinator is the coordinator identity of a peer session.
func peerCoordinator(s *protocol.Session) (string, error) {
	via, err := identity.PeerIdentity(s.TLS())
	if err != nil || via.Role != identity.RoleCoordinator {
		return "", &protocol.Error{Code: protocol.CodeUnauthorized, Message: "a coordinator certificate is required"}
	}
	return via.ID, nil
}

// serveGroupStart runs a group the leader hands this node: it checks
// that the sender leads and that every agent is enrolled and not
// revoked, starts the group's stages and, when they end, sends the
// result to the leader.
func (n *Node) serveGroupStart(ctx context.Context, s *protocol.Session, gs *protocol.GroupStart) (protocol.Message, error) {
	via, err := peerCoordinator(s)
	if err != nil {
		return nil, err
	}
	if leader, _ := n.rep.leader(); via != leader || via == n.cfg.NodeID {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("group start from %s, which does not lead", via)}
	}
	// Know every agent the leader knows (a fresh enrollment).
	wctx, cancel := context.WithTimeout(ctx, groupStartTimeout/2)
	defer cancel()
	for n.rep.raft.AppliedIndex() < gs.Index {
		select {
		case <-wctx.Done():
			return nil, &protocol.Error{Code: protocol.CodeBusy, Message: fmt.Sprintf("applied log index %d of the leader's %d", n.rep.raft.AppliedIndex(), gs.Index)}
		case <-time.After(2 * time.Millisecond):
		}
	}
	var bad []string
	n.fsm.Read(func(st *State) {
		for _, a := range gs.Agents {
			if rec, ok := st.Agents[a.AgentID]; !ok || rec.Revoked {
				bad = append(bad, a.AgentID)
			}
		}
	})
	if len(bad) > 0 {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "agents unknown or revoked: " + strings.Join(bad[:min(len(bad), 5)], ", ")}
	}
	leaderAddr := n.peerAddr(via)
	if leaderAddr == "" {
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("no address for %s", via)}
	}
	gctx, gcancel := context.WithDeadline(n.ctx, gs.TrainBy.Add(4*gs.StageTime+groupResultGrace))
	out, err := n.eng.startGroup(gctx, gs)
	if err != nil {
		gcancel()
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
	}
	n.log.Info("aggregating a group of a sharded round", "round", gs.RoundID, "group", gs.Group, "agents", len(gs.Agents), "leader", via)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		o := <-out
		gcancel()
		if err := n.sendGroupResult(leaderAddr, gs, o); err != nil {
			n.log.Warn("sending a group's result to the leader", "round", gs.RoundID, "group", gs.Group, "err", err)
		}
	}()
	return &protocol.Ack{}, nil
}

// peerAddr is the address of voter id, or "".
func (n *Node) peerAddr(id string) string {
	f := n.rep.raft.GetConfiguration()
	if f.Error() != nil {
		return ""
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return string(s.Address)
		}
	}
	return ""
}

// sendGroupResult sends a group's outcome to the leader at addr: the sum
// as a blob after a GroupResult header, or the header alone with the
// error.
func (n *Node) sendGroupResult(addr string, gs *protocol.GroupStart, o groupOutcome) error {
	ctx, cancel := context.WithTimeout(n.ctx, groupSendTimeout)
	defer cancel()
	hdr := &protocol.GroupResult{RoundID: gs.RoundID, Group: gs.Group, Survivors: o.survivors, Busy: o.busy,
		BytesIn: uint64(max(o.bytesIn, 0)), BytesOut: uint64(max(o.bytesOut, 0))}
	for _, st := range o.stages {
		hdr.Stages = append(hdr.Stages, protocol.GroupStage{Name: st.Name, Expected: uint32(st.Expected), Arrived: uint32(st.Arrived), Took: st.Took})
	}
	var payload []byte
	if o.err == nil && len(o.sum) > 0 {
		payload = make([]byte, 4*len(o.sum))
		for i, v := range o.sum {
			binary.LittleEndian.PutUint32(payload[4*i:], v)
		}
		info, err := protocol.NewBlobInfo(fmt.Sprintf("round/%d/group/%d", gs.RoundID, gs.Group), bytes.NewReader(payload), int64(len(payload)), 0)
		if err != nil {
			return err
		}
		hdr.Elements, hdr.Blob = uint64(len(o.sum)), info
	} else {
		hdr.Error = "no sum"
		if o.err != nil {
			hdr.Error = strings.ToValidUTF8(o.err.Error()[:min(len(o.err.Error()), 1000)], "")
		}
	}
	err := ctx.Err()
	for try := 1; try <= groupSendAttempts && ctx.Err() == nil; try++ {
		var s *protocol.Session
		if s, err = n.blobsync.session(ctx, addr); err == nil {
			if payload != nil {
				err = s.PushBlob(ctx, hdr, bytes.NewReader(payload), &hdr.Blob)
			} else {
				_, err = s.Request(ctx, hdr)
			}
			if err == nil {
				return nil
			}
			if pe := (*protocol.Error)(nil); errors.As(err, &pe) {
				return err // the leader refused it: no retry helps
			}
			n.blobsync.dropSession(addr, s)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(try) * 200 * time.Millisecond):
		}
	}
	return fmt.Errorf("coordinator.sendGroupResult: %w", err)
}

// groupOutcomeOf is the outcome a GroupResult header reports, with sum.
func groupOutcomeOf(m *protocol.GroupResult, sum []uint32) groupOutcome {
	o := groupOutcome{sum: sum, survivors: m.Survivors, busy: m.Busy, bytesIn: int64(min(m.BytesIn, 1<<62)), bytesOut: int64(min(m.BytesOut, 1<<62))}
	for _, st := range m.Stages {
		o.stages = append(o.stages, stageReport(st))
	}
	if m.Error != "" || sum == nil {
		o.sum, o.survivors = nil, nil
		o.err = fmt.Errorf("%w: %s", errGroupFailed, m.Error)
	}
	return o
}

// errGroupFailed wraps the error a group coordinator reports.
var errGroupFailed = errors.New("coordinator: group failed")

// serveGroupResult takes a failed group's result (no sum) on the leader.
func (n *Node) serveGroupResult(s *protocol.Session, m *protocol.GroupResult) (protocol.Message, error) {
	via, err := peerCoordinator(s)
	if err != nil {
		return nil, err
	}
	if !n.eng.groups.arrive(groupKey{m.RoundID, m.Group}, via, groupOutcomeOf(m, nil)) {
		return nil, &protocol.Error{Code: protocol.CodeRoundClosed, Message: fmt.Sprintf("no group %d of round %d is awaited from %s", m.Group, m.RoundID, via)}
	}
	return &protocol.Ack{}, nil
}

// receiveGroupResult takes a group's sum on the leader: only a result
// the leader waits for, from the coordinator it handed the group to, of
// the round's ring length, so a peer cannot make it allocate more.
func (n *Node) receiveGroupResult(ctx context.Context, s *protocol.Session, m *protocol.GroupResult, b *protocol.BulkStream) error {
	via, err := peerCoordinator(s)
	if err != nil {
		return err
	}
	key := groupKey{m.RoundID, m.Group}
	dim, ok := n.eng.groups.expecting(key, via)
	if !ok {
		return &protocol.Error{Code: protocol.CodeRoundClosed, Message: fmt.Sprintf("no group %d of round %d is awaited from %s", m.Group, m.RoundID, via)}
	}
	if m.Error != "" || m.Elements != uint64(dim) {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("a group sum of %d elements, want %d", m.Elements, dim)}
	}
	dst := &protocol.MemBlob{Limit: int64(m.Blob.Size)}
	var p protocol.BlobProgress
	p.Begin(m.Blob)
	if err := b.AcceptBlob(ctx, dst, &p); err != nil {
		return err
	}
	raw := dst.Bytes()
	if len(raw) != 4*dim {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "short group sum"}
	}
	sum := make([]uint32, dim)
	for i := range sum {
		sum[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	n.eng.groups.arrive(key, via, groupOutcomeOf(m, sum))
	return nil
}

// roundSessionHello accepts an agent session that carries the stage
// messages of a sharded round's group this node aggregates (Hello.Round):
// on any node, leader or not. The agent must be enrolled, not revoked,
// and present the identity key the group's configuration lists for it.
// The session is not one of the node's agent links (the engine never
// invites on it, heartbeats on it are refused): its end drops the agent
// from its group.
func (n *Node) roundSessionHello(s *protocol.Session, hello *protocol.Hello) (*protocol.HelloAck, error) {
	id, err := identity.PeerIdentity(s.TLS())
	if err != nil || id.Role != identity.RoleAgent {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "an agent certificate is required"}
	}
	if hello.AgentID != "" && hello.AgentID != id.ID {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "hello names another agent than the certificate"}
	}
	ok := false
	n.fsm.Read(func(st *State) {
		a, known := st.Agents[id.ID]
		ok = known && !a.Revoked
	})
	if !ok {
		return nil, &protocol.Error{Code: protocol.CodeUnauthorized, Message: "agent unknown or revoked"}
	}
	key, _ := s.PeerCertificate().PublicKey.(ed25519.PublicKey)
	if !n.eng.groupKeyOK(hello.Round, id.ID, key) {
		return nil, &protocol.Error{Code: protocol.CodeRoundClosed, Message: fmt.Sprintf("this node aggregates no group of round %d for agent %s", hello.Round, id.ID)}
	}
	round := hello.Round
	n.groupSessions.Add(1)
	go func() {
		<-s.Done()
		n.groupSessions.Add(-1)
		n.eng.groups.withdraw(round, id.ID)
	}()
	n.log.Debug("agent session for a group", "agent", id.ID, "round", round)
	return &protocol.HelloAck{NodeID: n.cfg.NodeID}, nil
}

// stageReport is a group stage as the stage driver reports it.
func stageReport(s protocol.GroupStage) stagedriver.StageReport {
	return stagedriver.StageReport{Name: s.Name, Expected: int(s.Expected), Arrived: int(s.Arrived), Took: s.Took}
}
