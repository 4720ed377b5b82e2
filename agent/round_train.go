package agent

import (
	"context"
	"crypto/rand"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"time"
	"unsafe"

	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/memlimit"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// trainMargin is the share of the time left before the training deadline
// kept for encoding and sending: training stops early past it, and the
// agent submits the partial update.
const trainMargin = 0.1

// roundConfig decodes a round's secure-aggregation configuration and finds
// the agent's participant ID in it (the entry carrying its identity key).
func (a *Agent) roundConfig(b []byte) (*secagg.Config, uint32, error) {
	var cfg secagg.Config
	if err := cfg.UnmarshalBinary(b); err != nil {
		return nil, 0, fmt.Errorf("secagg config: %w", err)
	}
	a.mu.Lock()
	pub := a.ident.key.Public()
	a.mu.Unlock()
	for _, p := range cfg.Participants {
		if p.SigningKey.Equal(pub) {
			return &cfg, p.ID, nil
		}
	}
	return nil, 0, errors.New("secagg config does not list this agent's key")
}

// cryptoRand returns a generator seeded from crypto/rand.
func cryptoRand() (*mrand.Rand, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	return mrand.New(mrand.NewChaCha8(seed)), nil
}

// trainRound runs a training round: train from the plan's model on the
// local training split, and send the update, masked under SecAgg+ unless
// the round runs without it.
func (a *Agent) trainRound(ctx context.Context, c conn, st *roundState, plan *protocol.RoundPlan) error {
	var cfg *secagg.Config
	var pid uint32
	if len(plan.SecAgg) > 0 {
		var err error
		if cfg, pid, err = a.roundConfig(plan.SecAgg); err != nil {
			return err
		}
		if cfg.Quantizer == nil {
			return errors.New("training round's secagg config has no quantizer")
		}
	}
	st.stage.Store(uint32(protocol.StageTrain))
	if cfg != nil {
		// The round's large vector, of about the secure sum's
		// dimension: the start model, then the trained weights, in whose
		// memory the update is encoded and masked (an external round
		// holds one at a time, trainExternalRound): the heap's slack
		// above it stays small, and it returns to the system when the
		// round ends.
		defer memlimit.Reserve(4 * int64(cfg.Dim)).Release()
	}
	data, start, err := a.modelDataFor(ctx, c, plan.ModelVersion, plan.ModelHash)
	if err != nil {
		return err
	}
	if !a.cfg.Jobs.acceptsModel(start.Spec.Name) {
		return fmt.Errorf("model line %q is not accepted by this agent (jobs.models %q)", start.Spec.Name, a.cfg.Jobs.Models)
	}
	if start.Spec.IsExternal() {
		return a.trainExternalRound(ctx, c, st, plan, cfg, pid, data, start)
	}
	if err := a.data.fitsModel(plan.ModelVersion, start.Spec); err != nil {
		return err
	}
	train, _, err := a.data.forModel(start.Spec)
	if err != nil {
		return err
	}
	if start.Features() != train.Features() || start.Classes() < train.Classes {
		return fmt.Errorf("model %d takes %d features and %d classes, local data has %d and %d",
			plan.ModelVersion, start.Features(), start.Classes(), train.Features(), train.Classes)
	}
	if plan.DP.Adaptive && !(plan.DP.BitScale > 0 && plan.DP.ClipNorm > 0 && cfg != nil) {
		return fmt.Errorf("adaptive clipping needs secure aggregation, a clip norm and a positive bit scale (got %v, %v)", plan.DP.ClipNorm, plan.DP.BitScale)
	}
	dim := start.NumParams() + protocol.UpdateMetrics
	if plan.DP.Adaptive {
		dim++ // the clip bit
	}
	if cfg != nil && cfg.Dim != cfg.Quantizer.EncodedLen(dim) {
		return fmt.Errorf("secagg dimension %d does not fit model %d (%d parameters)", cfg.Dim, plan.ModelVersion, start.NumParams())
	}

	// The engine holds the start model, the trained copy and the update.
	defer memlimit.Reserve(8 * int64(start.NumParams())).Release()
	trained := start.Clone()
	opt, err := PlanOptimizer(plan, start.Params)
	if err != nil {
		return err
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return err
	}
	trainBy := st.deadline(protocol.StageTrain).Add(-st.grace)
	trainBy = trainBy.Add(-time.Duration(trainMargin * float64(time.Until(trainBy))))
	tctx, cancel := context.WithDeadline(ctx, trainBy)
	stats, err := tensor.Train(tctx, trained, train, a.trainConfig(plan, opt, binary.LittleEndian.Uint64(seed[:])))
	cancel()
	switch {
	case err == nil:
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && stats.Steps > 0:
		a.log.Info("training deadline reached; sending the partial update", "round", plan.RoundID, "steps", stats.Steps, "epochs", stats.Epochs)
	default:
		return fmt.Errorf("training: %w", err)
	}
	return a.submitUpdate(ctx, c, st, plan, cfg, pid, start, trained, train.Len(), stats)
}

// trainConfig is the engine's configuration for training a round of
// plan: the plan's epochs and batch size, and at most jobs.threads
// goroutines for the job's products (the cap is the call's own, so
// serving keeps the process's threads).
func (a *Agent) trainConfig(plan *protocol.RoundPlan, opt tensor.Optimizer, seed uint64) tensor.TrainConfig {
	return tensor.TrainConfig{
		Epochs: int(plan.Epochs), BatchSize: int(plan.BatchSize), Seed: seed, Optimizer: opt,
		Progress: func(tensor.TrainProgress) { a.m.trainBatches.Add(1) }, ProgressEvery: 1,
		Threads: a.cfg.Jobs.Threads,
	}
}

// submitUpdate sends the update of a training round, whoever trained it
// (the engine or an external trainer): the delta from start to trained,
// clipped and with its clip bit under DP, with the training metrics, then
// encoded, noised and masked, or in the clear without secure aggregation.
// n is the example count the update is weighted by.
func (a *Agent) submitUpdate(ctx context.Context, c conn, st *roundState, plan *protocol.RoundPlan, cfg *secagg.Config, pid uint32,
	start, trained *tensor.Model, n int, stats tensor.TrainStats) error {
	a.log.Debug("trained", "round", plan.RoundID, "examples", n, "loss", stats.Loss, "accuracy", stats.Accuracy, "took", stats.Duration)
	c, done, err := a.groupConn(ctx, c, plan)
	if err != nil {
		return err
	}
	defer done()
	var rounding *mrand.Rand
	var noise mrand.Source
	if cfg != nil {
		var err error
		if rounding, err = cryptoRand(); err != nil {
			return err
		}
		if plan.DP.NoiseStdDev > 0 {
			if noise, err = dp.NewCryptoSource(); err != nil {
				return err
			}
		}
	}
	// The update is computed, encoded and (below) masked in trained's own
	// memory: beside start, one more vector for the whole round.
	var seen []float32
	var observe func([]float32)
	if a.observeUpdate != nil {
		observe = func(v []float32) { seen = slices.Clone(v) }
	}
	vec, x, err := encodeUpdate(plan, cfg, start, trained, n, stats, rounding, noise, true, observe)
	if err != nil {
		return err
	}
	if a.observeUpdate != nil {
		a.observeUpdate(seen, x)
	}
	if cfg == nil {
		payload := protocol.EncodePlainUpdate(vec, uint32(min(n, 1<<31)))
		_, err := a.request(ctx, c, st, protocol.StageMaskedInput, &protocol.MaskedInput{RoundID: plan.RoundID, Payload: payload}, len(payload))
		return err
	}
	return a.secureSum(ctx, c, st, cfg, pid, x)
}

// EncodeUpdate is what an agent sends for a model trained from start: the
// change of its parameters, clipped under the plan's DP settings (with
// the adaptive clip's bit), followed by the update metrics — the clip, and
// the training loss and accuracy unless DP noise is on (they would leave
// the host outside the privacy guarantee). vec is that vector; without
// secure aggregation (cfg nil) it goes as is and x is nil. Otherwise x is
// vec encoded for the secure sum: weighted by the example count n (capped
// at the quantizer's MaxWeight), stochastically rounded with rounding, and
// noised with noise when the plan asks for DP noise (which covers the
// clipped delta and the clip bit only). An agent passes cryptographic
// sources; fedge simulate's virtual agents pass seeded ones so runs repeat.
func EncodeUpdate(plan *protocol.RoundPlan, cfg *secagg.Config, start, trained *tensor.Model, n int, stats tensor.TrainStats,
	rounding *mrand.Rand, noise mrand.Source) (vec []float32, x []uint32, err error) {
	return encodeUpdate(plan, cfg, start, trained, n, stats, rounding, noise, false, nil)
}

// updateSlack is how many words an update vector takes beyond the
// model's parameters: the adaptive clip bit, the update metrics and the
// quantizer's weight word.
const updateSlack = 1 + protocol.UpdateMetrics + 1

// encodeUpdate is EncodeUpdate; a nil start means trained already holds
// the delta (an external round computed it against the stored start
// model). inPlace computes the delta into
// trained.Params's memory (trained is spent) and, under secure
// aggregation, encodes x over vec in that same memory (vec is spent
// too: observe, if not nil, sees it before), so the update costs no
// vector beyond the trained weights when their capacity has
// updateSlack words to spare.
func encodeUpdate(plan *protocol.RoundPlan, cfg *secagg.Config, start, trained *tensor.Model, n int, stats tensor.TrainStats,
	rounding *mrand.Rand, noise mrand.Source, inPlace bool, observe func([]float32)) (vec []float32, x []uint32, err error) {
	p := len(trained.Params)
	var delta []float32
	if inPlace && cap(trained.Params) >= p+updateSlack {
		delta = trained.Params
	} else {
		delta = make([]float32, p, p+updateSlack)
	}
	if start != nil {
		if start.NumParams() != p {
			return nil, nil, fmt.Errorf("trained model has %d parameters, its start %d", p, start.NumParams())
		}
		for i := range delta {
			delta[i] = trained.Params[i] - start.Params[i]
		}
	} else {
		copy(delta, trained.Params) // already the delta (nothing when in place)
	}
	body := delta
	if plan.DP.ClipNorm > 0 {
		bit := dp.ClipBit(dp.L2Norm(delta), plan.DP.ClipNorm)
		dp.ClipL2(delta, plan.DP.ClipNorm)
		if plan.DP.Adaptive {
			body = append(delta, float32(plan.DP.BitScale*bit))
		}
	}
	clip := 1.0
	if cfg != nil {
		clip = float64(cfg.Quantizer.Clip)
	}
	loss, acc := stats.Loss, stats.Accuracy
	if plan.DP.NoiseStdDev > 0 {
		loss, acc = 0, 0
	}
	vec = protocol.AppendUpdateMetrics(body, clip, loss, acc)
	if observe != nil {
		observe(vec)
	}
	if cfg == nil {
		return vec, nil, nil
	}
	q := cfg.Quantizer
	weight := uint32(1)
	if q.MaxWeight > 0 {
		weight = uint32(min(uint64(n), uint64(q.MaxWeight)))
	}
	spent := inPlace && cap(vec) >= q.EncodedLen(len(vec))
	if spent {
		// Coordinate i of x overwrites coordinate i of vec after reading it.
		x = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(vec))), q.EncodedLen(len(vec)))
	} else {
		x = make([]uint32, q.EncodedLen(len(vec)))
	}
	if err := q.Encode(x, vec, weight, rounding); err != nil {
		return nil, nil, fmt.Errorf("encoding the update: %w", err)
	}
	if spent {
		vec = nil
	}
	if plan.DP.NoiseStdDev > 0 {
		levels := float64(uint32(1)<<(q.Bits-1) - 1)
		if err := dp.AddNoiseFixedPoint(x[:len(body)], plan.DP.NoiseStdDev*levels/float64(q.Clip), noise); err != nil {
			return nil, nil, fmt.Errorf("DP noise: %w", err)
		}
	}
	return vec, x, nil
}

