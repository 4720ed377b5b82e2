package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// RoundPrep is the kind of a round that sums one phase of a job's data
// preparation (data.columns).
const RoundPrep = api.RoundPrep

// prepVersion is the protocol version an agent needs to take part in a
// preparation round.
const prepVersion = 4

// DataQualityRecord is what a job's cleaning rules did to the
// federation's training data: the counts of the preparation round that
// applied them, summed under secure aggregation.
type DataQualityRecord struct {
	Round   uint64 `json:"round"`
	Agents  int    `json:"agents"`
	Rows    int    `json:"rows"`
	Kept    int    `json:"kept"`
	Dropped int    `json:"dropped"`
	Filled  int    `json:"filled"`
	Clipped int    `json:"clipped"`
	Unknown int    `json:"unknown"`
}

// qualityFromRound reads the data quality a committed apply-phase
// preparation round carries in its metrics (nil for other rounds).
func qualityFromRound(r *RoundRecord) *DataQualityRecord {
	m := r.Metrics
	if r.Kind != RoundPrep || r.State != RoundCommitted || m["phase"] != data.PrepApply {
		return nil
	}
	return &DataQualityRecord{
		Round: r.ID, Agents: int(m["survivors"]), Rows: int(m["rows"]), Kept: int(m["kept"]),
		Dropped: int(m["dropped"]), Filled: int(m["filled"]), Clipped: int(m["clipped"]), Unknown: int(m["unknown"]),
	}
}

// errPrepData marks a preparation that failed on the federation's data
// (a column without any value to take a mean of, no candidate category
// held): retrying cannot help, so the job fails.
var errPrepData = errors.New("data preparation")

// preparedSpec runs the preparation rounds of a job with data.columns
// and returns spec with the resolved input columns (and their width as
// input), standardized on the cleaned data when the job asks for it:
//
//  1. profile: per column the present values' count, sum and sum of
//     squares, the missing cells, the rows holding each candidate
//     category; means and category lists follow;
//  2. histogram (only if a column fills with its median or clips): per
//     such column a histogram over its declared range, or the profile's
//     mean ± 4σ; medians and clip bounds follow, exact to one bin;
//  3. apply: the agents clean with the resolved columns and sum what it
//     did (and the cleaned inputs' moments for standardization).
//
// Every phase is a secure sum: the coordinator never sees one host's figure.
func (e *Engine) preparedSpec(ctx context.Context, job *JobRecord, spec tensor.Spec) (tensor.Spec, error) {
	rules := job.Spec.Data.Columns
	v, err := e.prepRound(ctx, job, &data.PrepPlan{Phase: data.PrepProfile, Rules: rules}, nil)
	if err != nil {
		return spec, err
	}
	prof, err := data.ParseProfile(rules, v)
	if err != nil {
		return spec, err
	}
	var ranges [][2]float64
	var hist []float64
	for j := range rules {
		if rules[j].NeedsHistogram() {
			ranges = append(ranges, prof.HistogramRange(rules, j))
		}
	}
	if len(ranges) > 0 {
		if hist, err = e.prepRound(ctx, job, &data.PrepPlan{Phase: data.PrepHistogram, Rules: rules, Ranges: ranges}, nil); err != nil {
			return spec, err
		}
	}
	cols, err := data.Resolve(rules, prof, ranges, hist)
	if err != nil {
		return spec, e.failJob(ctx, job, fmt.Errorf("%w: %v", errPrepData, err))
	}
	apply := &data.PrepPlan{Phase: data.PrepApply, Columns: cols, Moments: job.Spec.Data.Standardize}
	var q *data.Quality
	if _, err = e.prepRound(ctx, job, apply, func(sum []float64, m map[string]float64) error {
		if q, err = data.ParseQuality(apply, sum); err != nil {
			return err
		}
		r := q.Report
		m["rows"], m["kept"], m["dropped"] = float64(r.Rows), float64(r.Kept), float64(r.Dropped)
		m["filled"], m["clipped"], m["unknown"] = float64(r.Filled), float64(r.Clipped), float64(r.Unknown)
		if r.Kept == 0 {
			return fmt.Errorf("%w: the job's rules leave no training row", errPrepData)
		}
		return nil
	}); err != nil {
		if errors.Is(err, errPrepData) {
			return spec, e.failJob(ctx, job, err)
		}
		return spec, err
	}
	out := spec
	out.Input = []int{tensor.ColumnsWidth(cols)}
	out.Columns = cols
	if err := out.Validate(); err != nil {
		return spec, e.failJob(ctx, job, fmt.Errorf("%w: the job's spec with its %d input columns: %v", ErrInvalidJob, out.Input[0], err))
	}
	if q.Moments != nil {
		st := data.NewStandardizer(q.Moments)
		if out, err = out.Standardized(st.Mean, st.InvStd); err != nil {
			return spec, fmt.Errorf("coordinator: standardizing job %s: %w", job.ID, err)
		}
	}
	return out, nil
}

