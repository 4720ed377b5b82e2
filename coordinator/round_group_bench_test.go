package coordinator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
)

// v6Link is a simulated agent that speaks sharded rounds.
type v6Link struct{ *simAgent }

func (v6Link) Version() uint32 { return shardVersion }

// memPeers is an in-memory twin of the node's groupPeers: the other
// coordinators are engines in this process, and a group's outcome goes
// straight to the leader's wait.
type memPeers struct {
	leader *Engine
	nodes  []groupNode
	engs   map[string]*Engine
}

func (p *memPeers) groupNodes(context.Context) []groupNode { return p.nodes }

func (p *memPeers) startGroup(ctx context.Context, node groupNode, gs *protocol.GroupStart) (<-chan struct{}, error) {
	out, err := p.engs[node.id].startGroup(context.WithoutCancel(ctx), gs)
	if err != nil {
		return nil, err
	}
	go func() {
		o := <-out
		p.leader.groups.arrive(groupKey{gs.RoundID, gs.Group}, node.id, o)
	}()
	return nil, nil
}

// benchShardedRounds runs b.N training rounds of the 2nn with n synthetic
// agents under SecAgg+ through the engine, as benchRounds does, on a
// leader with nodes-1 other coordinators (engines in this process): the
// round splits into one group per coordinator (min_group n/nodes) unless
// nodes is 1. It reports the leader's own time per round
// (coordinator_seconds: its group's SecAgg+ work, adding the group sums,
// decoding, the strategy) and each other coordinator's, and the wall time.
func benchShardedRounds(b *testing.B, n, nodes int) {
	fsm, rep := benchState(b)
	cpu := make(chan struct{}, 1)
	engs := map[string]*Engine{}
	agents := synthAgents(fsm, n, func(_ int, a *simAgent) *AgentRecord {
		a.cpu, a.groupEngines = cpu, engs
		return &AgentRecord{ID: a.id}
	})
	links := make([]AgentLink, len(agents))
	for i, a := range agents {
		links[i] = v6Link{a}
	}
	cfg := EngineConfig{Idle: 10 * time.Millisecond, InviteTimeout: time.Minute}
	eng := newEngine(discardLogger(), cfg, fsm, rep, func() []AgentLink { return links }, nil)
	peers := &memPeers{leader: eng, engs: engs, nodes: []groupNode{{id: "c1", self: true}}}
	for i := 2; i <= nodes; i++ {
		id := fmt.Sprintf("c%d", i)
		engs[id] = newEngine(discardLogger(), cfg, fsm, rep, func() []AgentLink { return nil }, nil)
		peers.nodes = append(peers.nodes, groupNode{id: id, addr: id})
	}
	eng.peers = peers
	for _, a := range agents {
		a.eng = eng
	}
	sharded := "off"
	if nodes > 1 {
		sharded = "on"
	}
	wall := timeJob(b, fsm, rep, eng, JobSpec{Model: "2nn", Rounds: b.N, Fraction: 1, MinClients: n,
		SecAgg:   SecAggSpec{Enabled: true, Sharded: sharded, MinGroup: n / nodes},
		Deadline: Deadlines{Train: Duration(10 * time.Minute), Stage: Duration(10 * time.Minute)}})
	rounds, coord := reportRounds(b, fsm, wall)
	var others, groups float64
	for _, r := range rounds {
		groups += float64(len(r.Groups))
		for _, g := range r.Groups {
			if g.Coordinator != "c1" {
				others = max(others, g.BusySeconds)
			}
		}
	}
	if nodes > 1 && groups != float64(nodes*b.N) {
		b.Fatalf("%v groups in %d rounds, want %d per round", groups, b.N, nodes)
	}
	b.ReportMetric(coord/float64(b.N), "leader-s/round")
	b.ReportMetric(others, "max-other-s/group")
}

// BenchmarkShardedLeader runs the same cohort with every agent on the
// leader and sharded over 3 coordinators (engines in this process). Its
// leader-s/round is wall time inside the leader's own steps, which the
// other engines' concurrent work on the same cores stretches: it checks
// the sharded path at scale, but the leader's CPU per round is measured
// with a process per coordinator (scripts/shard-bench).
func BenchmarkShardedLeader(b *testing.B) {
	for _, n := range []int{300, 1000} {
		for _, nodes := range []int{1, 3} {
			b.Run(fmt.Sprintf("N%d/coordinators%d", n, nodes), func(b *testing.B) { benchShardedRounds(b, n, nodes) })
		}
	}
}
