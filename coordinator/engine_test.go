package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// memRep is an in-memory twin of the Raft replica for engine unit tests:
// entries go straight into the FSM. The real replica is tested in
// raft_test.go and node_test.go.
type memRep struct {
	mu  sync.Mutex
	f   *FSM
	idx uint64
}

func (r *memRep) apply(_ context.Context, t cmdType, hdr any, payload []byte) (any, error) {
	b, err := encodeEntry(t, hdr, payload)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.idx++
	res := r.f.Apply(&raft.Log{Index: r.idx, Type: raft.LogCommand, Data: b})
	r.mu.Unlock()
	if e, ok := res.(error); ok {
		return nil, e
	}
	return res, nil
}
func (r *memRep) term() uint64   { return 1 }
func (r *memRep) nodeID() string { return "n1" }

// simAgent is an in-memory twin of an agent's round logic: real local
// training (tensor) and real SecAgg+ (crypto/secagg), messages handed to
// the engine directly. The real agent runs over QUIC in internal/testcluster.
type simAgent struct {
	id      string
	key     ed25519.PrivateKey
	eng     *Engine
	fsm     *FSM
	train   *tensor.Dataset
	heldout *tensor.Dataset
	// dropAt names a stage message type this agent never sends (it
	// vanishes there), in round dropRound (0 = every round).
	dropAt    protocol.MsgType
	dropRound uint64
	// poison makes the agent send a huge update (robust strategies test).
	poison bool
	// synthetic agents skip training and send a random small update for
	// 600 examples (benchmarks of the coordinator's own cost).
	synthetic bool
	// withdraw makes the agent's training "fail": it tells the engine it
	// leaves the round instead of advertising keys.
	withdraw bool

	mu        sync.Mutex
	sent      map[uint64]sentUpdate // round → what it contributed
	evaluated []tensor.Metrics      // each evaluation it ran, in order

	// decline makes the agent decline invites; aborted records the
	// rounds the engine told it had ended (RoundAbort).
	decline bool
	aborted []uint64
	// dp records the DP parameters of each training plan it received.
	dp []protocol.DPParams

	// cpu, if set, is a semaphore every simulated agent holds while it
	// computes (benchmarks: the fleet gets one core, the coordinator the
	// other, as if the agents ran on their own hosts).
	cpu chan struct{}

	// groupEngines, if set, are other coordinators' engines by node ID: a
	// sharded round's plan naming one sends the agent's stages there.
	groupEngines map[string]*Engine
	via          map[uint64]*Engine // round → engine of the agent's group
	// hostTime, if set, is how long local training takes on the agent's
	// own host, spent without this machine's CPU (benchmarks).
	hostTime time.Duration
	// hold, if set, runs after training and before the update is sent:
	// a test that needs rounds to be in progress together waits there.
	hold func(roundID uint64)
}

// compute runs f holding the agents' CPU semaphore, if any.
func (a *simAgent) compute(f func()) {
	if a.cpu != nil {
		a.cpu <- struct{}{}
		defer func() { <-a.cpu }()
	}
	f()
}

type sentUpdate struct {
	vec    []float32
	weight uint32
}

func (a *simAgent) AgentID() string               { return a.id }
func (a *simAgent) SigningKey() ed25519.PublicKey { return a.key.Public().(ed25519.PublicKey) }

func (a *simAgent) Request(ctx context.Context, m protocol.Message) (protocol.Message, error) {
	if inv, ok := m.(*protocol.RoundInvite); ok {
		return &protocol.RoundJoin{RoundID: inv.RoundID, Accept: !a.decline}, nil
	}
	return nil, fmt.Errorf("sim: unexpected %s", m.Type())
}

func (a *simAgent) Send(ctx context.Context, m protocol.Message) error {
	switch v := m.(type) {
	case *protocol.RoundPlan:
		a.mu.Lock()
		a.dp = append(a.dp, v.DP)
		a.mu.Unlock()
		go a.trainRound(v)
	case *protocol.EvalRequest:
		go a.evalRound(v)
	case *protocol.StatsRequest:
		go a.statsRound(v)
	case *protocol.ExplainRequest:
		go a.explainRound(v)
	case *protocol.RoundAbort:
		a.mu.Lock()
		a.aborted = append(a.aborted, v.RoundID)
		a.mu.Unlock()
	}
	return nil
}