// PlanOptimizer builds a round plan's local optimizer (SGD with momentum
// and weight decay, or Adam); FedProx's proximal term pulls toward a copy
// of the start weights. The agent and fedge simulate's virtual agents
// train with it.
func PlanOptimizer(plan *protocol.RoundPlan, start []float32) (tensor.Optimizer, error) {
	var prox tensor.Proximal
	if plan.Mu > 0 {
		prox = tensor.Proximal{Mu: float32(plan.Mu), Center: append([]float32(nil), start...)}
	}
	switch plan.Optimizer {
	case "", "sgd":
		return tensor.NewSGD(tensor.SGDConfig{LR: float32(plan.LR), Momentum: float32(plan.Momentum), WeightDecay: float32(plan.WeightDecay), Proximal: prox}), nil
	case "adam":
		return tensor.NewAdam(tensor.AdamConfig{LR: float32(plan.LR), WeightDecay: float32(plan.WeightDecay), Proximal: prox}), nil
	}
	return nil, fmt.Errorf("unknown optimizer %q", plan.Optimizer)
}

// evalRound evaluates the candidate and the baseline on the held-out split
// and sends the sums under SecAgg+.
func (a *Agent) evalRound(ctx context.Context, c conn, st *roundState, req *protocol.EvalRequest) error {
	cfg, pid, err := a.roundConfig(req.SecAgg)
	if err != nil {
		return err
	}
	if cfg.Dim != protocol.EvalDim {
		return fmt.Errorf("evaluation secagg dimension %d, want %d", cfg.Dim, protocol.EvalDim)
	}
	st.stage.Store(uint32(protocol.StageTrain))
	sums := func(version uint64, hash protocol.Hash) (protocol.EvalSums, error) {
		if version == 0 {
			return protocol.EvalSums{}, nil
		}
		m, err := a.modelFor(ctx, c, version, hash)
		if err != nil {
			return protocol.EvalSums{}, err
		}
		if m.Spec.IsExternal() {
			return a.evaluateExternal(ctx, st, req.RoundID, version, m)
		}
		if err := a.data.fitsModel(version, m.Spec); err != nil {
			return protocol.EvalSums{}, err
		}
		met, err := a.evaluate(version, m)
		if err != nil {
			return protocol.EvalSums{}, fmt.Errorf("evaluating model %d: %w", version, err)
		}
		return protocol.EvalSums{Correct: uint32(met.Correct), Total: uint32(met.Total), LossSum: met.LossSum}, nil
	}
	cand, err := sums(req.ModelVersion, req.ModelHash)
	if err != nil {
		return err
	}
	base, err := sums(req.BaselineVersion, req.BaselineHash)
	if err != nil {
		return err
	}
	a.log.Debug("evaluated", "round", req.RoundID, "candidate", req.ModelVersion, "baseline", req.BaselineVersion, "examples", cand.Total)
	return a.secureSum(ctx, c, st, cfg, pid, protocol.EncodeEval(cand, base))
}

