package coordinator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// Sharded rounds: the leader splits a round's agents into groups and
// hands each to a coordinator (itself included), which runs the SecAgg+
// server stages for that group and returns the group's unmasked ring sum
// (round_group_leader.go fans out and adds the sums; round_group_peer.go
// carries groups and results between coordinators). This file is the
// part every coordinator runs: the groups it aggregates now, and the
// results it waits for when it leads.

// Errors of sharded rounds.
var (
	// ErrGroupLost is why a group's sum is missing from a round: its
	// coordinator was lost, or its result did not arrive in time.
	ErrGroupLost = errors.New("coordinator: group coordinator lost")
	// ErrGroupRefused is a GroupStart this node cannot run.
	ErrGroupRefused = errors.New("coordinator: group refused")
)

// groupKey names one group of one round.
type groupKey struct {
	round uint64
	group uint32
}

// groupOutcome is what aggregating one group gave: its sum (nil when it
// failed), the agents whose inputs are in it, its stages, and the
// aggregating node's work and traffic.
type groupOutcome struct {
	sum               []uint32
	survivors         []string
	stages            []stagedriver.StageReport
	busy              time.Duration
	bytesIn, bytesOut int64
	err               error
}

// groupRounds are the groups this node aggregates (activeRound-like
// holders keyed by round and group), and, on the leader, the results it
// waits for. The zero value is empty and ready.
type groupRounds struct {
	mu      sync.Mutex
	running map[groupKey]*groupRound
	waiting map[groupKey]*groupWait
}

// groupRound is one group this node aggregates.
type groupRound struct {
	*activeRound
	group uint32
	// keys are the agents' identity keys, as the group's configuration
	// lists them.
	keys map[string]ed25519.PublicKey
}

// groupWait is a result the leader waits for.
type groupWait struct {
	node string // the coordinator that aggregates the group
	dim  int    // ring elements of the sum
	out  chan groupOutcome
}

// add registers a group this node aggregates.
func (g *groupRounds) add(k groupKey, r *groupRound) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.running[k]; ok {
		return fmt.Errorf("%w: group %d of round %d already runs here", ErrGroupRefused, k.group, k.round)
	}
	if g.running == nil {
		g.running = map[groupKey]*groupRound{}
	}
	g.running[k] = r
	return nil
}

func (g *groupRounds) remove(k groupKey, r *groupRound) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[k] == r {
		delete(g.running, k)
	}
}

// find returns the group of round that agent belongs to on this node, or
// nil.
func (g *groupRounds) find(round uint64, agent string) *groupRound {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, r := range g.running {
		if k.round != round {
			continue
		}
		if _, ok := r.ids[agent]; ok {
			return r
		}
	}
	return nil
}

// count is the number of groups this node aggregates now.
func (g *groupRounds) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.running)
}

// withdraw drops agent from its groups on this node (of round, or of
// every round when round is 0), and reports whether it was in one.
func (g *groupRounds) withdraw(round uint64, agent string) bool {
	g.mu.Lock()
	var rs []*groupRound
	for k, r := range g.running {
		if round != 0 && k.round != round {
			continue
		}
		if _, ok := r.ids[agent]; ok {
			rs = append(rs, r)
		}
	}
	g.mu.Unlock()
	for _, r := range rs {
		r.Withdraw(agent)
	}
	return len(rs) > 0
}

// expect registers a result the leader waits for from node.
func (g *groupRounds) expect(k groupKey, node string, dim int) <-chan groupOutcome {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiting == nil {
		g.waiting = map[groupKey]*groupWait{}
	}
	w := &groupWait{node: node, dim: dim, out: make(chan groupOutcome, 1)}
	g.waiting[k] = w
	return w.out
}

// expecting returns the ring length of the result k that node may send,
// and whether the leader waits for it.
func (g *groupRounds) expecting(k groupKey, node string) (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w, ok := g.waiting[k]
	if !ok || w.node != node {
		return 0, false
	}
	return w.dim, true
}