func (a *simAgent) statsRound(r *protocol.StatsRequest) {
	x, err := protocol.EncodeFixed(data.ComputeStats(a.train).Vector())
	if err != nil {
		return
	}
	var cfg secagg.Config
	if err := cfg.UnmarshalBinary(r.SecAgg); err != nil {
		return
	}
	a.runSecAgg(r.RoundID, &cfg, x)
}

func (a *simAgent) model(version uint64) (*tensor.Model, error) {
	blob, err := a.fsm.ModelFile(version)
	if err != nil {
		return nil, fmt.Errorf("sim: no model %d", version)
	}
	return tensor.UnmarshalModel(blob)
}

func (a *simAgent) trainRound(p *protocol.RoundPlan) {
	if a.withdraw {
		_, _ = a.eng.deliver(context.Background(), a.id, &protocol.RoundJoin{RoundID: p.RoundID, Reason: "training diverged"})
		return
	}
	start, err := a.model(p.ModelVersion)
	if err != nil {
		return
	}
	var st tensor.TrainStats
	delta := make([]float32, len(start.Params))
	if a.synthetic {
		a.compute(func() {
			r := mrand.New(mrand.NewPCG(p.RoundID, uint64(len(a.id))))
			for i := range delta {
				delta[i] = float32(r.NormFloat64() * 0.01)
			}
		})
		st = tensor.TrainStats{Loss: 1, Accuracy: 0.5}
		time.Sleep(a.hostTime) // the host's training: not synchronisation
	} else {
		m := start.Clone()
		st, err = tensor.Train(context.Background(), m, a.train, tensor.TrainConfig{Epochs: int(p.Epochs), BatchSize: int(p.BatchSize), LR: float32(p.LR), Seed: 1})
		if err != nil {
			return
		}
		for i := range delta {
			delta[i] = m.Params[i] - start.Params[i]
		}
	}
	if a.hold != nil {
		a.hold(p.RoundID)
	}
	if a.poison {
		for i := range delta {
			delta[i] = 1000
		}
	}
	if len(p.SecAgg) == 0 {
		vec := protocol.AppendUpdateMetrics(delta, 1, st.Loss, st.Accuracy)
		a.record(p.RoundID, vec, uint32(a.train.Len()))
		_, _ = a.eng.deliver(context.Background(), a.id, &protocol.MaskedInput{RoundID: p.RoundID, Payload: protocol.EncodePlainUpdate(vec, uint32(a.train.Len()))})
		return
	}
	var cfg secagg.Config
	if err := cfg.UnmarshalBinary(p.SecAgg); err != nil {
		return
	}
	if g, ok := a.groupEngines[p.GroupNode]; ok {
		a.mu.Lock()
		if a.via == nil {
			a.via = map[uint64]*Engine{}
		}
		a.via[p.RoundID] = g
		a.mu.Unlock()
	}
	q := cfg.Quantizer
	body := delta
	if c := p.DP.ClipNorm; c > 0 {
		bit := dp.ClipBit(dp.L2Norm(delta), c)
		dp.ClipL2(delta, c)
		if p.DP.Adaptive {
			body = append(delta, float32(p.DP.BitScale*bit))
		}
	}
	vec := protocol.AppendUpdateMetrics(body, float64(q.Clip), st.Loss, st.Accuracy)
	examples := 600
	if a.train != nil {
		examples = a.train.Len()
	}
	w := uint32(min(examples, int(max(q.MaxWeight, 1))))
	if q.MaxWeight == 0 {
		w = 1
	}
	a.record(p.RoundID, vec, w)
	x := make([]uint32, q.EncodedLen(len(vec)))
	var err2 error
	a.compute(func() { err2 = q.Encode(x, vec, w, mrand.New(mrand.NewPCG(1, 2))) })
	if err2 != nil {
		return
	}
	if sd := p.DP.NoiseStdDev; sd > 0 {
		levels := float64(uint32(1)<<(q.Bits-1) - 1)
		src, err := dp.NewCryptoSource()
		if err != nil || dp.AddNoiseFixedPoint(x[:len(body)], sd*levels/float64(q.Clip), src) != nil {
			return
		}
	}
	a.runSecAgg(p.RoundID, &cfg, x)
}

