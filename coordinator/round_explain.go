package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// explainJob is an operator's request for an explanation round, queued
// for the engine's explanation loop, which runs them one at a time.
type explainJob struct {
	req  api.ExplainRequest
	done chan error // buffered: the engine never blocks on it
}

// requestExplain queues an explanation round and waits for its outcome
// or for ctx. Leader memory only: a leader that stops drops its queue,
// and the caller's context ends the wait.
func (e *Engine) requestExplain(ctx context.Context, req api.ExplainRequest) error {
	j := &explainJob{req: req, done: make(chan error, 1)}
	e.mu.Lock()
	e.explains = append(e.explains, j)
	e.mu.Unlock()
	e.poke()
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		e.mu.Lock()
		e.explains = slices.DeleteFunc(e.explains, func(x *explainJob) bool { return x == j })
		e.mu.Unlock()
		return fmt.Errorf("coordinator.explain: model %d: %w", req.Version, ctx.Err())
	}
}

// nextExplain takes the oldest queued explanation request, if any.
func (e *Engine) nextExplain() *explainJob {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.explains) == 0 {
		return nil
	}
	j := e.explains[0]
	e.explains = e.explains[1:]
	return j
}

// explainRound runs a queued request and hands its outcome back.
func (e *Engine) explainRound(ctx context.Context, j *explainJob) error {
	err := e.explainModel(ctx, j.req)
	j.done <- err
	return err
}

// explainModel runs an explanation round: every eligible agent explains
// up to req.MaxExamples of its held-out examples with the version's model
// (integrated gradients, zero baseline, req.Steps steps) and the summed
// absolute attributions per feature and the example count go through
// SecAgg+ as exact fixed-point values, so the coordinator learns only the
// federation's totals. Their ratio is stored with the version.
func (e *Engine) explainModel(ctx context.Context, req api.ExplainRequest) error {
	m, mrec, err := e.loadModel(req.Version)
	if err != nil {
		return err
	}
	if m.Spec.IsExternal() || m.Spec.IsGraph() {
		return fmt.Errorf("%w: model %d: explanation rounds take engine models with plain inputs", ErrConflict, req.Version)
	}
	sel := req.Selector
	if len(sel) == 0 && mrec.Job != "" {
		e.fsm.Read(func(s *State) {
			if j, ok := s.Jobs[mrec.Job]; ok {
				sel = j.Spec.Selector
			}
		})
	}
	var links []AgentLink
	for _, l := range e.eligible(sel, nil) {
		if speaks(l, 4) && len(links) < protocol.FixedMaxSummands {
			links = append(links, l)
		}
	}
	minN := EvalMinAgents
	if len(links) < minN {
		return fmt.Errorf("%w: %d of %d for the explanation of model %d", ErrNotEnoughAgents, len(links), minN, req.Version)
	}
	f := m.Features()
	start := e.cfg.Now()
	rec := RoundRecord{Kind: RoundExplain, Leader: e.rep.nodeID(), Term: e.rep.term(), StartedAt: start, ModelIn: req.Version}
	id, err := e.rep.apply(ctx, cmdRoundStart, rec, nil)
	if err != nil {
		return err
	}
	rec.ID = id.(uint64)
	owner := fmt.Sprintf("explain/%d", req.Version)
	r := &activeRound{id: rec.ID, owner: owner, models: []uint64{req.Version}}
	e.setRound(r)
	msg := &protocol.ExplainRequest{RoundID: r.id, ModelVersion: req.Version, Features: uint32(f),
		Steps: uint32(req.Steps), MaxExamples: uint32(req.MaxExamples)}
	copy(msg.ModelHash[:], mustHex(mrec.Hash))
	sum, n, err := e.secureSumRound(ctx, r, &rec, links, protocol.RoundExplain, mrec.Job, minN, protocol.FixedLen(f+1), req.Deadline,
		func(cfg []byte) protocol.Message { msg.SecAgg = cfg; return msg })
	e.clearRound(r, ErrRoundFinished)
	rec.BytesIn, rec.BytesOut = r.bytesIn.Load(), r.bytesOut.Load()
	rec.EndedAt = e.cfg.Now()
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	var v []float64
	if err := r.timed(func() error { v, err = protocol.DecodeFixed(sum); return err }); err != nil {
		return e.endRound(ctx, &rec, fmt.Errorf("explanation sum: %w", err))
	}
	if len(v) != f+1 {
		return e.endRound(ctx, &rec, fmt.Errorf("explanation sum of %d values, want %d", len(v), f+1))
	}
	examples := v[f]
	if examples < 0.5 {
		return e.endRound(ctx, &rec, errors.New("the agents hold no held-out examples"))
	}
	x := ExplanationRecord{Shape: slices.Clone(m.Spec.Input), Importance: make([]float64, f), Examples: int(examples + 0.5), Agents: n,
		Steps: req.Steps, MaxExamples: req.MaxExamples, Round: rec.ID, At: rec.EndedAt}
	for i := range x.Importance {
		x.Importance[i] = v[i] / examples
	}
	rec.State = RoundCommitted
	rec.Metrics = map[string]float64{
		"examples": examples, "features": float64(f), "survivors": float64(n), "steps": float64(req.Steps),
		"seconds": rec.EndedAt.Sub(start).Seconds(), "coordinator_seconds": time.Duration(r.busy.Load()).Seconds(),
	}
	if _, err := e.rep.apply(ctx, cmdRoundEnd, rec, nil); err != nil {
		return err
	}
	e.met.roundEnded(&rec)
	if _, err := e.rep.apply(ctx, cmdModelExplain, explainCmd{Version: req.Version, Explanation: x}, nil); err != nil {
		return err
	}
	e.log.Info("model explained", "model", req.Version, "round", rec.ID, "examples", x.Examples, "agents", n, "steps", req.Steps)
	return nil
}
