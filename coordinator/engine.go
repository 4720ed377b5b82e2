package coordinator

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// AgentLink is how the round engine reaches one connected agent. The
// node's agent sessions implement it; tests may use an in-memory twin.
type AgentLink interface {
	// AgentID is the enrolled identity the transport authenticated.
	AgentID() string
	// SigningKey is the Ed25519 public key of the agent's certificate; it
	// verifies the agent's SecAgg+ signatures.
	SigningKey() ed25519.PublicKey
	// Request sends a message and waits for the agent's answer.
	Request(ctx context.Context, m protocol.Message) (protocol.Message, error)
	// Send pushes a one-way message.
	Send(ctx context.Context, m protocol.Message) error
}

// ConcurrentLink is an AgentLink whose agent said how many rounds of
// different jobs it runs at once (its jobs.concurrent, in its heartbeats).
// The engine invites an agent to another round while its rounds in
// progress are fewer than that; a link without the method, or one
// reporting 0 (nothing reported yet), takes one round at a time.
type ConcurrentLink interface {
	AgentLink
	// Concurrent is how many rounds the agent runs at once; 0 if unknown.
	Concurrent() int
}

// roundsAtOnce is how many rounds of this engine l's agent may take part
// in at once: what it reported, at least 1.
func roundsAtOnce(l AgentLink) int {
	if c, ok := l.(ConcurrentLink); ok {
		return max(1, c.Concurrent())
	}
	return 1
}

// Errors of the round engine.
var (
	ErrNotEnoughAgents = errors.New("coordinator: not enough eligible agents connected")
	ErrRoundFailed     = errors.New("coordinator: round failed")
)

// replicator is what the engine needs of the replicated state.
type replicator interface {
	apply(ctx context.Context, t cmdType, hdr any, payload []byte) (any, error)
	term() uint64
	nodeID() string
}

// EngineConfig tunes the round engine. Zero values mean the defaults.
type EngineConfig struct {
	// Idle is how long the engine waits when there is nothing to do or not
	// enough agents; default 500 ms.
	Idle time.Duration
	// InviteTimeout bounds the invite/join exchange; default 10 s.
	InviteTimeout time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// MaxRounds bounds the rounds in progress at once on the leader, of
	// different jobs, rollouts and explanation requests (each of which
	// runs one round at a time); default DefaultMaxConcurrentRounds. The
	// node sets it from Config.MaxConcurrentRounds.
	MaxRounds int
}

// Engine runs rounds on the leader: training rounds of running jobs,
// evaluation rounds of rollouts and explanation rounds, each job, rollout
// and the explanation queue in a loop of its own (engine_loops.go), at
// most one round of each at a time and at most EngineConfig.MaxRounds
// rounds at once.
type Engine struct {
	log   *slog.Logger
	cfg   EngineConfig
	fsm   *FSM
	rep   replicator
	links func() []AgentLink
	met   *engineMetrics // nil records nothing

	mu sync.Mutex
	// rounds are the rounds in progress, by round ID: agents' messages go
	// to the round whose ID they carry.
	rounds map[uint64]*activeRound
	// claims name, per agent, the rounds it was invited to or joined, in
	// the order it was invited: an agent takes part in at most
	// roundsAtOnce rounds of this engine at a time (rounds of different
	// jobs: each job runs one round at a time).
	claims map[string][]uint64
	// slots bound the rounds in progress (EngineConfig.MaxRounds), first
	// come first served.
	slots *slots
	// loops are the running loops by key ("job/ID", "rollout/ID",
	// "explain"), for loops that yield to those waiting for agents.
	loops map[string]*loopState
	// tried is closed (and replaced) each time a loop has tried a step.
	tried chan struct{}

	strategies map[string]Strategy // per job, with the model version their state belongs to
	stratVer   map[string]uint64

	// wake is closed (and replaced) when an agent connects, a round ends
	// (its agents are free) or an explanation is queued, so loops waiting
	// for agents start their round at once rather than after a back-off.
	wake chan struct{}

	// waits says, per "job/ID" or "rollout/ID", why the engine is not
	// running its rounds (too few agents), for status answers.
	waits map[string]string
	// residuals keep, per job with quantized pushes, what the last push
	// dropped, for the next one (error feedback). Leader memory only: a
	// new leader starts without it, which costs one round's rounding.
	residuals map[string]pushResidual
	// issues keep each agent's last reason for declining or leaving a
	// round (agent_issues.go). Leader memory only.
	issues map[string]agentIssue
	// explains are operators' explanation rounds, waiting (round_explain.go).
	explains []*explainJob

	// groups are the SecAgg+ groups of sharded rounds this node
	// aggregates, and the group results it waits for when it leads
	// (round_group.go).
	groups groupRounds
	// peers reaches the other coordinators for sharded rounds; nil never
	// shards (round_group_leader.go).
	peers groupPeers
}

