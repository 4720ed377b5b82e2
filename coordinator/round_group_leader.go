package coordinator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
)

// groupResultGrace is how long past a group's last stage deadline the
// leader waits for its result before counting the group lost.
const groupResultGrace = 5 * time.Second

// groupNode is a coordinator that can aggregate a group of a round.
type groupNode struct {
	id, addr string
	// self is the leader itself: its group runs in process.
	self bool
}

// groupPeers reaches the other coordinators for sharded rounds. The node
// implements it over fedge-peer/1 (round_group_peer.go).
type groupPeers interface {
	// groupNodes lists the voters that can aggregate a group now: this
	// node first, then every other voter that answers; a coordinator it
	// cannot reach is left out.
	groupNodes(ctx context.Context) []groupNode
	// startGroup hands gs to node and returns once the group's first
	// stage accepts messages there. lost is closed if the session with
	// node ends (the node is gone) before the group's result arrives.
	startGroup(ctx context.Context, node groupNode, gs *protocol.GroupStart) (lost <-chan struct{}, err error)
}

// speaksShards reports whether an agent can run its SecAgg+ stages on a
// session with another coordinator than the leader (protocol version 6).
func speaksShards(l AgentLink) bool {
	v, ok := l.(interface{ Version() uint32 })
	return ok && v.Version() >= shardVersion
}

// shardGroups decides whether a training round over joined is sharded,
// and how: the groups of agents and, for each, its coordinator (the
// leader's first). Nil means the leader aggregates every agent.
func (e *Engine) shardGroups(ctx context.Context, spec *JobSpec, joined []AgentLink) ([][]AgentLink, []groupNode) {
	if e.peers == nil {
		return nil, nil
	}
	sharding := 0
	for _, l := range joined {
		if speaksShards(l) {
			sharding++
		}
	}
	if groupCount(spec, len(joined), sharding, len(joined)) < 2 {
		return nil, nil // no two groups fit, whatever the coordinators
	}
	nodes := e.peers.groupNodes(ctx)
	g := groupCount(spec, len(joined), sharding, len(nodes))
	if g < 2 {
		return nil, nil
	}
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, nil
	}
	groups := splitGroups(joined, g, groupMin(spec), seed, speaksShards)
	if len(groups) < 2 {
		return nil, nil
	}
	return groups, nodes[:len(groups)]
}

// shardGroup is one group of a sharded round as the leader runs it.
type shardGroup struct {
	node  groupNode
	links []AgentLink
	start *protocol.GroupStart
	res   <-chan groupOutcome
	lost  <-chan struct{}
	err   error
	out   groupOutcome
}

