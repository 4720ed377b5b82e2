package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/inproc"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/tensor"
)

// trainJob starts a job, prints its rounds as they commit and returns its
// final model version once it is done.
func trainJob(ctx context.Context, adm *api.Client, spec api.JobSpec, test *tensor.Dataset, out io.Writer) (uint64, error) {
	job, err := adm.Jobs().Start(ctx, spec)
	if err != nil {
		return 0, fmt.Errorf("jobs.start %s: %w", spec.Name, err)
	}
	from := "fresh weights"
	if spec.InitModel != 0 {
		from = fmt.Sprintf("model v%d", spec.InitModel)
	}
	server := ""
	if spec.Strategy.ServerLR != 0 && spec.Strategy.ServerLR != 1 {
		server = fmt.Sprintf(", server lr %g", spec.Strategy.ServerLR)
	}
	fmt.Fprintf(out, "job %s: %s from %s, %d round(s), all agents, E=%d B=%d lr=%g%s, SecAgg+ on\n",
		job.ID, spec.Model, from, spec.Rounds, spec.Plan.Epochs, spec.Plan.BatchSize, spec.Plan.LR, server)
	seen := map[uint64]bool{}
	for {
		rounds, err := adm.Rounds().List(ctx, api.RoundsRequest{Job: job.ID}, api.QueryOptions{})
		if err != nil {
			return 0, err
		}
		sort.Slice(rounds, func(a, b int) bool { return rounds[a].ID < rounds[b].ID })
		for _, r := range rounds {
			if seen[r.ID] || r.State == api.RoundRunning {
				continue
			}
			seen[r.ID] = true
			if r.State != api.RoundCommitted {
				fmt.Fprintf(out, "  round %d %s: %s\n", r.Number, r.State, r.Error)
				continue
			}
			met, err := adm.EvaluateModel(ctx, r.ModelOut, test)
			if err != nil {
				return 0, err
			}
			acc := met.Accuracy()
			fmt.Fprintf(out, "  round %d → model v%d: %d agents, %d in the secure sum, %.1f MB in, %.1fs, train loss %.3f, test accuracy %.2f%%\n",
				r.Number, r.ModelOut, r.ParticipantCount, int(r.Metrics["survivors"]), float64(r.BytesIn)/1e6,
				r.EndedAt.Sub(r.StartedAt).Seconds(), r.Metrics["train_loss"], 100*acc)
		}
		if job, err = adm.Jobs().Status(ctx, job.ID, api.QueryOptions{}); err != nil {
			return 0, err
		}
		switch job.State {
		case api.JobDone:
			if len(seen) == len(rounds) {
				return job.Model, nil
			}
		case api.JobFailed, api.JobStopped:
			return 0, fmt.Errorf("job %s %s: %s", job.ID, job.State, job.Error)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rollOut starts a rollout of model through the canary cohort and then the
// whole fleet, with the given gate, and waits for the gate to promote or
// roll it back; no operator action is taken.
func rollOut(ctx context.Context, adm *api.Client, model uint64, gate string, out io.Writer) (*api.Rollout, error) {
	cohorts, err := api.ParseCohorts("canary[tier=canary]=100%,all=100%")
	if err != nil {
		return nil, err
	}
	ro, err := adm.Rollouts().Start(ctx, api.RolloutRequest{Model: model, Cohorts: cohorts, Gate: gate})
	if err != nil {
		return nil, fmt.Errorf("rollout.start: %w", err)
	}
	fmt.Fprintf(out, "rollout %s: candidate v%d, baseline v%d (the stable model); cohorts canary (tier=canary) then all; gate %q\n",
		ro.ID, ro.Model, ro.Baseline, ro.Gate)
	printed := 0
	var final api.Rollout
	err = wait.Until(ctx, 3*time.Minute, func() bool {
		all, err := adm.Rollouts().Status(ctx, api.QueryOptions{})
		if err != nil {
			return false
		}
		for _, r := range all {
			if r.ID == ro.ID {
				final = r
			}
		}
		for ; printed < len(final.Decisions); printed++ {
			printDecision(out, &final, final.Decisions[printed])
		}
		return final.State == api.RolloutPromoted || final.State == api.RolloutRolledBack
	})
	if err != nil {
		return &final, fmt.Errorf("rollout %s did not finish (state %s): %w", ro.ID, final.State, err)
	}
	fmt.Fprintf(out, "rollout %s: %s\n", final.ID, final.State)
	return &final, nil
}

func printDecision(out io.Writer, ro *api.Rollout, d api.Decision) {
	fmt.Fprintf(out, "  decision at %s: %s by %s\n", ro.StageName(d.Stage), d.Action, d.By)
	if e := d.Evidence; e != nil {
		fmt.Fprintf(out, "    evidence (secure sums over %d agents' held-out data): candidate %.0f/%.0f correct = %.2f%%, baseline %.0f/%.0f = %.2f%%; mean loss %.3f vs %.3f\n",
			e.Agents, e.CandidateCorrect, e.CandidateTotal, e.CandidateAccuracy, e.BaselineCorrect, e.BaselineTotal, e.BaselineAccuracy,
			e.CandidateLossSum/max(e.CandidateTotal, 1), e.BaselineLossSum/max(e.BaselineTotal, 1))
	}
	if d.Reason != "" {
		fmt.Fprintf(out, "    reason: %s\n", d.Reason)
	}
}

// waitServing waits until every agent serves version and prints the fleet.
func waitServing(ctx context.Context, c *inproc.Cluster, version uint64, out io.Writer) error {
	err := wait.Until(ctx, 60*time.Second, func() bool {
		for _, a := range c.Fleet {
			if a.Daemon().ModelVersion() != version {
				return false
			}
		}
		return true
	})
	counts := map[uint64]int{}
	for _, a := range c.Fleet {
		counts[a.Daemon().ModelVersion()]++
	}
	fmt.Fprintf(out, "  fleet now serves:")
	for _, v := range sortedVersions(counts) {
		fmt.Fprintf(out, " v%d on %d agent(s)", v, counts[v])
	}
	fmt.Fprintln(out)
	if err != nil {
		return fmt.Errorf("the fleet did not converge on v%d: %w", version, err)
	}
	return nil
}

func sortedVersions(m map[uint64]int) []uint64 {
	var out []uint64
	for v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}