// pushResidual is what quantizing the push of version dropped.
type pushResidual struct {
	version uint64
	r       []float32
}

// pushResidual returns the residual left by the push of version parent of
// job, or nil.
func (e *Engine) pushResidual(job string, parent uint64) []float32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.residuals[job]; ok && p.version == parent {
		return p.r
	}
	return nil
}

func newEngine(log *slog.Logger, cfg EngineConfig, fsm *FSM, rep replicator, links func() []AgentLink, met *engineMetrics) *Engine {
	if cfg.Idle == 0 {
		cfg.Idle = 500 * time.Millisecond
	}
	if cfg.InviteTimeout == 0 {
		cfg.InviteTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = DefaultMaxConcurrentRounds
	}
	return &Engine{
		log: log, cfg: cfg, fsm: fsm, rep: rep, links: links, met: met,
		strategies: map[string]Strategy{}, stratVer: map[string]uint64{}, waits: map[string]string{},
		residuals: map[string]pushResidual{}, issues: map[string]agentIssue{}, wake: make(chan struct{}),
		rounds: map[uint64]*activeRound{}, claims: map[string][]uint64{}, slots: newSlots(cfg.MaxRounds),
		loops: map[string]*loopState{}, tried: make(chan struct{}),
	}
}

// agentConnected wakes the loops that wait for agents.
func (e *Engine) agentConnected() { e.poke() }

// agentGone drops an agent whose session ended from the running round: it
// cannot send its next stage message (a restarted agent has lost the
// round's secrets), so no stage waits for it. SecAgg+ counts it as a
// dropout.
func (e *Engine) agentGone(agentID string) {
	for _, r := range e.activeRounds() {
		if r.Withdraw(agentID) {
			e.log.Info("agent's session ended mid-round: dropped from the round", "round", r.id, "agent", agentID)
		}
	}
	if e.groups.withdraw(0, agentID) {
		e.log.Info("agent's session ended mid-round: dropped from its group", "agent", agentID)
	}
}

// noteWait records (or clears) why key's rounds cannot run: a shortage of
// agents is worth telling the operator who asks for the status.
func (e *Engine) noteWait(key string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if errors.Is(err, ErrNotEnoughAgents) {
		e.waits[key] = strings.TrimPrefix(err.Error(), ErrNotEnoughAgents.Error()+": ")
	} else {
		delete(e.waits, key)
	}
}

// waiting returns why the job or rollout key ("job/ID", "rollout/ID") is
// waiting, or "" if it is not (or this node does not lead).
func (e *Engine) waiting(key string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.waits[key]
}

