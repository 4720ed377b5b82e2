package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// versioned is implemented by agent links that know the protocol version
// their session runs (the QUIC links do; in-memory test twins speak the
// current version).
type versioned interface{ Version() uint32 }

// speaks reports whether link l can take part in a round that needs
// protocol version v.
func speaks(l AgentLink, v uint32) bool {
	vl, ok := l.(versioned)
	return !ok || vl.Version() >= v
}

// standardizedSpec returns the job's model spec with a standardization
// layer in front, built from per-feature statistics of the eligible
// agents' training data that a statistics round sums under secure
// aggregation: the coordinator learns the federation's count, sum and sum
// of squares of each feature, never one host's.
func (e *Engine) standardizedSpec(ctx context.Context, job *JobRecord, spec tensor.Spec) (tensor.Spec, error) {
	features := 1
	for _, d := range spec.Input {
		features *= d
	}
	stats, err := e.statsRound(ctx, job, features)
	if err != nil {
		return spec, err
	}
	st := data.NewStandardizer(stats)
	out, err := spec.Standardized(st.Mean, st.InvStd)
	if err != nil {
		return spec, fmt.Errorf("coordinator: standardizing job %s: %w", job.ID, err)
	}
	return out, nil
}

// statsRound runs a statistics round among every eligible agent of the job
// and returns the summed statistics of their training data.
func (e *Engine) statsRound(ctx context.Context, job *JobRecord, features int) (*data.Stats, error) {
	spec := job.Spec
	minN := max(spec.MinClients, EvalMinAgents)
	var links []AgentLink
	for _, l := range e.eligible(spec.Selector, nil) {
		if speaks(l, 2) && len(links) < protocol.FixedMaxSummands {
			links = append(links, l)
		}
	}
	if len(links) < minN {
		return nil, fmt.Errorf("%w: %d of %d for the statistics round of job %s", ErrNotEnoughAgents, len(links), minN, job.ID)
	}
	start := e.cfg.Now()
	rec := RoundRecord{Job: job.ID, Kind: RoundStats, Leader: e.rep.nodeID(), Term: e.rep.term(), StartedAt: start}
	id, err := e.rep.apply(ctx, cmdRoundStart, rec, nil)
	if err != nil {
		return nil, err
	}
	rec.ID = id.(uint64)
	r := &activeRound{id: rec.ID, owner: job.ID}
	e.setRound(r)
	sum, n, err := e.secureSumRound(ctx, r, &rec, links, protocol.RoundStats, job.ID, minN, protocol.FixedLen(3*features), spec.Deadline,
		func(cfg []byte) protocol.Message {
			return &protocol.StatsRequest{RoundID: r.id, Features: uint32(features), SecAgg: cfg}
		})
	e.clearRound(r, ErrRoundFinished)
	rec.BytesIn, rec.BytesOut = r.bytesIn.Load(), r.bytesOut.Load()
	rec.EndedAt = e.cfg.Now()
	if err != nil {
		return nil, e.endRound(ctx, &rec, err)
	}
	var stats *data.Stats
	err = r.timed(func() error {
		v, err := protocol.DecodeFixed(sum)
		if err != nil {
			return err
		}
		stats, err = data.StatsFromVector(v)
		return err
	})
	if err != nil {
		return nil, e.endRound(ctx, &rec, fmt.Errorf("statistics sum: %w", err))
	}
	examples := 0.0
	for _, c := range stats.Count {
		examples = math.Max(examples, c)
	}
	if examples == 0 {
		return nil, e.endRound(ctx, &rec, errors.New("the agents hold no training examples"))
	}
	rec.State = RoundCommitted
	rec.Metrics = map[string]float64{
		"examples": examples, "features": float64(features), "survivors": float64(n),
		"seconds": rec.EndedAt.Sub(start).Seconds(), "coordinator_seconds": time.Duration(r.busy.Load()).Seconds(),
	}
	if _, err := e.rep.apply(ctx, cmdRoundEnd, rec, nil); err != nil {
		return nil, err
	}
	e.met.roundEnded(&rec)
	e.log.Info("statistics round committed", "job", job.ID, "round", rec.ID, "survivors", n, "examples", examples, "features", features)
	return stats, nil
}
