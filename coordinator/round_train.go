package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/memlimit"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// DefaultMaxWeight caps the example count an agent's update is weighted
// by under secure aggregation (the quantizer needs a bound; an agent with
// more examples is weighted as if it had this many).
const DefaultMaxWeight = 1024

// setRound adds r to the rounds in progress: agents' messages carrying
// its ID go to it.
func (e *Engine) setRound(r *activeRound) {
	e.mu.Lock()
	e.rounds[r.id] = r
	e.mu.Unlock()
}

// clearRound ends r for anyone still waiting in it and frees its agents
// for other rounds.
func (e *Engine) clearRound(r *activeRound, err error) {
	e.mu.Lock()
	if e.rounds[r.id] == r {
		delete(e.rounds, r.id)
	}
	for a := range e.claims {
		e.dropClaim(a, r.id)
	}
	e.mu.Unlock()
	r.Close(err)
	r.uploads.releaseAll()
	e.poke()
}

// initialModel builds and commits version 1 of a job's model, after a
// statistics round when the job standardizes its features.
func (e *Engine) initialModel(ctx context.Context, job *JobRecord) error {
	spec, err := jobTensorSpec(&job.Spec)
	if err != nil {
		return err
	}
	if spec.IsExternal() {
		// The job was admitted by an older node (apiJobsStart refuses it):
		// it can never start, so it fails rather than retrying.
		return e.failJob(ctx, job, errExternalInit(spec))
	}
	if len(job.Spec.Data.Columns) > 0 {
		if spec, err = e.preparedSpec(ctx, job, spec); err != nil {
			return err
		}
	} else if job.Spec.Data.Standardize {
		if spec, err = e.standardizedSpec(ctx, job, spec); err != nil {
			return err
		}
	}
	m, err := tensor.NewModel(spec, job.Spec.Seed)
	if err != nil {
		return fmt.Errorf("coordinator.initialModel: %w", err)
	}
	blob, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	h := m.Hash()
	_, err = e.rep.apply(ctx, cmdModelCommit, modelCommitCmd{
		Model: ModelRecord{Hash: hex.EncodeToString(h[:]), Job: job.ID, CreatedAt: e.cfg.Now(), Name: spec.Name},
	}, blob)
	return err
}

// errExternalInit is why a job cannot start an external model from its
// spec alone: fedge does not know how to initialize its weights.
func errExternalInit(s tensor.Spec) error {
	return fmt.Errorf("%w: model %q is external (named tensors fedge does not run): fedge cannot initialize its weights; "+
		"import them (fedge models import -f init.safetensors) and start the job with \"init_model\" (or \"init_weights\" in the job file)", ErrInvalidJob, s.Name)
}

// jobTensorSpec resolves the model architecture a job names.
func jobTensorSpec(j *JobSpec) (tensor.Spec, error) {
	if len(j.Spec) > 0 {
		var s tensor.Spec
		if err := jsonUnmarshalStrict(j.Spec, &s); err != nil {
			return s, fmt.Errorf("%w: spec: %v", ErrInvalidJob, err)
		}
		return s, nil
	}
	s, err := tensor.NamedSpec(j.Model)
	if err != nil {
		return s, fmt.Errorf("%w: model %q is not one fedge's engine runs (%s); give a full \"spec\", or an init_model imported with `fedge models import`",
			ErrInvalidJob, j.Model, strings.Join(tensor.SpecNames(), ", "))
	}
	return s, nil
}

// strategyFor returns the job's strategy positioned after version v.
func (e *Engine) strategyFor(job *JobRecord, rec *ModelRecord) (Strategy, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.strategies[job.ID]; ok && e.stratVer[job.ID] == rec.Version {
		return s, nil
	}
	s, err := NewStrategy(job.Spec.Strategy)
	if err != nil {
		return nil, err
	}
	state, err := e.strategyState(rec)
	if err != nil {
		return nil, err
	}
	if err := s.SetState(state); err != nil {
		return nil, err
	}
	e.strategies[job.ID], e.stratVer[job.ID] = s, rec.Version
	return s, nil
}

// roundMin is the least number of agents a round of spec can run with.
func roundMin(spec *JobSpec) int {
	if spec.SecAgg.Enabled {
		return max(spec.MinClients, secagg.MinParticipants)
	}
	return spec.MinClients
}

