package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
)

// EvalMinAgents is the least number of canary agents an evaluation round
// needs: below it, secure aggregation would not hide single hosts.
const EvalMinAgents = api.EvalMinAgents

// rolloutStep runs one evaluation round for the rollout's current cohort
// and lets the gate decide: advance (or promote at the last cohort) when
// the candidate passes, roll back when it fails.
func (e *Engine) rolloutStep(ctx context.Context, ro *RolloutRecord) error {
	gate, err := ParseGate(ro.Gate)
	if err != nil {
		return e.decide(ctx, ro, Decision{Action: "pause", By: "gate", Reason: err.Error()})
	}
	var cohort map[string]bool
	e.fsm.Read(func(s *State) {
		cohort = map[string]bool{}
		for i := 0; i <= ro.Stage; i++ {
			for _, id := range s.CohortAgents(ro, i) {
				cohort[id] = true
			}
		}
	})
	links := e.eligible(nil, cohort)
	if len(links) < EvalMinAgents {
		return fmt.Errorf("%w: %d canary agents of rollout %s connected, need %d", ErrNotEnoughAgents, len(links), ro.ID, EvalMinAgents)
	}
	cand, base, n, err := e.evalRound(ctx, ro, links)
	if err != nil {
		return err
	}
	ev := NewEvidence(n, cand, base)
	pass, got, want := gate.Pass(ev)
	d := Decision{Action: "rollback", By: "gate", Evidence: &ev,
		Reason: fmt.Sprintf("%s: candidate %.3f vs required %.3f", gate, got, want)}
	if pass {
		d.Action = "advance"
	}
	return e.decide(ctx, ro, d)
}

// decide commits a rollout decision for the rollout's current stage.
func (e *Engine) decide(ctx context.Context, ro *RolloutRecord, d Decision) error {
	d.Stage, d.At = ro.Stage, e.cfg.Now()
	_, err := e.rep.apply(ctx, cmdRolloutDecide, decideCmd{ID: ro.ID, Decision: d}, nil)
	if err == nil {
		e.met.decided(d.Action)
		e.log.Info("rollout decision", "rollout", ro.ID, "stage", ro.Stage, "action", d.Action, "by", d.By, "reason", d.Reason)
	}
	return err
}

// evalRound asks the links to evaluate the candidate and the baseline on
// their held-out data and returns the securely aggregated sums.
func (e *Engine) evalRound(ctx context.Context, ro *RolloutRecord, links []AgentLink) (cand, base EvalSums, survivors int, err error) {
	start := e.cfg.Now()
	rec := RoundRecord{Rollout: ro.ID, Kind: RoundEval, Leader: e.rep.nodeID(), Term: e.rep.term(), StartedAt: start, ModelIn: ro.Model}
	id, err := e.rep.apply(ctx, cmdRoundStart, rec, nil)
	if err != nil {
		return cand, base, 0, err
	}
	rec.ID = id.(uint64)
	r := &activeRound{id: rec.ID, owner: "rollout/" + ro.ID, models: []uint64{ro.Model, ro.Baseline}}
	e.setRound(r)
	sum, n, err := e.collectEval(ctx, r, &rec, ro, links)
	e.clearRound(r, ErrRoundFinished)
	rec.BytesIn, rec.BytesOut = r.bytesIn.Load(), r.bytesOut.Load()
	rec.EndedAt = e.cfg.Now()
	if err != nil {
		return cand, base, 0, e.endRound(ctx, &rec, err)
	}
	c, b, err := protocol.DecodeEval(sum)
	if err != nil {
		return cand, base, 0, e.endRound(ctx, &rec, err)
	}
	cand = EvalSums{Correct: float64(c.Correct), Total: float64(c.Total), LossSum: c.LossSum}
	base = EvalSums{Correct: float64(b.Correct), Total: float64(b.Total), LossSum: b.LossSum}
	if cand.Total == 0 {
		return cand, base, 0, e.endRound(ctx, &rec, errors.New("canaries hold no held-out examples"))
	}
	ev := NewEvidence(n, cand, base)
	rec.State = RoundCommitted
	rec.Metrics = map[string]float64{
		"candidate_accuracy": ev.CandidateAccuracy, "baseline_accuracy": ev.BaselineAccuracy,
		"examples": cand.Total, "survivors": float64(n), "seconds": rec.EndedAt.Sub(start).Seconds(),
		"coordinator_seconds": time.Duration(r.busy.Load()).Seconds(),
	}
	if _, err := e.rep.apply(ctx, cmdRoundEnd, rec, nil); err != nil {
		return cand, base, 0, err
	}
	e.met.roundEnded(&rec)
	return cand, base, n, nil
}