// statsRound sends the per-feature count, sum and sum of squares of the
// local training split under SecAgg+, as exact fixed-point values: the
// coordinator learns only the federation's totals.
func (a *Agent) statsRound(ctx context.Context, c conn, st *roundState, req *protocol.StatsRequest) error {
	cfg, pid, err := a.roundConfig(req.SecAgg)
	if err != nil {
		return err
	}
	if a.data.text != nil {
		return errors.New("statistics rounds standardize numeric features; the agent's data is text")
	}
	train, _, err := a.data.forModel(tensor.Spec{})
	if err != nil {
		return err
	}
	if int(req.Features) != train.Features() {
		return fmt.Errorf("the job's model takes %d features, local data has %d", req.Features, train.Features())
	}
	if want := protocol.FixedLen(3 * train.Features()); cfg.Dim != want {
		return fmt.Errorf("statistics secagg dimension %d, want %d", cfg.Dim, want)
	}
	st.stage.Store(uint32(protocol.StageTrain))
	x, err := protocol.EncodeFixed(data.ComputeStats(train).Vector())
	if err != nil {
		return fmt.Errorf("local statistics: %w", err)
	}
	a.log.Debug("computed local statistics", "round", req.RoundID, "examples", train.Len(), "features", train.Features())
	if a.observeUpdate != nil {
		a.observeUpdate(nil, x)
	}
	return a.secureSum(ctx, c, st, cfg, pid, x)
}