func (a *simAgent) evalRound(r *protocol.EvalRequest) {
	// Like the agent, a version 0 (a job's evaluation has no baseline)
	// sums to zeros.
	sums := func(version uint64) (protocol.EvalSums, error) {
		if version == 0 {
			return protocol.EvalSums{}, nil
		}
		m, err := a.model(version)
		if err != nil {
			return protocol.EvalSums{}, err
		}
		met, err := tensor.Evaluate(m, a.heldout)
		if err != nil {
			return protocol.EvalSums{}, err
		}
		a.mu.Lock()
		a.evaluated = append(a.evaluated, met)
		a.mu.Unlock()
		return protocol.EvalSums{Correct: uint32(met.Correct), Total: uint32(met.Total), LossSum: met.LossSum}, nil
	}
	cand, err1 := sums(r.ModelVersion)
	base, err2 := sums(r.BaselineVersion)
	if err1 != nil || err2 != nil {
		return
	}
	x := protocol.EncodeEval(cand, base)
	var cfg secagg.Config
	if err := cfg.UnmarshalBinary(r.SecAgg); err != nil {
		return
	}
	a.runSecAgg(r.RoundID, &cfg, x)
}

func (a *simAgent) record(round uint64, vec []float32, w uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sent == nil {
		a.sent = map[uint64]sentUpdate{}
	}
	a.sent[round] = sentUpdate{append([]float32(nil), vec...), w}
}

func (a *simAgent) drops(round uint64, t protocol.MsgType) bool {
	return a.dropAt == t && (a.dropRound == 0 || a.dropRound == round)
}

// runSecAgg plays the client's five stages against the engine.
func (a *simAgent) runSecAgg(round uint64, cfg *secagg.Config, x []uint32) {
	var me uint32
	for _, p := range cfg.Participants {
		if p.SigningKey.Equal(a.SigningKey()) {
			me = p.ID
		}
	}
	var c *secagg.Client
	var err error
	a.compute(func() { c, err = secagg.NewClient(cfg, me, a.key, rand.Reader) })
	if err != nil {
		return
	}
	ctx := context.Background()
	call := func(m protocol.Message) protocol.Message {
		if a.drops(round, m.Type()) {
			return nil
		}
		a.mu.Lock()
		eng := a.via[round]
		a.mu.Unlock()
		if eng == nil {
			eng = a.eng
		}
		r, err := eng.deliver(ctx, a.id, m)
		if err != nil {
			return nil
		}
		return r
	}
	var b []byte
	a.compute(func() { adv, _ := c.AdvertiseKeys(); b, _ = adv.MarshalBinary() })
	r1, ok := call(&protocol.AdvertiseKeys{RoundID: round, Payload: b}).(*protocol.AdvertiseKeysRelay)
	if !ok {
		return
	}
	var kl secagg.KeyList
	if kl.UnmarshalBinary(r1.Payload) != nil {
		return
	}
	a.compute(func() {
		var sk *secagg.ShareKeys
		if sk, err = c.ShareKeys(&kl); err == nil {
			b, _ = sk.MarshalBinary()
		}
	})
	if err != nil {
		return
	}
	r2, ok := call(&protocol.ShareKeys{RoundID: round, Payload: b}).(*protocol.ShareKeysRelay)
	if !ok {
		return
	}
	var sl secagg.ShareList
	if sl.UnmarshalBinary(r2.Payload) != nil {
		return
	}
	a.compute(func() {
		var mi *secagg.MaskedInput
		if mi, err = c.MaskedInput(&sl, x); err == nil {
			b, _ = mi.MarshalBinary()
		}
	})
	if err != nil {
		return
	}
	r3, ok := call(&protocol.MaskedInput{RoundID: round, Payload: b}).(*protocol.MaskedInputRelay)
	if !ok {
		return
	}
	var sv secagg.SurvivorList
	if sv.UnmarshalBinary(r3.Payload) != nil {
		return
	}
	a.compute(func() {
		var cc *secagg.ConsistencyCheck
		if cc, err = c.ConsistencyCheck(&sv); err == nil {
			b, _ = cc.MarshalBinary()
		}
	})
	if err != nil {
		return
	}
	r4, ok := call(&protocol.ConsistencyCheck{RoundID: round, Payload: b}).(*protocol.ConsistencyCheckRelay)
	if !ok {
		return
	}
	var sigs secagg.SignatureList
	if sigs.UnmarshalBinary(r4.Payload) != nil {
		return
	}
	a.compute(func() {
		var um *secagg.Unmask
		if um, err = c.Unmask(&sigs); err == nil {
			b, _ = um.MarshalBinary()
		}
	})
	if err != nil {
		return
	}
	call(&protocol.Unmask{RoundID: round, Payload: b})
}