func (e *Engine) collectEval(ctx context.Context, r *activeRound, rec *RoundRecord, ro *RolloutRecord, links []AgentLink) ([]uint32, int, error) {
	req := &protocol.EvalRequest{RoundID: r.id, ModelVersion: ro.Model, BaselineVersion: ro.Baseline}
	e.fsm.Read(func(s *State) {
		if m, ok := s.Models[ro.Model]; ok {
			copy(req.ModelHash[:], mustHex(m.Hash))
		}
		if m, ok := s.Models[ro.Baseline]; ok {
			copy(req.BaselineHash[:], mustHex(m.Hash))
		}
	})
	d := Deadlines{Download: Duration(time.Minute), Train: Duration(time.Minute), Stage: Duration(30 * time.Second)}
	return e.secureSumRound(ctx, r, rec, links, protocol.RoundEval, "", EvalMinAgents, protocol.EvalDim, d,
		func(cfg []byte) protocol.Message { req.SecAgg = cfg; return req })
}

// secureSumRound invites links to a round of the given kind, and runs
// SecAgg+ over dim raw ring coordinates (no quantizer: the agents send
// exact integers) once the start message built from the encoded
// configuration has gone out. It returns the sum and the survivor count.
func (e *Engine) secureSumRound(ctx context.Context, r *activeRound, rec *RoundRecord, links []AgentLink, kind protocol.RoundKind,
	job string, minN, dim int, d Deadlines, start func(cfg []byte) protocol.Message) ([]uint32, int, error) {
	trainBy, dl := deadlines(e.cfg.Now(), d)
	invited := time.Now()
	joined := e.invite(ctx, r.owner, links, &protocol.RoundInvite{RoundID: r.id, Job: job, Kind: kind, Deadlines: dl})
	rec.Stages = append(rec.Stages, StageRecord{Name: "invite", Expected: len(links), Survivors: len(joined), Dropped: len(links) - len(joined), Duration: time.Since(invited)})
	for _, l := range joined {
		rec.Participants = append(rec.Participants, l.AgentID())
	}
	if len(joined) < minN {
		return nil, 0, fmt.Errorf("%w: %d agents joined the %s round, need %d", ErrNotEnoughAgents, len(joined), rec.Kind, minN)
	}
	ids, parts := secaggIDs(joined)
	r.ids = ids
	cfg := &secagg.Config{
		RoundID:      []byte(fmt.Sprintf("%s/round/%d", e.clusterName(), r.id)),
		Participants: parts, Dim: dim,
	}
	if _, err := rand.Read(cfg.GraphSeed[:]); err != nil {
		return nil, 0, err
	}
	cfgBytes, err := cfg.MarshalBinary()
	if err != nil {
		return nil, 0, err
	}
	msg := start(cfgBytes)
	send := func() { e.broadcast(ctx, joined, func(AgentLink) protocol.Message { return msg }) }
	res, err := e.runSecAgg(ctx, r, rec, cfg, send, trainBy.Add(time.Duration(d.Stage)), time.Duration(d.Stage))
	if err != nil {
		return nil, 0, err
	}
	return res.Sum, len(res.Survivors), nil
}

// mustHex decodes a hex hash recorded by this package (always valid).
func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}