// collectSharded runs the SecAgg+ part of a training round in groups:
// one secagg.Config per group (its own participants, graph seed and
// neighbour degree; the quantizer sized for the whole cohort so that the
// group sums add in the ring without overflow), each group aggregated by
// its coordinator, the leader's own group here. It sends every agent its
// group's plan, waits for the group sums until the round's last stage
// deadline, adds those that arrived and decodes the weighted mean over
// their survivors, as collectTrain does for one group. A group whose
// coordinator was lost counts its agents as dropouts; the round goes on
// if the survivors of the other groups are enough.
func (e *Engine) collectSharded(ctx context.Context, r *activeRound, rec *RoundRecord, spec *JobSpec, plan *protocol.RoundPlan,
	groups [][]AgentLink, nodes []groupNode, q secagg.Quantizer, dim int, trainBy time.Time, stageTime time.Duration, priv *roundPrivacy,
) ([]float32, float64, int, error) {
	total := 0
	for _, g := range groups {
		total += len(g)
	}
	if err := q.Check(total); err != nil {
		return nil, 0, 0, fmt.Errorf("coordinator.collectSharded: %w", err)
	}
	cluster := e.clusterName()
	sg := make([]*shardGroup, len(groups))
	minSurvivors := 0
	for i, links := range groups {
		ids, parts := secaggIDs(links)
		k := spec.SecAgg.K
		if k == 0 && spec.OverSelect > 0 {
			k = secagg.NeighboursForDropout(len(parts), spec.OverSelect, 1e-6)
		}
		cfg := &secagg.Config{
			RoundID:      []byte(fmt.Sprintf("%s/round/%d/group/%d", cluster, r.id, i)),
			Participants: parts, Neighbours: k, Threshold: spec.SecAgg.T,
			Dim: q.EncodedLen(dim), Quantizer: &q,
		}
		if _, err := rand.Read(cfg.GraphSeed[:]); err != nil {
			return nil, 0, 0, err
		}
		resolved, err := cfg.Resolve()
		if err != nil {
			return nil, 0, 0, fmt.Errorf("coordinator.collectSharded: group %d: %w", i, err)
		}
		if priv != nil {
			// As in an unsharded round (dpMinSurvivors): the group's share
			// of the job's minimum is the least its secure sum may hold,
			// so the agents' noise is not sized for SecAgg+'s threshold.
			share := (roundMin(spec)*len(links) + total - 1) / total
			if resolved, err = dpMinSurvivors(cfg, resolved, share); err != nil {
				return nil, 0, 0, fmt.Errorf("coordinator.collectSharded: group %d: %w", i, err)
			}
		}
		minSurvivors += resolved.MinSurvivors
		b, err := cfg.MarshalBinary()
		if err != nil {
			return nil, 0, 0, err
		}
		gs := &protocol.GroupStart{RoundID: r.id, Group: uint32(i), Owner: r.owner, SecAgg: b, TrainBy: trainBy.Add(stageTime), StageTime: stageTime}
		for _, l := range links {
			gs.Agents = append(gs.Agents, protocol.GroupAgent{AgentID: l.AgentID(), ID: ids[l.AgentID()]})
		}
		sg[i] = &shardGroup{node: nodes[i], links: links, start: gs}
	}
	defer e.groups.forget(r.id)
	var wg sync.WaitGroup
	for i, g := range sg {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.node.self {
				g.res, g.err = e.startGroup(ctx, g.start)
				return
			}
			g.res = e.groups.expect(groupKey{r.id, uint32(i)}, g.node.id, q.EncodedLen(dim))
			g.lost, g.err = e.peers.startGroup(ctx, g.node, g.start)
		}()
	}
	wg.Wait()
	// Every agent gets its group's configuration and, away from the
	// leader, its group's coordinator; the noise is calibrated on the
	// least number of survivors of all groups together.
	if priv != nil {
		plan.DP = priv.params(minSurvivors)
	}
	plans := map[string]protocol.Message{}
	var send, stray []AgentLink
	for _, g := range sg {
		if g.err != nil {
			e.log.Warn("group coordinator refused its group: its agents drop out", "round", r.id, "group", g.start.Group, "node", g.node.id, "err", g.err)
			stray = append(stray, g.links...)
			continue
		}
		p := *plan
		p.SecAgg = g.start.SecAgg
		if !g.node.self {
			p.GroupNode, p.GroupAddr = g.node.id, g.node.addr
		}
		for _, l := range g.links {
			plans[l.AgentID()] = &p
		}
		send = append(send, g.links...)
	}
	e.broadcast(ctx, send, func(l AgentLink) protocol.Message { return plans[l.AgentID()] })
	if len(stray) > 0 {
		e.broadcast(ctx, stray, func(AgentLink) protocol.Message {
			return &protocol.RoundAbort{RoundID: r.id, Reason: "the coordinator of the agent's group is unavailable"}
		})
	}
	e.awaitGroups(ctx, sg, trainBy.Add(5*stageTime+groupResultGrace))
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	sum := make([]uint32, q.EncodedLen(dim))
	survivors := 0
	for _, g := range sg {
		o := g.out
		gr := GroupRecord{Group: int(g.start.Group), Coordinator: g.node.id, Agents: len(g.links), BusySeconds: o.busy.Seconds()}
		for _, s := range o.stages {
			s.Name = fmt.Sprintf("group %d %s", g.start.Group, s.Name)
			rec.Stages = append(rec.Stages, stageRecord(s))
		}
		r.bytesIn.Add(o.bytesIn)
		r.bytesOut.Add(o.bytesOut)
		if g.node.self {
			r.busy.Add(int64(o.busy))
		}
		if o.err == nil {
			if err := r.timed(func() error { return secagg.AddSums(sum, o.sum) }); err != nil {
				o.err = err
			}
		}
		if o.err != nil {
			gr.Error = o.err.Error()
		} else {
			gr.Survivors = len(o.survivors)
			survivors += len(o.survivors)
		}
		rec.Groups = append(rec.Groups, gr)
	}
	if need := roundMin(spec); survivors < need {
		return nil, 0, 0, fmt.Errorf("%w: %d agents survived in the groups that returned a sum, need %d", ErrNotEnoughAgents, survivors, need)
	}
	if priv.noised() && survivors < minSurvivors {
		// The agents' noise was calibrated on minSurvivors: fewer in the
		// sum (a group was lost) would release it under-noised.
		return nil, 0, 0, fmt.Errorf("coordinator.collectSharded: %d survivors carry the DP noise calibrated for at least %d: the round is not released", survivors, minSurvivors)
	}
	// The mean is decoded into the sum's own memory, as collectTrain does.
	var mean []float32
	var w uint32
	if err := r.timed(func() (err error) { mean, w, err = q.DecodeMeanInPlace(sum); return }); err != nil {
		return nil, 0, 0, err
	}
	return mean, float64(w), survivors, nil
}

// awaitGroups waits for each started group's outcome until deadline: a
// group whose coordinator's session ended, or whose result is late, is
// lost.
func (e *Engine) awaitGroups(ctx context.Context, sg []*shardGroup, deadline time.Time) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	late := false
	for _, g := range sg {
		if g.err != nil {
			g.out = groupOutcome{err: g.err}
			continue
		}
		if late {
			select {
			case g.out = <-g.res:
			default:
				g.out = groupOutcome{err: fmt.Errorf("%w: no result from %s by the round's deadline", ErrGroupLost, g.node.id)}
			}
			continue
		}
		select {
		case g.out = <-g.res:
		case <-g.lost:
			// The result may have arrived just before the session ended.
			select {
			case g.out = <-g.res:
			default:
				g.out = groupOutcome{err: fmt.Errorf("%w: the session with %s ended", ErrGroupLost, g.node.id)}
			}
		case <-timer.C:
			late = true
			g.out = groupOutcome{err: fmt.Errorf("%w: no result from %s by the round's deadline", ErrGroupLost, g.node.id)}
		case <-ctx.Done():
			g.out = groupOutcome{err: ctx.Err()}
		}
		if g.out.err != nil && errors.Is(g.out.err, ErrGroupLost) {
			e.log.Warn("group lost: its agents count as dropouts", "group", g.start.Group, "node", g.node.id, "agents", len(g.links), "err", g.out.err)
		}
	}
}