type engineHarness struct {
	t      *testing.T
	fsm    *FSM
	rep    *memRep
	eng    *Engine
	agents []*simAgent
	test   *tensor.Dataset
}

func newEngineHarness(t *testing.T, n, perAgent int) *engineHarness {
	t.Helper()
	dir := testutil.MNISTDir(t)
	train, test, err := data.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &engineHarness{t: t, fsm: NewFSM(nil), test: test.Subset(seq(2000))}
	h.rep = &memRep{f: h.fsm}
	if _, err := h.rep.apply(context.Background(), cmdBootstrap, bootstrapCmd{ClusterName: "sim", CA: []byte("ca")}, nil); err != nil {
		t.Fatal(err)
	}
	var links []AgentLink
	for i := 0; i < n; i++ {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		idx := make([]int, perAgent)
		for j := range idx {
			idx[j] = i*perAgent + j
		}
		tr, ho := data.HoldOut(train.Subset(idx), 0.2, uint64(i))
		a := &simAgent{id: fmt.Sprintf("ag-%02d", i), key: key, fsm: h.fsm, train: tr, heldout: ho}
		h.agents = append(h.agents, a)
		links = append(links, a)
		h.fsm.state.Agents[a.id] = &AgentRecord{ID: a.id, Labels: map[string]string{"tier": "canary"}}
	}
	h.eng = newEngine(discardLogger(), EngineConfig{Idle: 20 * time.Millisecond}, h.fsm, h.rep, func() []AgentLink { return links }, newEngineMetrics())
	for _, a := range h.agents {
		a.eng = h.eng
	}
	return h
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// runUntil runs the engine until cond holds.
func (h *engineHarness) runUntil(what string, timeout time.Duration, cond func(s *State) bool) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.eng.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(h.t, timeout, what, func() bool {
		ok := false
		h.fsm.Read(func(s *State) { ok = cond(s) })
		return ok
	})
}

func (h *engineHarness) accuracy(version uint64) float64 {
	m, _, err := h.eng.loadModel(version)
	if err != nil {
		h.t.Fatal(err)
	}
	met, err := tensor.Evaluate(m, h.test)
	if err != nil {
		h.t.Fatal(err)
	}
	return met.Accuracy()
}