// run drives rounds until ctx ends (when this node stops leading). It
// first aborts rounds a previous leader left running, then keeps one loop
// per running job, running rollout and, while operators wait for
// explanations, the explanation queue (engine_loops.go): their rounds run
// at the same time, at most MaxRounds at once. run returns once every
// loop has ended.
func (e *Engine) run(ctx context.Context) {
	if n, err := e.rep.apply(ctx, cmdAbortRounds, abortCmd{Leader: e.rep.nodeID(), Term: e.rep.term(), At: e.cfg.Now(), Reason: "leader changed mid-round"}, nil); err != nil {
		e.log.Warn("aborting earlier rounds", "err", err)
	} else if n.(int) > 0 {
		e.log.Info("aborted rounds left by the previous leader", "rounds", n)
	}
	// Strategy state must come from the replicated log, not from an earlier
	// term on this node.
	e.mu.Lock()
	e.strategies, e.stratVer = map[string]Strategy{}, map[string]uint64{}
	e.waits = map[string]string{}
	e.residuals = map[string]pushResidual{}
	e.issues = map[string]agentIssue{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.waits = map[string]string{} // a follower knows of no waits
		e.mu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]chan struct{}{} // loop key → closed when the loop ends
	for ctx.Err() == nil {
		wake := e.woken()
		for _, key := range e.loopKeys() {
			if done, ok := running[key]; ok {
				select {
				case <-done: // ended: the key is back, start it again
				default:
					continue
				}
			}
			done := make(chan struct{})
			running[key] = done
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(done)
				e.loop(ctx, key)
			}()
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-time.After(e.cfg.Idle):
		}
	}
}

// step runs one unit of work of the loop key ("job/ID", "rollout/ID" or
// "explain") in a round slot: a rollout's evaluation round, the oldest
// queued explanation, or a job's next round: the federated evaluation it
// owes (eval_every), or training. It reports false when the key has no
// more work (the job or rollout no longer runs, the queue is empty): its
// loop ends.
func (e *Engine) step(ctx context.Context, key string) (bool, error) {
	if err := e.slots.acquire(ctx); err != nil {
		return true, err
	}
	defer e.slots.release()
	kind, id, _ := strings.Cut(key, "/")
	switch kind {
	case loopExplain:
		j := e.nextExplain()
		if j == nil {
			return false, nil
		}
		return true, e.explainRound(ctx, j)
	case loopRollout:
		var rollout *RolloutRecord
		e.fsm.Read(func(s *State) {
			if r, ok := s.Rollouts[id]; ok && r.State == RolloutRunning {
				c := *r
				rollout = &c
			}
		})
		if rollout == nil {
			return false, nil
		}
		err := e.rolloutStep(ctx, rollout)
		e.noteWait(key, err)
		return true, err
	case loopJob:
		var job *JobRecord
		e.fsm.Read(func(s *State) {
			if j, ok := s.Jobs[id]; ok && j.State == JobRunning {
				c := *j
				job = &c
			}
		})
		if job == nil {
			return false, nil
		}
		var err error
		if job.evalDue() {
			err = e.jobEvalRound(ctx, job)
		} else {
			err = e.trainRound(ctx, job)
		}
		e.noteWait(key, err)
		return true, err
	}
	return false, nil
}

// eligible returns the connected, unrevoked agents matching selector, in
// a random order, leaving out those busy in as many rounds in progress as
// they run at once (roundsAtOnce: 1 unless the agent reported more).
func (e *Engine) eligible(selector map[string]string, only map[string]bool) []AgentLink {
	var out []AgentLink
	links := e.links()
	busy := map[string]bool{}
	e.mu.Lock()
	for _, l := range links {
		if len(e.claims[l.AgentID()]) >= roundsAtOnce(l) {
			busy[l.AgentID()] = true
		}
	}
	e.mu.Unlock()
	e.fsm.Read(func(s *State) {
		for _, l := range links {
			a, ok := s.Agents[l.AgentID()]
			if !ok || a.Revoked || !matches(selector, a.Labels) {
				continue
			}
			if only != nil && !only[a.ID] {
				continue
			}
			if busy[a.ID] {
				continue
			}
			out = append(out, l)
		}
	})
	shuffle(out)
	return out
}

// shuffle permutes links with a generator seeded from crypto/rand:
// selection must not be predictable by agents.
func shuffle(l []AgentLink) {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	r := mrand.New(mrand.NewChaCha8(seed))
	r.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
}