// secureSum runs the agent's side of the five SecAgg+ stages on x. An
// error reply from the coordinator (the agent was dropped, the round
// closed) ends it.
func (a *Agent) secureSum(ctx context.Context, c conn, st *roundState, cfg *secagg.Config, pid uint32, x []uint32) error {
	a.mu.Lock()
	key := a.ident.key
	a.mu.Unlock()
	cl, err := secagg.NewClient(cfg, pid, key, rand.Reader)
	if err != nil {
		return err
	}
	id := st.invite.RoundID
	adv, err := cl.AdvertiseKeys()
	if err != nil {
		return err
	}
	var kl secagg.KeyList
	if err := a.stage(ctx, c, st, protocol.StageAdvertiseKeys, adv, func(p []byte) protocol.Message {
		return &protocol.AdvertiseKeys{RoundID: id, Payload: p}
	}, &kl); err != nil {
		return err
	}
	sk, err := cl.ShareKeys(&kl)
	if err != nil {
		return err
	}
	var sl secagg.ShareList
	if err := a.stage(ctx, c, st, protocol.StageShareKeys, sk, func(p []byte) protocol.Message {
		return &protocol.ShareKeys{RoundID: id, Payload: p}
	}, &sl); err != nil {
		return err
	}
	// x is masked in place (the caller's vector is spent): a large
	// input is uploaded from it by ReadAt, never copied into bytes.
	mi, err := cl.MaskInPlace(&sl, x)
	if err != nil {
		return err
	}
	// It goes in the stage message, or ahead as a bulk upload, in which
	// case the stage message is empty and names it.
	var masked []byte
	if mi.EncodedLen() > protocol.MaxInlinePayload {
		if err := a.uploadMasked(ctx, c, st, mi, mi.EncodedLen()); err != nil {
			return err
		}
	} else if masked, err = mi.MarshalBinary(); err != nil {
		return err
	}
	var sv secagg.SurvivorList
	if err := a.stage(ctx, c, st, protocol.StageMaskedInput, encoded(masked), func(p []byte) protocol.Message {
		return &protocol.MaskedInput{RoundID: id, Payload: p}
	}, &sv); err != nil {
		return err
	}
	cc, err := cl.ConsistencyCheck(&sv)
	if err != nil {
		return err
	}
	var sigs secagg.SignatureList
	if err := a.stage(ctx, c, st, protocol.StageConsistencyCheck, cc, func(p []byte) protocol.Message {
		return &protocol.ConsistencyCheck{RoundID: id, Payload: p}
	}, &sigs); err != nil {
		return err
	}
	um, err := cl.Unmask(&sigs)
	if err != nil {
		return err
	}
	return a.stage(ctx, c, st, protocol.StageUnmask, um, func(p []byte) protocol.Message {
		return &protocol.Unmask{RoundID: id, Payload: p}
	}, nil)
}