// trainRound runs one training round of job and commits its model.
func (e *Engine) trainRound(ctx context.Context, job *JobRecord) error {
	spec := job.Spec
	if job.Model == 0 {
		// A job started from init_model already names its model (startJob).
		return e.initialModel(ctx, job)
	}
	// Only the model's size now: its parameters are read when the round
	// commits, so they are not held beside the running sum (stepModel).
	nparams, mrec, err := e.modelHeader(job.Model)
	if err != nil {
		return e.failJob(ctx, job, err)
	}
	// The round's one large vector (the ring sum, then the mean and the
	// next model in its memory): the heap's slack above it stays small,
	// and it returns to the system when the round ends. A round without
	// secure aggregation sums in float64 beside its mean (3 vectors).
	reserve := 4 * int64(nparams)
	if !spec.SecAgg.Enabled {
		reserve *= 3
	}
	defer memlimit.Reserve(reserve).Release()
	minN := roundMin(&spec)
	elig := e.eligible(spec.Selector, nil)
	if len(elig) < minN {
		return fmt.Errorf("%w: %d of %d for job %s", ErrNotEnoughAgents, len(elig), minN, job.ID)
	}
	count, err := trainCount(&spec, len(elig), minN)
	if err != nil {
		return fmt.Errorf("%w for job %s", err, job.ID)
	}
	selected := elig[:count]
	start := e.cfg.Now()
	rec := RoundRecord{
		Job: job.ID, Kind: RoundTrain, Number: job.RoundsDone + 1, Leader: e.rep.nodeID(),
		Term: e.rep.term(), StartedAt: start, ModelIn: job.Model,
	}
	id, err := e.rep.apply(ctx, cmdRoundStart, rec, nil)
	if err != nil {
		return err
	}
	rec.ID = id.(uint64)
	r := &activeRound{id: rec.ID, owner: job.ID, models: []uint64{job.Model}}
	e.setRound(r)
	priv, err := newRoundPrivacy(job, len(selected))
	if err != nil {
		e.clearRound(r, ErrRoundFinished) // rounds in progress hold only rounds that run
		return e.failJob(ctx, job, err)
	}
	delta, weight, survivors, err := e.collectTrain(ctx, r, &rec, job, nparams, mrec, selected, minN, priv)
	e.clearRound(r, ErrRoundFinished)
	rec.BytesIn, rec.BytesOut = r.bytesIn.Load(), r.bytesOut.Load()
	rec.EndedAt = e.cfg.Now()
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	d, loss, acc := protocol.SplitUpdateMetrics(delta, updateClip(&spec))
	if d, err = priv.observe(d, survivors); err != nil {
		return e.endRound(ctx, &rec, err)
	}
	strat, err := e.strategyFor(job, mrec)
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	next, push, dropped, err := e.stepModel(r, job, strat, d)
	if errors.Is(err, tensor.ErrChecksum) || errors.Is(err, tensor.ErrFormat) {
		e.endRound(ctx, &rec, err)
		return e.failJob(ctx, job, err)
	}
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	privacy, err := spendPrivacy(job, float64(len(selected))/float64(len(elig)))
	if err == nil {
		err = priv.record(privacy)
	}
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	state := strat.State()
	h := next.Hash()
	rec.State = RoundCommitted
	rec.Metrics = map[string]float64{
		"survivors": float64(survivors), "weight": weight,
		"seconds": rec.EndedAt.Sub(start).Seconds(), "coordinator_seconds": time.Duration(r.busy.Load()).Seconds(),
	}
	modelMetrics := map[string]float64{}
	if !priv.noised() {
		// Under DP noise agents do not send their training metrics.
		rec.Metrics["train_loss"], rec.Metrics["train_accuracy"] = loss, acc
		modelMetrics["train_loss"], modelMetrics["train_accuracy"] = loss, acc
	}
	if privacy != nil {
		rec.Metrics["epsilon"] = privacy.Epsilon
	}
	if priv != nil {
		rec.Metrics["clip_norm"] = priv.clip
		if priv.adaptive != nil {
			rec.Metrics["next_clip_norm"] = priv.adaptive.Clip()
		}
	}
	// The model file is written straight into the blob store (a buffer
	// of it in memory), followed by the push and the strategy state.
	v, err := applyModel(ctx, e.rep, cmdModelCommit, modelCommitCmd{
		Model: ModelRecord{
			Parent: job.Model, Hash: hex.EncodeToString(h[:]), Job: job.ID, Round: rec.ID,
			CreatedAt: rec.EndedAt, Metrics: modelMetrics, Name: next.Spec.Name, External: next.Spec.IsExternal(),
			StateSize: len(state), PushSize: len(push),
		},
		Round: &rec, Privacy: privacy,
	}, modelPayload(next, push, state))
	if err != nil {
		// The strategy advanced in memory but the model did not commit: drop
		// the memory so the next round starts from the replicated state.
		e.mu.Lock()
		delete(e.strategies, job.ID)
		e.mu.Unlock()
		return err
	}
	e.resolveIssues(job.ID, rec.ID, rec.Participants)
	e.met.roundEnded(&rec)
	e.mu.Lock()
	e.stratVer[job.ID] = v.(uint64)
	if dropped != nil {
		e.residuals[job.ID] = pushResidual{version: v.(uint64), r: dropped}
	}
	e.mu.Unlock()
	e.log.Info("round committed", "job", job.ID, "round", rec.ID, "number", rec.Number, "model", v,
		"participants", len(rec.Participants), "survivors", survivors, "train_loss", loss, "seconds", rec.EndedAt.Sub(start).Seconds())
	return nil
}

