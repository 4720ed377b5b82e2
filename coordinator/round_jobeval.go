package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedge/fedge/protocol"
)

// jobEvalRound runs the federated evaluation a job with eval_every owes
// after its latest committed training round: every eligible agent
// evaluates the job's newest model on its held-out split and the sums
// (correct, total, loss) go through SecAgg+, whether or not the job's
// updates do, so the coordinator learns the federation's held-out
// accuracy and nothing per agent. A failed round is recorded and retried,
// up to maxEvalAttempts rounds (the FSM counts them); then training goes
// on without that evaluation.
func (e *Engine) jobEvalRound(ctx context.Context, job *JobRecord) error {
	spec := job.Spec
	minN := max(spec.MinClients, EvalMinAgents)
	links := e.eligible(spec.Selector, nil)
	if len(links) < minN {
		return fmt.Errorf("%w: %d of %d for the evaluation of job %s", ErrNotEnoughAgents, len(links), minN, job.ID)
	}
	var mrec *ModelRecord
	e.fsm.Read(func(s *State) {
		if m, ok := s.Models[job.Model]; ok {
			c := *m
			mrec = &c
		}
	})
	if mrec == nil {
		return e.failJob(ctx, job, fmt.Errorf("%w: model %d of job %s", ErrNotFound, job.Model, job.ID))
	}
	start := e.cfg.Now()
	rec := RoundRecord{Job: job.ID, Kind: RoundEval, Number: job.RoundsDone, Leader: e.rep.nodeID(), Term: e.rep.term(), StartedAt: start, ModelIn: job.Model}
	id, err := e.rep.apply(ctx, cmdRoundStart, rec, nil)
	if err != nil {
		return err
	}
	rec.ID = id.(uint64)
	r := &activeRound{id: rec.ID, owner: job.ID, models: []uint64{job.Model}}
	e.setRound(r)
	// BaselineVersion 0: agents send zeros for the baseline half.
	req := &protocol.EvalRequest{RoundID: r.id, ModelVersion: job.Model}
	copy(req.ModelHash[:], mustHex(mrec.Hash))
	sum, n, err := e.secureSumRound(ctx, r, &rec, links, protocol.RoundEval, job.ID, minN, protocol.EvalDim, spec.Deadline,
		func(cfg []byte) protocol.Message { req.SecAgg = cfg; return req })
	e.clearRound(r, ErrRoundFinished)
	rec.BytesIn, rec.BytesOut = r.bytesIn.Load(), r.bytesOut.Load()
	rec.EndedAt = e.cfg.Now()
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	c, _, err := protocol.DecodeEval(sum)
	if err != nil {
		return e.endRound(ctx, &rec, err)
	}
	if c.Total == 0 {
		return e.endRound(ctx, &rec, errors.New("the agents hold no held-out examples"))
	}
	acc, loss := float64(c.Correct)/float64(c.Total), c.LossSum/float64(c.Total)
	rec.State = RoundCommitted
	rec.Metrics = map[string]float64{
		"eval_accuracy": acc, "eval_loss": loss, "eval_examples": float64(c.Total), "eval_correct": float64(c.Correct),
		"survivors": float64(n), "seconds": rec.EndedAt.Sub(start).Seconds(),
		"coordinator_seconds": time.Duration(r.busy.Load()).Seconds(),
	}
	if _, err := e.rep.apply(ctx, cmdRoundEnd, rec, nil); err != nil {
		return err
	}
	e.met.roundEnded(&rec)
	e.log.Info("job evaluated", "job", job.ID, "round", rec.ID, "after_round", rec.Number, "model", job.Model,
		"held_out_accuracy", acc, "held_out_loss", loss, "examples", c.Total, "agents", n)
	return nil
}