func startJob(t *testing.T, h *engineHarness, spec JobSpec) string {
	t.Helper()
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rep.apply(context.Background(), cmdJobCreate, JobRecord{ID: "job", Spec: spec, CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	return "job"
}

func TestEngineSecAggRoundsExactAndDropout(t *testing.T) {
	h := newEngineHarness(t, 6, 300)
	// One agent vanishes during the masked-input stage of round 2.
	h.agents[5].dropAt, h.agents[5].dropRound = protocol.TypeMaskedInput, 3
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 3, Fraction: 1, MinClients: 4, Seed: 7,
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 16},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	})
	h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })

	var rounds []*RoundRecord
	h.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rounds) {
			r := *s.Rounds[id]
			rounds = append(rounds, &r)
		}
	})
	if len(rounds) != 3 {
		t.Fatalf("%d rounds", len(rounds))
	}
	for _, r := range rounds {
		if r.State != RoundCommitted {
			t.Fatalf("round %d: %s %s", r.ID, r.State, r.Error)
		}
	}
	// Round 3 lost one agent at masked input and still committed the sum of
	// the other five.
	mi := rounds[2].Stages[3]
	if mi.Name != "masked_input" || mi.Dropped != 1 || rounds[2].Metrics["survivors"] != 5 {
		t.Fatalf("round 3 stages %+v metrics %v", rounds[2].Stages, rounds[2].Metrics)
	}
	// The committed model is exactly start + weighted mean of the survivors'
	// updates, up to the quantization step.
	for _, r := range rounds {
		m0, _, _ := h.eng.loadModel(r.ModelIn)
		m1, _, _ := h.eng.loadModel(r.ModelOut)
		var sumW float64
		mean := make([]float64, len(m0.Params))
		for _, a := range h.agents {
			u, ok := a.sent[r.ID]
			if !ok || a.drops(r.ID, protocol.TypeMaskedInput) {
				continue
			}
			sumW += float64(u.weight)
			for i := range mean {
				mean[i] += float64(u.weight) * float64(u.vec[i])
			}
		}
		worst := 0.0
		for i := range mean {
			got := float64(m1.Params[i] - m0.Params[i])
			worst = math.Max(worst, math.Abs(got-mean[i]/sumW))
		}
		// Per coordinate the stochastic rounding error is below
		// clip·MaxWeight/(weight·L) ≈ 1e-4 per agent.
		if worst > 5e-4 {
			t.Fatalf("round %d: aggregate differs from the survivors' mean by %g", r.ID, worst)
		}
	}
	first, last := h.accuracy(1), h.accuracy(rounds[2].ModelOut)
	if last < 0.75 || last < first+0.3 {
		t.Fatalf("accuracy %.3f -> %.3f: federated training did not learn", first, last)
	}
	// The engine's series saw the same rounds.
	m := h.eng.met
	var in, out int64
	for _, r := range rounds {
		in, out = in+r.BytesIn, out+r.BytesOut
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"rounds committed", promtest.ToFloat64(m.rounds.WithLabelValues(RoundTrain, RoundCommitted)), 3},
		{"masked_input dropouts", promtest.ToFloat64(m.dropouts.WithLabelValues(RoundTrain, "masked_input")), 1},
		{"participants", promtest.ToFloat64(m.participants.WithLabelValues(RoundTrain)), 6},
		{"bytes in", promtest.ToFloat64(m.bytesIn.WithLabelValues(RoundTrain)), float64(in)},
		{"bytes out", promtest.ToFloat64(m.bytesOut.WithLabelValues(RoundTrain)), float64(out)},
		{"stage histograms", float64(promtest.CollectAndCount(m.stageDuration)), 6},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if in == 0 || out == 0 {
		t.Errorf("rounds recorded %d bytes in, %d out", in, out)
	}
}

func TestEngineTooFewSurvivorsFailsRound(t *testing.T) {
	h := newEngineHarness(t, 4, 100)
	for _, a := range h.agents[:2] {
		a.dropAt = protocol.TypeMaskedInput
	}
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 1, Fraction: 1, MinClients: 4,
		SecAgg:   SecAggSpec{Enabled: true},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(time.Second)},
	})
	h.runUntil("a failed round", 60*time.Second, func(s *State) bool {
		r, ok := s.Rounds[1]
		return ok && r.State == RoundFailed
	})
	h.fsm.Read(func(s *State) {
		if s.Jobs["job"].RoundsDone != 0 || len(s.Models) != 1 {
			t.Fatalf("a failed round changed the job: %+v models %d", s.Jobs["job"], len(s.Models))
		}
		if !errors.Is(fmt.Errorf("%s", s.Rounds[1].Error), ErrRoundFailed) && s.Rounds[1].Error == "" {
			t.Fatal("failed round has no error")
		}
	})
	if got := promtest.ToFloat64(h.eng.met.rounds.WithLabelValues(RoundTrain, RoundFailed)); got < 1 {
		t.Fatalf("fedge_coordinator_rounds_total{kind=train,state=failed} = %v after a failed round", got)
	}
	if got := promtest.ToFloat64(h.eng.met.dropouts.WithLabelValues(RoundTrain, "masked_input")); got < 2 {
		t.Fatalf("masked_input dropouts %v, want >= 2", got)
	}
}

func TestEngineRobustMedianResistsPoison(t *testing.T) {
	h := newEngineHarness(t, 5, 200)
	h.agents[0].poison = true
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 2, Fraction: 1, MinClients: 5,
		Strategy: StrategySpec{Name: "median"},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	})
	h.runUntil("job done", 60*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
	if acc := h.accuracy(3); acc < 0.6 {
		t.Fatalf("median let the poisoned update through: accuracy %.3f", acc)
	}
}