// spendPrivacy charges one round of the subsampled Gaussian mechanism
// (sampling rate q, the job's noise multiplier) to the job's RDP
// accountant and returns the new account, or nil when DP is off.
func spendPrivacy(job *JobRecord, q float64) (*PrivacyRecord, error) {
	d := job.Spec.DP
	if !d.Enabled || d.NoiseMultiplier <= 0 {
		return nil, nil
	}
	acc, err := dp.NewAccountant(nil)
	if err != nil {
		return nil, err
	}
	rounds := 0
	if job.Privacy != nil && len(job.Privacy.Accountant) > 0 {
		if err := acc.UnmarshalBinary(job.Privacy.Accountant); err != nil {
			return nil, fmt.Errorf("coordinator.spendPrivacy: %w", err)
		}
		rounds = job.Privacy.Rounds
	}
	if err := acc.Step(min(q, 1), d.NoiseMultiplier, 1); err != nil {
		return nil, fmt.Errorf("coordinator.spendPrivacy: %w", err)
	}
	eps, _ := acc.Epsilon(d.Delta)
	b, err := acc.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &PrivacyRecord{Accountant: b, Epsilon: eps, Delta: d.Delta, Rounds: rounds + 1}, nil
}

// updateClip is the bound used to scale the metric coordinates.
func updateClip(spec *JobSpec) float64 {
	if spec.SecAgg.Enabled {
		return spec.SecAgg.Clip
	}
	return 1
}

// endRound records a round that ended without a model.
func (e *Engine) endRound(ctx context.Context, rec *RoundRecord, cause error) error {
	e.abortAgents(ctx, rec, cause)
	rec.State, rec.Error = RoundFailed, cause.Error()
	if errors.Is(cause, context.Canceled) {
		rec.State = RoundAborted
	}
	if rec.EndedAt.IsZero() {
		rec.EndedAt = e.cfg.Now()
	}
	// The context may have ended (leadership lost): the next leader aborts
	// the round, so a failure to record it here is not an error of its own.
	if _, err := e.rep.apply(context.WithoutCancel(ctx), cmdRoundEnd, rec, nil); err != nil {
		e.log.Warn("recording failed round", "round", rec.ID, "err", err)
	}
	e.met.roundEnded(rec)
	return fmt.Errorf("%w: round %d: %v", ErrRoundFailed, rec.ID, cause)
}