// selectCount is how many agents a round invites out of the eligible.
func selectCount(spec *JobSpec, eligible int) int {
	n := int(math.Ceil(spec.Fraction * float64(eligible)))
	n = max(n, spec.MinClients)
	n = int(math.Ceil(float64(n) * (1 + spec.OverSelect)))
	return min(n, eligible)
}

// invite asks each link to join round id and returns those that accepted.
// A decline's reason is recorded for owner (the job, or "rollout/ID").
// Links that other rounds in progress claimed meanwhile, as many as they
// run at once, are not asked; those that do not join are free for other
// rounds again.
func (e *Engine) invite(ctx context.Context, owner string, links []AgentLink, inv *protocol.RoundInvite) []AgentLink {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.InviteTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var joined []AgentLink
	links = e.claim(inv.RoundID, links)
	defer func() { e.unclaim(inv.RoundID, links, joined) }()
	for _, l := range links {
		wg.Add(1)
		go func(l AgentLink) {
			defer wg.Done()
			resp, err := l.Request(ctx, inv)
			if err != nil {
				e.log.Debug("invite failed", "agent", l.AgentID(), "err", err)
				return
			}
			if j, ok := resp.(*protocol.RoundJoin); ok && j.Accept && j.RoundID == inv.RoundID {
				mu.Lock()
				joined = append(joined, l)
				mu.Unlock()
			} else if ok {
				e.log.Debug("agent declined", "agent", l.AgentID(), "reason", j.Reason)
				e.noteIssue(l.AgentID(), owner, inv.RoundID, j.Reason)
			}
		}(l)
	}
	wg.Wait()
	sort.Slice(joined, func(a, b int) bool { return joined[a].AgentID() < joined[b].AgentID() })
	return joined
}

// broadcast sends m to every link, concurrently, ignoring failures (an
// agent that misses a message drops out of the round's next stage).
func (e *Engine) broadcast(ctx context.Context, links []AgentLink, m func(l AgentLink) protocol.Message) int64 {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bytes int64
	for _, l := range links {
		wg.Add(1)
		go func(l AgentLink) {
			defer wg.Done()
			msg := m(l)
			if err := l.Send(ctx, msg); err != nil {
				e.log.Debug("send failed", "agent", l.AgentID(), "type", msg.Type(), "err", err)
				return
			}
			mu.Lock()
			bytes += int64(messageSize(msg))
			mu.Unlock()
		}(l)
	}
	wg.Wait()
	return bytes
}

// messageSize estimates a message's size on the wire, for round records,
// without encoding the large ones again.
func messageSize(m protocol.Message) int {
	const overhead = 16 // frame header and round ID
	switch v := m.(type) {
	case *protocol.MaskedInput:
		return overhead + len(v.Payload)
	case *protocol.AdvertiseKeysRelay:
		return overhead + len(v.Payload)
	case *protocol.ShareKeysRelay:
		return overhead + len(v.Payload)
	case *protocol.ShareKeys:
		return overhead + len(v.Payload)
	case *protocol.RoundPlan:
		return overhead + len(v.SecAgg) + 128
	}
	b, err := protocol.Marshal(nil, m, protocol.Limits{})
	if err != nil {
		return 0
	}
	return len(b)
}

// deliver routes an agent's round message to the stage waiting for it and
// returns the stage's reply for that agent.
func (e *Engine) deliver(ctx context.Context, agentID string, m protocol.Message) (protocol.Message, error) {
	if j, ok := m.(*protocol.RoundJoin); ok && !j.Accept {
		// An agent withdraws mid-round (its training failed): stop waiting
		// for it; SecAgg+ treats it as a dropout.
		if e.groups.withdraw(j.RoundID, agentID) {
			e.log.Info("agent withdrew from its group", "round", j.RoundID, "agent", agentID, "reason", j.Reason)
		}
		if r := e.activeRound(j.RoundID); r != nil {
			r.Withdraw(agentID)
			e.log.Info("agent withdrew from the round", "round", j.RoundID, "agent", agentID, "reason", j.Reason)
			e.noteIssue(agentID, r.owner, r.id, j.Reason)
		}
		return &protocol.Ack{}, nil
	}
	round, ok := roundOf(m)
	if !ok {
		return nil, fmt.Errorf("coordinator.deliver: %s is not a round message", m.Type())
	}
	if g := e.groups.find(round, agentID); g != nil {
		return g.deliver(ctx, agentID, m)
	}
	r := e.activeRound(round)
	if r == nil {
		return nil, fmt.Errorf("%w: round %d", ErrRoundFinished, round)
	}
	return r.deliver(ctx, agentID, m)
}