func TestEngineRolloutGate(t *testing.T) {
	h := newEngineHarness(t, 5, 300)
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 2, Fraction: 1, MinClients: 5,
		SecAgg:   SecAggSpec{Enabled: true},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	})
	h.runUntil("job done", 60*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
	// Stable is version 1 (the random init). A candidate with shuffled
	// weights must be rolled back by the gate; the trained model promoted.
	good, _, _ := h.eng.loadModel(3)
	bad := good.Clone()
	r := mrand.New(mrand.NewPCG(3, 4))
	r.Shuffle(len(bad.Params), func(i, j int) { bad.Params[i], bad.Params[j] = bad.Params[j], bad.Params[i] })
	blob, _ := bad.MarshalBinary()
	hh := bad.Hash()
	vAny, err := h.rep.apply(context.Background(), cmdModelCommit, modelCommitCmd{Model: ModelRecord{Hash: fmt.Sprintf("%x", hh[:])}}, blob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rep.apply(context.Background(), cmdSetStable, stableCmd{Version: 3}, nil); err != nil {
		t.Fatal(err)
	}
	badV := vAny.(uint64)
	cohorts := []Cohort{{Name: "canary", Percent: 100, Selector: map[string]string{"tier": "canary"}}, {Name: "all", Percent: 100}}
	if _, err := h.rep.apply(context.Background(), cmdRolloutCreate, RolloutRecord{ID: "bad", Model: badV, Cohorts: cohorts, Gate: "accuracy>=baseline-0.5", CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	h.runUntil("bad rollout decided", 60*time.Second, func(s *State) bool { return s.Rollouts["bad"].State != RolloutRunning })
	h.fsm.Read(func(s *State) {
		ro := s.Rollouts["bad"]
		if ro.State != RolloutRolledBack || s.Stable != 3 {
			t.Fatalf("bad candidate: %s, stable %d, decisions %+v", ro.State, s.Stable, ro.Decisions)
		}
		ev := ro.Decisions[0].Evidence
		if ev == nil || ev.CandidateTotal == 0 || ev.CandidateAccuracy >= ev.BaselineAccuracy {
			t.Fatalf("evidence %+v", ev)
		}
	})
}

// TestEngineWithdrawnAgentDoesNotStallRound: an agent whose training fails
// withdraws; the round goes on with the others at once instead of waiting
// out the training deadline.
func TestEngineWithdrawnAgentDoesNotStallRound(t *testing.T) {
	h := newEngineHarness(t, 5, 100)
	h.agents[2].withdraw = true
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 1, Fraction: 1, MinClients: 4,
		SecAgg:   SecAggSpec{Enabled: true},
		Deadline: Deadlines{Train: Duration(60 * time.Second), Stage: Duration(30 * time.Second)},
	})
	start := time.Now()
	h.runUntil("job done", 50*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("round took %v: it waited for the withdrawn agent", took)
	}
	h.fsm.Read(func(s *State) {
		r := s.Rounds[1]
		if r.State != RoundCommitted || r.Metrics["survivors"] != 4 {
			t.Fatalf("round %s with %v survivors", r.State, r.Metrics["survivors"])
		}
	})
}

// TestEngineSaysWhyAJobWaits: with too few eligible agents the engine
// runs no round and can say why; once the job is gone the note goes too.
func TestEngineSaysWhyAJobWaits(t *testing.T) {
	h := newEngineHarness(t, 3, 50)
	startJob(t, h, JobSpec{Model: "logreg", Rounds: 1, MinClients: 5})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.eng.run(ctx); close(done) }()
	testutil.WaitFor(t, 10*time.Second, "a waiting note", func() bool { return h.eng.waiting("job/job") != "" })
	if w := h.eng.waiting("job/job"); !strings.Contains(w, "3 of 5") {
		t.Fatalf("waiting note %q", w)
	}
	cancel()
	<-done
	if w := h.eng.waiting("job/job"); w != "" {
		t.Fatalf("a stopped engine (no longer leading) still says %q", w)
	}
}