// abortAgents tells the agents that joined a failed round that it ended,
// so they are free for the next invite at once rather than waiting for
// the round's deadlines (which decline every invite meanwhile).
func (e *Engine) abortAgents(ctx context.Context, rec *RoundRecord, cause error) {
	if len(rec.Participants) == 0 {
		return
	}
	joined := map[string]bool{}
	for _, id := range rec.Participants {
		joined[id] = true
	}
	var links []AgentLink
	for _, l := range e.links() {
		if joined[l.AgentID()] {
			links = append(links, l)
		}
	}
	reason := cause.Error()
	if len(reason) > 200 {
		reason = reason[:200]
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	e.broadcast(actx, links, func(AgentLink) protocol.Message {
		return &protocol.RoundAbort{RoundID: rec.ID, Reason: strings.ToValidUTF8(reason, "")}
	})
}

// failJob marks a job failed (its model is unusable).
func (e *Engine) failJob(ctx context.Context, job *JobRecord, cause error) error {
	_, err := e.rep.apply(ctx, cmdJobUpdate, jobUpdateCmd{ID: job.ID, State: JobFailed, Error: cause.Error(), At: e.cfg.Now()}, nil)
	if err != nil {
		return err
	}
	return cause
}

// deadlines builds the invite's stage deadlines.
func deadlines(start time.Time, d Deadlines) (trainBy time.Time, out []protocol.StageDeadline) {
	trainBy = start.Add(time.Duration(d.Download) + time.Duration(d.Train))
	out = append(out, protocol.StageDeadline{Stage: protocol.StageTrain, At: trainBy})
	at := trainBy
	for _, s := range []protocol.Stage{protocol.StageAdvertiseKeys, protocol.StageShareKeys, protocol.StageMaskedInput, protocol.StageConsistencyCheck, protocol.StageUnmask} {
		at = at.Add(time.Duration(d.Stage))
		out = append(out, protocol.StageDeadline{Stage: s, At: at})
	}
	return trainBy, out
}

// collectTrain invites, plans and aggregates one training round, returning
// the example-weighted mean of the agents' update vectors.
func (e *Engine) collectTrain(ctx context.Context, r *activeRound, rec *RoundRecord, job *JobRecord, nparams int, mrec *ModelRecord,
	selected []AgentLink, minN int, priv *roundPrivacy) ([]float32, float64, int, error) {
	spec := job.Spec
	trainBy, dl := deadlines(e.cfg.Now(), spec.Deadline)
	invited := time.Now()
	joined := e.invite(ctx, r.owner, selected, &protocol.RoundInvite{RoundID: r.id, Job: job.ID, Kind: protocol.RoundTrain, Deadlines: dl})
	rec.Stages = append(rec.Stages, StageRecord{Name: "invite", Expected: len(selected), Survivors: len(joined), Dropped: len(selected) - len(joined), Duration: time.Since(invited)})
	for _, l := range joined {
		rec.Participants = append(rec.Participants, l.AgentID())
	}
	if len(joined) < minN {
		return nil, 0, 0, fmt.Errorf("%w: %d of %d invited agents joined, need %d", ErrNotEnoughAgents, len(joined), len(selected), minN)
	}
	ids, parts := secaggIDs(joined)
	r.ids = ids
	dim := nparams + priv.extra() + protocol.UpdateMetrics
	plan := &protocol.RoundPlan{
		RoundID: r.id, ModelVersion: job.Model, Epochs: uint32(spec.Plan.Epochs), BatchSize: uint32(spec.Plan.BatchSize),
		LR: spec.Plan.LR, Mu: spec.Plan.Mu, Optimizer: "sgd", Momentum: spec.Plan.Momentum,
	}
	if h, err := hex.DecodeString(mrec.Hash); err == nil && len(h) == len(plan.ModelHash) {
		copy(plan.ModelHash[:], h)
	}
	stageTime := time.Duration(spec.Deadline.Stage)
	sendPlan := func() { e.broadcast(ctx, joined, func(AgentLink) protocol.Message { return plan }) }
	if !spec.SecAgg.Enabled {
		return e.collectPlain(ctx, r, rec, &spec, rec.Participants, dim, sendPlan, trainBy.Add(stageTime))
	}
	q := secagg.Quantizer{Clip: float32(spec.SecAgg.Clip), Bits: spec.SecAgg.Bits, MaxWeight: DefaultMaxWeight}
	if spec.DP.Enabled {
		q.MaxWeight = 0 // DP bounds each agent's contribution: an unweighted mean
	}
	if groups, nodes := e.shardGroups(ctx, &spec, joined); groups != nil {
		// Sharded: each group aggregated by its coordinator (round_group*.go).
		return e.collectSharded(ctx, r, rec, &spec, plan, groups, nodes, q, dim, trainBy, stageTime, priv)
	}
	k := spec.SecAgg.K
	if k == 0 && spec.OverSelect > 0 {
		// The job expects this fraction to drop out: pick a neighbour
		// degree whose shares survive it (the default suits ~10%).
		k = secagg.NeighboursForDropout(len(parts), spec.OverSelect, 1e-6)
	}
	cfg := &secagg.Config{
		RoundID:      []byte(fmt.Sprintf("%s/round/%d", e.clusterName(), r.id)),
		Participants: parts, Neighbours: k, Threshold: spec.SecAgg.T,
		Dim: q.EncodedLen(dim), Quantizer: &q,
	}
	if _, err := rand.Read(cfg.GraphSeed[:]); err != nil {
		return nil, 0, 0, err
	}
	resolved, err := cfg.Resolve()
	if err != nil {
		return nil, 0, 0, err
	}
	if priv != nil {
		if resolved, err = dpMinSurvivors(cfg, resolved, minN); err != nil {
			return nil, 0, 0, err
		}
	}
	cfgBytes, err := cfg.MarshalBinary()
	if err != nil {
		return nil, 0, 0, err
	}
	plan.SecAgg = cfgBytes
	if priv != nil {
		plan.DP = priv.params(resolved.MinSurvivors)
	}
	res, err := e.runSecAgg(ctx, r, rec, cfg, sendPlan, trainBy.Add(stageTime), stageTime)
	if err != nil {
		return nil, 0, 0, err
	}
	// The mean is decoded into the sum's own memory: one vector, not two.
	var mean []float32
	var w uint32
	if err := r.timed(func() (err error) { mean, w, err = q.DecodeMeanInPlace(res.Sum); return }); err != nil {
		return nil, 0, 0, err
	}
	return mean, float64(w), len(res.Survivors), nil
}

// collectPlain gathers updates without secure aggregation: a weighted sum
// streamed as they arrive, or, for robust strategies, every update.
func (e *Engine) collectPlain(ctx context.Context, r *activeRound, rec *RoundRecord, spec *JobSpec, joined []string, dim int, start func(), by time.Time) ([]float32, float64, int, error) {
	var mu sync.Mutex
	sum := make([]float64, dim)
	var total float64
	var updates []Update
	keep := api.RobustStrategy(spec.Strategy.Name)
	st, arrived := r.stageRun(ctx, rec, "update", protocol.TypeMaskedInput, joined, by, start, func(agent string, m protocol.Message) error {
		v, w, err := protocol.DecodePlainUpdate(m.(*protocol.MaskedInput).Payload, dim)
		if err != nil {
			return err
		}
		if w == 0 {
			return fmt.Errorf("%w: zero weight", protocol.ErrBadUpdate)
		}
		mu.Lock()
		defer mu.Unlock()
		if keep {
			updates = append(updates, Update{Delta: v, Examples: float64(w)})
		}
		for i, x := range v {
			sum[i] += float64(w) * float64(x)
		}
		total += float64(w)
		return nil
	})
	replies := map[string]any{}
	for _, a := range arrived {
		replies[a] = &protocol.Ack{}
	}
	st.Release(replies)
	if len(arrived) < roundMin(spec) {
		return nil, 0, 0, fmt.Errorf("%w: %d updates arrived, need %d", ErrNotEnoughAgents, len(arrived), roundMin(spec))
	}
	mean := make([]float32, dim)
	for i := range mean {
		mean[i] = float32(sum[i] / total)
	}
	if keep {
		strat, err := NewStrategy(spec.Strategy)
		if err != nil {
			return nil, 0, 0, err
		}
		// Robust aggregation of the deltas; the metric coordinates stay the
		// weighted mean.
		deltas := make([]Update, len(updates))
		sort.Slice(updates, func(a, b int) bool { return updates[a].Examples < updates[b].Examples })
		for i, u := range updates {
			deltas[i] = Update{Delta: u.Delta[:dim-protocol.UpdateMetrics], Examples: u.Examples}
		}
		d, err := strat.(RobustStrategy).Aggregate(deltas)
		if err != nil {
			return nil, 0, 0, err
		}
		copy(mean, d)
	}
	return mean, total, len(arrived), nil
}