// encoded is a stage payload already marshalled.
type encoded []byte

func (e encoded) MarshalBinary() ([]byte, error) { return e, nil }

// uploadAttempts bounds the tries of a bulk masked upload; each retry
// resumes after the chunks the coordinator verified.
const uploadAttempts = 4

// uploadMasked sends a masked input too large for a stage message as a
// bulk blob (protocol.MaskedUpdate), before the masked-input deadline.
func (a *Agent) uploadMasked(ctx context.Context, c conn, st *roundState, payload io.ReaderAt, size int64) error {
	id := st.invite.RoundID
	st.stage.Store(uint32(protocol.StageMaskedInput))
	info, err := protocol.NewBlobInfo(fmt.Sprintf("round/%d/masked-input", id), payload, size, 0)
	if err != nil {
		return err
	}
	uctx, cancel := context.WithDeadline(ctx, st.deadline(protocol.StageMaskedInput))
	defer cancel()
	hdr := &protocol.MaskedUpdate{RoundID: id, Elements: uint64(size), Blob: info}
	for try := 1; ; try++ {
		err = c.PushBlob(uctx, hdr, payload, &info)
		if err == nil || try == uploadAttempts || uctx.Err() != nil {
			break
		}
		a.log.Info("masked upload interrupted; resuming", "round", id, "try", try, "err", err)
		select {
		case <-uctx.Done():
		case <-time.After(time.Duration(try) * 200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("masked upload: %w", err)
	}
	n := uint64(size)
	st.sent.Add(n)
	a.m.bytesSent.Add(n)
	return nil
}

// stage sends one SecAgg+ message and decodes the relay's payload into
// out (nil for the last stage, whose relay is empty).
func (a *Agent) stage(ctx context.Context, c conn, st *roundState, s protocol.Stage, msg encoding.BinaryMarshaler,
	wrap func([]byte) protocol.Message, out encoding.BinaryUnmarshaler) error {
	return protocol.ExchangeStage(s, msg, wrap, out, func(m protocol.Message, size int) (protocol.Message, error) {
		return a.request(ctx, c, st, s, m, size)
	})
}