// TestEngineFailedRoundFreesAgents: when too few agents join, the round
// fails and the engine tells those that joined, so they take the next
// invite instead of waiting out the round's deadlines.
func TestEngineFailedRoundFreesAgents(t *testing.T) {
	h := newEngineHarness(t, 3, 50)
	h.agents[2].decline = true
	startJob(t, h, JobSpec{Model: "logreg", Rounds: 1, Fraction: 1, MinClients: 3,
		Deadline: Deadlines{Train: Duration(time.Minute), Stage: Duration(time.Minute)}})
	h.runUntil("a failed round", 20*time.Second, func(s *State) bool {
		for _, r := range s.Rounds {
			if r.State == RoundFailed {
				return true
			}
		}
		return false
	})
	var failed uint64
	h.fsm.Read(func(s *State) {
		for id, r := range s.Rounds {
			if r.State == RoundFailed {
				failed = id
			}
		}
	})
	for i, a := range h.agents {
		a.mu.Lock()
		got := slices.Contains(a.aborted, failed)
		a.mu.Unlock()
		if want := i < 2; got != want {
			t.Fatalf("agent %d: told of the end of round %d: %v, want %v", i, failed, got, want)
		}
	}
}

// TestEngineJobEvalEvery: a job with eval_every 2 runs a federated
// evaluation of its newest model after training rounds 2 and 4 (the last:
// the job is done only after it), and each records the exact sums of the
// agents' held-out results under SecAgg+ and the job's latest evaluation.
func TestEngineJobEvalEvery(t *testing.T) {
	h := newEngineHarness(t, 4, 300)
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 4, Fraction: 1, EvalEvery: 2, Seed: 3,
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	})
	h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })

	var rounds []RoundRecord
	var job JobRecord
	h.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rounds) {
			if r := s.Rounds[id]; r.State == RoundCommitted {
				rounds = append(rounds, *r)
			}
		}
		job = *s.Jobs["job"]
	})
	var kinds []string
	for _, r := range rounds {
		kinds = append(kinds, fmt.Sprintf("%s%d", r.Kind, r.Number))
	}
	if got, want := strings.Join(kinds, " "), "train1 train2 eval2 train3 train4 eval4"; got != want {
		t.Fatalf("committed rounds %q, want %q", got, want)
	}
	heldOut := 0
	for _, a := range h.agents {
		heldOut += a.heldout.Len()
	}
	for i, r := range []RoundRecord{rounds[2], rounds[5]} {
		train := rounds[3*i+1]
		if r.Job != "job" || r.ModelIn != train.ModelOut || r.ModelIn == 0 {
			t.Errorf("eval round %d: job %q, model %d; want job's model %d of round %d", r.ID, r.Job, r.ModelIn, train.ModelOut, train.ID)
		}
		// The secure sum is exact: what the agents' held-out splits give.
		m, _, err := h.eng.loadModel(r.ModelIn)
		if err != nil {
			t.Fatal(err)
		}
		correct, loss := 0, 0.0
		for _, a := range h.agents {
			met, err := tensor.Evaluate(m, a.heldout)
			if err != nil {
				t.Fatal(err)
			}
			correct += met.Correct
			loss += met.LossSum
		}
		mt := r.Metrics
		if mt["eval_examples"] != float64(heldOut) || mt["eval_correct"] != float64(correct) || mt["survivors"] != 4 {
			t.Errorf("eval round %d metrics %v: want %d examples, %d correct, 4 agents", r.ID, mt, heldOut, correct)
		}
		if acc := mt["eval_accuracy"]; acc != float64(correct)/float64(heldOut) || acc < 0.5 {
			t.Errorf("eval round %d: held-out accuracy %v (%d/%d correct); a trained logreg gets above 0.5", r.ID, acc, correct, heldOut)
		}
		if got, want := mt["eval_loss"], loss/float64(heldOut); math.Abs(got-want) > 1e-3 {
			t.Errorf("eval round %d: held-out loss %v, want %v", r.ID, got, want)
		}
	}
	if ev := job.Eval; ev == nil || ev.AfterRound != 4 || ev.Round != rounds[5].ID || ev.Accuracy != rounds[5].Metrics["eval_accuracy"] || ev.Examples != heldOut || ev.Agents != 4 {
		t.Errorf("job's latest evaluation %+v, want round %d's", ev, rounds[5].ID)
	}
	for _, a := range h.agents {
		if n := len(a.evaluated); n != 2 {
			t.Errorf("agent %s evaluated %d times, want 2", a.id, n)
		}
	}
}