// arrive hands the leader the result k from node; false if it does not
// wait for it (any more).
func (g *groupRounds) arrive(k groupKey, node string, o groupOutcome) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	w, ok := g.waiting[k]
	if !ok || w.node != node {
		return false
	}
	delete(g.waiting, k)
	w.out <- o
	return true
}

// forget stops waiting for the results of round.
func (g *groupRounds) forget(round uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.waiting {
		if k.round == round {
			delete(g.waiting, k)
		}
	}
}

// startGroup aggregates one group on this node: it runs the SecAgg+
// server stages (a stagedriver.SecAgg) for the group's agents, whose
// stage messages and uploads reach it through deliver and acceptUpload,
// and returns once the first stage accepts messages. The outcome arrives
// on the channel when the stages end (or ctx does). The leader runs its
// own group through here too.
func (e *Engine) startGroup(ctx context.Context, gs *protocol.GroupStart) (<-chan groupOutcome, error) {
	cfg := new(secagg.Config)
	if err := cfg.UnmarshalBinary(gs.SecAgg); err != nil {
		return nil, fmt.Errorf("%w: coordinator.startGroup: %w", ErrGroupRefused, err)
	}
	keys := make(map[uint32]ed25519.PublicKey, len(cfg.Participants))
	for _, p := range cfg.Participants {
		keys[p.ID] = p.SigningKey
	}
	if len(gs.Agents) != len(cfg.Participants) {
		return nil, fmt.Errorf("%w: %d agents for %d participants", ErrGroupRefused, len(gs.Agents), len(cfg.Participants))
	}
	g := &groupRound{
		activeRound: &activeRound{id: gs.RoundID, owner: gs.Owner, ids: make(map[string]uint32, len(gs.Agents))},
		group:       gs.Group, keys: make(map[string]ed25519.PublicKey, len(gs.Agents)),
	}
	for _, a := range gs.Agents {
		k, ok := keys[a.ID]
		if _, dup := g.ids[a.AgentID]; !ok || dup {
			return nil, fmt.Errorf("%w: agent %s: participant %d is not in the group's configuration once", ErrGroupRefused, a.AgentID, a.ID)
		}
		g.ids[a.AgentID], g.keys[a.AgentID] = a.ID, k
	}
	key := groupKey{gs.RoundID, gs.Group}
	if err := e.groups.add(key, g); err != nil {
		return nil, err
	}
	opened := make(chan struct{})
	out := make(chan groupOutcome, 1)
	go func() {
		d := &stagedriver.SecAgg{
			Round: &g.Round, RoundID: gs.RoundID, Config: cfg, IDs: g.ids,
			Start: func() { close(opened) }, FirstBy: gs.TrainBy, StageTime: gs.StageTime, Uploads: g.activeRound,
		}
		res, err := d.Run(ctx)
		e.groups.remove(key, g)
		g.Close(ErrRoundFinished)
		g.uploads.releaseAll()
		o := groupOutcome{stages: d.Reports(), busy: d.Busy() + time.Duration(g.busy.Load()), bytesIn: g.bytesIn.Load(), bytesOut: g.bytesOut.Load(), err: err}
		if err == nil {
			o.sum = res.Sum
			byID := make(map[uint32]string, len(g.ids))
			for a, id := range g.ids {
				byID[id] = a
			}
			for _, id := range res.Survivors {
				o.survivors = append(o.survivors, byID[id])
			}
		}
		out <- o
	}()
	select {
	case <-opened:
		return out, nil
	case o := <-out:
		if o.err == nil {
			o.err = errors.New("the group ended before it started")
		}
		return nil, fmt.Errorf("%w: coordinator.startGroup: %w", ErrGroupRefused, o.err)
	}
}

// groupKeyOK reports whether key is the identity key the group of round
// that agent belongs to on this node lists for it.
func (e *Engine) groupKeyOK(round uint64, agent string, key ed25519.PublicKey) bool {
	g := e.groups.find(round, agent)
	return g != nil && g.keys[agent].Equal(key)
}

// GroupsRunning is the number of SecAgg+ groups of sharded rounds this
// node aggregates now (on the leader, its own group included).
func (n *Node) GroupsRunning() int { return n.eng.groups.count() }
