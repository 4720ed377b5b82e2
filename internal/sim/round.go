package sim

import (
	"context"
	"crypto/rand"
	"encoding"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// deadlineGrace is added to every stage deadline, as the agent does.
const deadlineGrace = 5 * time.Second

// vround is the round a virtual agent joined.
type vround struct {
	invite *protocol.RoundInvite
	sess   *protocol.Session
	ctx    context.Context
	cancel context.CancelFunc
	plan   chan *protocol.RoundPlan
}

func (r *vround) deadline(s protocol.Stage) time.Time {
	if t, ok := r.invite.Deadline(s); ok {
		return t.Add(deadlineGrace)
	}
	d, _ := r.ctx.Deadline()
	return d
}

// onInvite joins a training round when free; virtual agents take part in
// training rounds only (they decline evaluation, statistics and
// preparation rounds).
func (a *vagent) onInvite(s *protocol.Session, inv *protocol.RoundInvite) *protocol.RoundJoin {
	decline := func(reason string) *protocol.RoundJoin {
		return &protocol.RoundJoin{RoundID: inv.RoundID, Reason: reason}
	}
	if inv.Kind != protocol.RoundTrain {
		return decline("virtual agents of fedge simulate take part in training rounds only")
	}
	end := time.Now().Add(10 * time.Minute)
	for _, d := range inv.Deadlines {
		end = d.At
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.round != nil {
		return decline(fmt.Sprintf("busy with round %d", a.round.invite.RoundID))
	}
	ctx, cancel := context.WithDeadline(a.f.ctx, end.Add(deadlineGrace))
	r := &vround{invite: inv, sess: s, ctx: ctx, cancel: cancel, plan: make(chan *protocol.RoundPlan, 1)}
	a.round = r
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	go a.runRound(r)
	return &protocol.RoundJoin{RoundID: inv.RoundID, Accept: true}
}

func (a *vagent) onPlan(p *protocol.RoundPlan) {
	a.mu.Lock()
	r := a.round
	a.mu.Unlock()
	if r == nil || r.invite.RoundID != p.RoundID {
		return
	}
	select {
	case r.plan <- p:
	default:
	}
}

func (a *vagent) onAbort(m *protocol.RoundAbort) {
	a.mu.Lock()
	r := a.round
	a.mu.Unlock()
	if r != nil && r.invite.RoundID == m.RoundID {
		r.cancel()
	}
}

// runRound waits for the plan, trains and sends the update.
func (a *vagent) runRound(r *vround) {
	defer func() {
		r.cancel()
		a.mu.Lock()
		if a.round == r {
			a.round = nil
		}
		a.mu.Unlock()
	}()
	var plan *protocol.RoundPlan
	select {
	case plan = <-r.plan:
	case <-r.ctx.Done():
		return
	}
	err := a.train(r, plan)
	if err == nil {
		a.f.stats.completed.Add(1)
		return
	}
	a.f.stats.failed.Add(1)
	if r.ctx.Err() != nil {
		return
	}
	a.f.log.Warn("virtual agent left the round", "agent", a.index, "round", plan.RoundID, "err", err)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 5*time.Second)
	_, _ = r.sess.Request(wctx, &protocol.RoundJoin{RoundID: plan.RoundID, Reason: truncate(err.Error(), 200)})
	cancel()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// seeded returns the generator of one purpose of agent a in a round:
// the same seed, agent and round give the same draws.
func (a *vagent) seeded(round uint64, purpose uint64) *mrand.Rand {
	return mrand.New(mrand.NewPCG(a.f.opts.Seed^purpose*0x9e3779b97f4a7c15, uint64(a.index)<<32^round))
}

// Purposes of the seeded generators.
const (
	seedTrain = 1 + iota
	seedRound
	seedNoise
)

// train runs a training round: the agent's side of trainRound and
// submitUpdate in the agent package, on its shard of the shared dataset.
func (a *vagent) train(r *vround, plan *protocol.RoundPlan) error {
	ctx := r.ctx
	var cfg *secagg.Config
	var compiled *secagg.Round
	var pid uint32
	if len(plan.SecAgg) > 0 {
		var err error
		if cfg, compiled, err = a.f.secaggs.get(plan.RoundID, plan.SecAgg); err != nil {
			return fmt.Errorf("secagg config: %w", err)
		}
		// The encoded config lists every participant: the fleet keeps
		// one decoded copy per round, and no agent keeps the bytes.
		plan.SecAgg = nil
		pub := a.key.Public()
		for _, p := range cfg.Participants {
			if p.SigningKey.Equal(pub) {
				pid = p.ID
			}
		}
		if pid == 0 || cfg.Quantizer == nil {
			return errors.New("secagg config without this agent's key or a quantizer")
		}
	}
	start, err := a.f.models.get(ctx, r.sess, plan.ModelVersion, plan.ModelHash)
	if err != nil {
		return err
	}
	if start.Features() != a.f.data.Features() {
		return fmt.Errorf("model %d takes %d features, the dataset has %d", plan.ModelVersion, start.Features(), a.f.data.Features())
	}
	if plan.DP.Adaptive && !(plan.DP.BitScale > 0 && plan.DP.ClipNorm > 0 && cfg != nil) {
		return errors.New("adaptive clipping needs secure aggregation, a clip norm and a positive bit scale")
	}
	// update trains on the agent's shard and encodes the update (the
	// plain payload or, under SecAgg+, the ring vector). It runs holding a
	// worker of the pool, so the fleet's CPU and memory are bounded
	// however many agents are in the round: a trained model and its
	// update exist only while a worker holds them.
	update := func() (payload []byte, x []uint32, err error) {
		trained := start.Clone()
		opt, err := agent.PlanOptimizer(plan, start.Params)
		if err != nil {
			return nil, nil, err
		}
		local := a.f.data.Subset(a.shard)
		stats, err := tensor.Train(ctx, trained, local, tensor.TrainConfig{
			Epochs: int(plan.Epochs), BatchSize: int(plan.BatchSize), Seed: a.seeded(plan.RoundID, seedTrain).Uint64(), Optimizer: opt,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("training: %w", err)
		}
		n := local.Len()
		vec, x, err := agent.EncodeUpdate(plan, cfg, start, trained, n, stats,
			a.seeded(plan.RoundID, seedRound), dp.NewSeededSource(a.seeded(plan.RoundID, seedNoise).Uint64()))
		if err != nil {
			return nil, nil, err
		}
		if cfg == nil {
			return protocol.EncodePlainUpdate(vec, uint32(n)), nil, nil
		}
		if len(x) != cfg.Dim {
			return nil, nil, fmt.Errorf("secagg dimension %d does not fit model %d", cfg.Dim, plan.ModelVersion)
		}
		return nil, x, nil
	}
	if cfg != nil {
		// Under SecAgg+ the agent trains when it masks, after the key
		// stages: were it to train first (as the agent daemon does), every
		// agent of the round would hold its update (4 bytes a parameter)
		// through the key stages, 0.8 GB per 1,000 agents of the 2nn.
		r, done, err := a.onGroup(r, plan)
		if err != nil {
			return err
		}
		defer done()
		return a.secureSum(r, compiled, pid, update)
	}
	drop, err := a.f.holdUpdate(ctx)
	if err != nil {
		return err
	}
	defer drop()
	var payload []byte
	if err := a.f.work(ctx, func() (err error) {
		payload, _, err = update()
		return err
	}); err != nil {
		return err
	}
	_, err = a.request(r, protocol.StageMaskedInput, &protocol.MaskedInput{RoundID: plan.RoundID, Payload: payload}, len(payload), drop)
	return err
}

// request sends one stage message with the stage's deadline; sent, if
// not nil, is called once m is written.
func (a *vagent) request(r *vround, s protocol.Stage, m protocol.Message, payload int, sent func()) (protocol.Message, error) {
	ctx, cancel := context.WithDeadline(r.ctx, r.deadline(s))
	defer cancel()
	a.f.stats.bytesUp.Add(int64(payload + 16))
	resp, err := r.sess.RequestSent(ctx, m, sent)
	if err != nil {
		return nil, fmt.Errorf("stage %d: %w", s, err)
	}
	if p, ok := protocol.StagePayload(resp); ok {
		a.f.stats.bytesDown.Add(int64(len(p) + 16))
	}
	return resp, nil
}

// stage sends one SecAgg+ message and decodes the relay into out; sent,
// if not nil, is called once the message is written.
func (a *vagent) stage(r *vround, s protocol.Stage, msg encoding.BinaryMarshaler, wrap func([]byte) protocol.Message, out encoding.BinaryUnmarshaler, sent func()) error {
	return protocol.ExchangeStage(s, msg, wrap, out, func(m protocol.Message, size int) (protocol.Message, error) {
		return a.request(r, s, m, size, sent)
	})
}

// secureSum runs the five SecAgg+ stages on the input update returns;
// update and the masking of its input run on the worker pool.
func (a *vagent) secureSum(r *vround, round *secagg.Round, pid uint32, update func() ([]byte, []uint32, error)) error {
	cl, err := secagg.NewRoundClient(round, pid, a.key, rand.Reader)
	if err != nil {
		return err
	}
	id := r.invite.RoundID
	adv, err := cl.AdvertiseKeys()
	if err != nil {
		return err
	}
	var kl secagg.KeyList
	if err := a.stage(r, protocol.StageAdvertiseKeys, adv, func(p []byte) protocol.Message {
		return &protocol.AdvertiseKeys{RoundID: id, Payload: p}
	}, &kl, nil); err != nil {
		return err
	}
	sk, err := cl.ShareKeys(&kl)
	if err != nil {
		return err
	}
	var sl secagg.ShareList
	if err := a.stage(r, protocol.StageShareKeys, sk, func(p []byte) protocol.Message {
		return &protocol.ShareKeys{RoundID: id, Payload: p}
	}, &sl, nil); err != nil {
		return err
	}
	drop, err := a.f.holdUpdate(r.ctx)
	if err != nil {
		return err
	}
	defer drop()
	var masked []byte
	if err := a.f.work(r.ctx, func() error {
		_, x, err := update()
		if err != nil {
			return err
		}
		mi, err := cl.MaskedInput(&sl, x)
		if err != nil {
			return err
		}
		masked, err = mi.MarshalBinary()
		return err
	}); err != nil {
		return err
	}
	if len(masked) > protocol.MaxInlinePayload {
		return fmt.Errorf("masked input of %d bytes: virtual agents send inline inputs only (at most %d)", len(masked), protocol.MaxInlinePayload)
	}
	var sv secagg.SurvivorList
	if err := a.stage(r, protocol.StageMaskedInput, encoded(masked), func(p []byte) protocol.Message {
		return &protocol.MaskedInput{RoundID: id, Payload: p}
	}, &sv, drop); err != nil {
		return err
	}
	cc, err := cl.ConsistencyCheck(&sv)
	if err != nil {
		return err
	}
	var sigs secagg.SignatureList
	if err := a.stage(r, protocol.StageConsistencyCheck, cc, func(p []byte) protocol.Message {
		return &protocol.ConsistencyCheck{RoundID: id, Payload: p}
	}, &sigs, nil); err != nil {
		return err
	}
	um, err := cl.Unmask(&sigs)
	if err != nil {
		return err
	}
	return a.stage(r, protocol.StageUnmask, um, func(p []byte) protocol.Message {
		return &protocol.Unmask{RoundID: id, Payload: p}
	}, nil, nil)
}

// encoded is a stage payload already marshalled.
type encoded []byte

func (e encoded) MarshalBinary() ([]byte, error) { return e, nil }