// prepRound runs one preparation phase among every eligible agent of the
// job and returns the federation's summed vector. check, if set, reads
// the sum into the round's metrics before it commits; its error fails
// the round.
func (e *Engine) prepRound(ctx context.Context, job *JobRecord, plan *data.PrepPlan, check func(sum []float64, metrics map[string]float64) error) ([]float64, error) {
	spec := job.Spec
	planBytes, err := plan.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(planBytes) > protocol.MaxPrepPlan {
		return nil, e.failJob(ctx, job, fmt.Errorf("%w: the data preparation plan is %d bytes, more than %d", ErrInvalidJob, len(planBytes), protocol.MaxPrepPlan))
	}
	minN := max(spec.MinClients, EvalMinAgents)
	var links []AgentLink
	for _, l := range e.eligible(spec.Selector, nil) {
		if speaks(l, prepVersion) && len(links) < protocol.FixedMaxSummands {
			links = append(links, l)
		}
	}
	if len(links) < minN {
		return nil, fmt.Errorf("%w: %d of %d for the data preparation round of job %s", ErrNotEnoughAgents, len(links), minN, job.ID)
	}
	start := e.cfg.Now()
	rec := RoundRecord{Job: job.ID, Kind: RoundPrep, Leader: e.rep.nodeID(), Term: e.rep.term(), StartedAt: start}
	id, err := e.rep.apply(ctx, cmdRoundStart, rec, nil)
	if err != nil {
		return nil, err
	}
	rec.ID = id.(uint64)
	r := &activeRound{id: rec.ID, owner: job.ID}
	e.setRound(r)
	sum, n, err := e.secureSumRound(ctx, r, &rec, links, protocol.RoundPrep, job.ID, minN, protocol.FixedLen(plan.Len()), spec.Deadline,
		func(cfg []byte) protocol.Message {
			return &protocol.PrepRequest{RoundID: r.id, Phase: uint8(plan.Phase), Plan: planBytes, SecAgg: cfg}
		})
	e.clearRound(r, ErrRoundFinished)
	rec.BytesIn, rec.BytesOut = r.bytesIn.Load(), r.bytesOut.Load()
	rec.EndedAt = e.cfg.Now()
	if err != nil {
		return nil, e.endRound(ctx, &rec, err)
	}
	var v []float64
	rec.Metrics = map[string]float64{
		"phase": float64(plan.Phase), "survivors": float64(n),
		"seconds": rec.EndedAt.Sub(start).Seconds(), "coordinator_seconds": time.Duration(r.busy.Load()).Seconds(),
	}
	err = r.timed(func() error {
		if v, err = protocol.DecodeFixed(sum); err != nil {
			return err
		}
		if check != nil {
			return check(v, rec.Metrics)
		}
		return nil
	})
	if err != nil {
		return nil, e.endRound(ctx, &rec, fmt.Errorf("data preparation sum: %w", err))
	}
	rec.State = RoundCommitted
	if _, err := e.rep.apply(ctx, cmdRoundEnd, rec, nil); err != nil {
		return nil, err
	}
	e.met.roundEnded(&rec)
	e.log.Info("data preparation round committed", "job", job.ID, "round", rec.ID, "phase", plan.Phase, "survivors", n)
	return v, nil
}
