package sim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// pollEvery is how often the simulator reads the job's rounds.
const pollEvery = 200 * time.Millisecond

// RoundLine is one committed training round as the simulator saw it. The
// fields up to Epsilon depend only on the seed when every agent takes
// part in every round; bytes and times are measurements.
type RoundLine struct {
	Round        int     // the job's round number, from 1
	Model        uint64  // the version it committed
	Participants int     // agents whose update is in the sum
	TestAccuracy float64 // of the committed model on the test set
	TestLoss     float64 // mean cross-entropy on the test set
	TrainLoss    float64 // the agents' mean training loss (0 under DP noise)
	Epsilon      float64 // the job's cumulative ε after the round (0 without DP)
	BytesIn      int64   // received by the coordinator in the round
	BytesOut     int64   // sent by the coordinator in the round
	Seconds      float64 // the round's wall time
	CoordSeconds float64 // the round's coordinator busy time
	ClipNorm     float64 // the L2 clip the agents applied (0 without DP)
}

// JobResult is one job of a run.
type JobResult struct {
	ID   string
	Spec api.JobSpec
	// Rounds has one line per committed training round.
	Rounds []RoundLine
}

// Last returns the last round's line (zero without rounds).
func (j JobResult) Last() RoundLine {
	if len(j.Rounds) == 0 {
		return RoundLine{}
	}
	return j.Rounds[len(j.Rounds)-1]
}

// runJob starts the job and follows it to its end, a line per round.
func runJob(ctx context.Context, f *fleet, admin *api.Client, test *tensor.Dataset, spec api.JobSpec) (JobResult, error) {
	o := f.opts
	res := JobResult{Spec: spec}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	job, err := admin.Jobs().Start(sctx, spec)
	cancel()
	if err != nil {
		return res, fmt.Errorf("sim.runJob: %w", err)
	}
	res.ID = job.ID
	fmt.Fprintf(o.Progress, "job %s: %d rounds of %s\n", job.ID, spec.Rounds, jobModel(spec))
	fmt.Fprintf(o.Progress, "%5s %7s %6s %9s %9s %9s %8s %8s %10s %10s %8s %8s\n",
		"round", "model", "agents", "test_acc", "test_loss", "train_loss", "epsilon", "clip", "bytes_in", "bytes_out", "seconds", "coord_s")
	seen := map[uint64]bool{}
	var after uint64 // the job's rounds up to this ID are read
	last := time.Now()
	ended := false // the job ended: one more read of its rounds, then stop
	for {
		rounds, state, err := jobRounds(ctx, admin, job.ID, &after)
		if err != nil {
			f.log.Warn("sim: reading the job's rounds", "err", err)
		}
		for _, r := range rounds {
			if seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			line, err := measure(ctx, f, r, test)
			if err != nil {
				return res, err
			}
			res.Rounds = append(res.Rounds, line)
			last = time.Now()
			fmt.Fprintf(o.Progress, "%5d %7d %6d %9.4f %9.4f %9.4f %8.3f %8.4g %10d %10d %8.2f %8.2f\n",
				line.Round, line.Model, line.Participants, line.TestAccuracy, line.TestLoss, line.TrainLoss, line.Epsilon, line.ClipNorm,
				line.BytesIn, line.BytesOut, line.Seconds, line.CoordSeconds)
		}
		if len(res.Rounds) >= spec.Rounds {
			return res, nil
		}
		if ended {
			return res, fmt.Errorf("sim.runJob: job %s ended %s after %d committed rounds", job.ID, state, len(res.Rounds))
		}
		ended = state != "" && state != api.JobRunning && err == nil
		if time.Since(last) > o.RoundTimeout {
			return res, fmt.Errorf("sim.runJob: no round committed within %v (%d of %d agents connected)", o.RoundTimeout, f.connected.Load(), o.Agents)
		}
		if !wait.Sleep(ctx, pollEvery) {
			return res, fmt.Errorf("sim.runJob: %w", ctx.Err())
		}
	}
}

// jobRounds returns the job's committed training rounds after *after in
// order, and its state. It moves *after past the rounds that ended, up to
// the first one still running, so each poll reads only what is new (a
// 100-round job of 10,000 agents' whole list is megabytes).
func jobRounds(ctx context.Context, admin *api.Client, job string, after *uint64) ([]api.Round, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	all, err := admin.Rounds().List(ctx, api.RoundsRequest{Job: job, After: *after}, api.QueryOptions{})
	if err != nil {
		return nil, "", err
	}
	*after = api.EndedThrough(all, *after)
	var out []api.Round
	for _, r := range all {
		if r.Kind == api.RoundTrain && r.State == api.RoundCommitted {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b api.Round) int { return a.Number - b.Number })
	j, err := admin.Jobs().Status(ctx, job, api.QueryOptions{})
	if err != nil {
		return out, "", err
	}
	return out, j.State, nil
}

// measure evaluates the round's committed model on the test set.
func measure(ctx context.Context, f *fleet, r api.Round, test *tensor.Dataset) (RoundLine, error) {
	line := RoundLine{
		Round: r.Number, Model: r.ModelOut, Participants: int(r.Metrics["survivors"]),
		TrainLoss: r.Metrics["train_loss"], Epsilon: r.Metrics["epsilon"],
		BytesIn: r.BytesIn, BytesOut: r.BytesOut, Seconds: r.EndedAt.Sub(r.StartedAt).Seconds(),
		CoordSeconds: r.Metrics["coordinator_seconds"], ClipNorm: r.Metrics["clip_norm"],
	}
	if line.Participants == 0 {
		line.Participants = r.ParticipantCount
	}
	var m *tensor.Model
	err := wait.Until(ctx, f.opts.RoundTimeout, func() bool {
		s := f.session()
		if s == nil {
			return false
		}
		var err error
		m, err = f.models.get(ctx, s, r.ModelOut, protocol.Hash{})
		if err != nil {
			f.log.Warn("sim: downloading the committed model", "version", r.ModelOut, "err", err)
		}
		return err == nil
	})
	if err != nil {
		return line, fmt.Errorf("sim.measure: model %d: %w", r.ModelOut, err)
	}
	met, err := tensor.Evaluate(m, test)
	if err != nil {
		return line, fmt.Errorf("sim.measure: %w", err)
	}
	line.TestAccuracy = met.Accuracy()
	if met.Total > 0 {
		line.TestLoss = met.LossSum / float64(met.Total)
	}
	return line, nil
}

// session returns a connected agent's session.
func (f *fleet) session() *protocol.Session {
	for _, a := range f.agents {
		if s := a.sess.Load(); s != nil && a.connected.Load() {
			return s
		}
	}
	return nil
}

func jobModel(s api.JobSpec) string {
	if s.Model != "" {
		return s.Model
	}
	return "a custom spec"
}