// countDownload adds n bytes of agentID's download of model version to
// the bytes out of the first round in progress the agent takes part in
// whose agents need that version; a download by an agent in no round
// counts in the first round in progress that needs the version.
func (e *Engine) countDownload(agentID string, version uint64, n int64) {
	e.mu.Lock()
	var r *activeRound
	mine := e.claims[agentID]
	for _, id := range mine {
		if cr := e.rounds[id]; cr != nil && slices.Contains(cr.models, version) {
			r = cr
			break
		}
	}
	if r == nil && len(mine) == 0 {
		for _, id := range slices.Sorted(maps.Keys(e.rounds)) {
			if slices.Contains(e.rounds[id].models, version) {
				r = e.rounds[id]
				break
			}
		}
	}
	e.mu.Unlock()
	if r != nil {
		r.bytesOut.Add(n)
	}
}

// acceptUpload receives an agent's masked input sent as a bulk blob for
// the active round.
func (e *Engine) acceptUpload(ctx context.Context, agentID string, m *protocol.MaskedUpdate, b *protocol.BulkStream) error {
	if g := e.groups.find(m.RoundID, agentID); g != nil {
		return g.uploads.accept(ctx, agentID, m, b, func() bool { _, ok := g.ids[agentID]; return ok })
	}
	r := e.activeRound(m.RoundID)
	if r == nil {
		return &protocol.Error{Code: protocol.CodeRoundClosed, Message: fmt.Sprintf("round %d is not running", m.RoundID)}
	}
	return r.uploads.accept(ctx, agentID, m, b, func() bool { _, ok := r.ids[agentID]; return ok })
}

// roundOf extracts the round ID of a round message.
func roundOf(m protocol.Message) (uint64, bool) {
	switch v := m.(type) {
	case *protocol.AdvertiseKeys:
		return v.RoundID, true
	case *protocol.ShareKeys:
		return v.RoundID, true
	case *protocol.MaskedInput:
		return v.RoundID, true
	case *protocol.ConsistencyCheck:
		return v.RoundID, true
	case *protocol.Unmask:
		return v.RoundID, true
	case *protocol.EvalResult:
		return v.RoundID, true
	}
	return 0, false
}

// loadModel decodes a committed model version, streaming it from the
// node's blob store (one model in memory, not two).
func (e *Engine) loadModel(version uint64) (*tensor.Model, *ModelRecord, error) {
	b, err := e.fsm.openModel(version)
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator.loadModel: %d: %w", version, err)
	}
	defer b.Close()
	m, err := tensor.ReadModel(bufio.NewReaderSize(b.file(), 1<<20), int64(b.rec.Size))
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator.loadModel: %d: %w", version, err)
	}
	rec := b.rec
	return m, &rec, nil
}

// strategyState reads the strategy memory committed with rec.
func (e *Engine) strategyState(rec *ModelRecord) ([]byte, error) {
	if rec.StateSize == 0 {
		return nil, nil
	}
	b, err := e.fsm.openModel(rec.Version)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.part(rec.statePart())
}

// clusterName is the replicated cluster name, bound into SecAgg+ round IDs
// so a round's messages cannot be replayed into another cluster's round.
func (e *Engine) clusterName() string {
	var n string
	e.fsm.Read(func(s *State) { n = s.ClusterName })
	return n
}
