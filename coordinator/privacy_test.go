package coordinator

import (
	"math"
	"testing"
	"time"
)

// TestEngineAdaptiveClipping runs DP jobs with adaptive clipping over the
// real secure aggregation: a clip far below every update norm grows round
// after round, one far above shrinks, each round starting from the clip
// the previous round published, and the privacy account is charged.
func TestEngineAdaptiveClipping(t *testing.T) {
	for _, tc := range []struct {
		name string
		clip float64
		grow bool
	}{{"too small", 1e-4, true}, {"too large", 1e3, false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newEngineHarness(t, 6, 100)
			startJob(t, h, JobSpec{
				Model: "logreg", Rounds: 3, Fraction: 1, MinClients: 4, Seed: 7,
				Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
				SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 20},
				DP:       DPSpec{Enabled: true, Clip: tc.clip, NoiseMultiplier: 0.3, Adaptive: true},
				Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
			})
			h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
			var rounds []RoundRecord
			var job JobRecord
			h.fsm.Read(func(s *State) {
				for _, id := range sortedKeys(s.Rounds) {
					rounds = append(rounds, *s.Rounds[id])
				}
				job = *s.Jobs["job"]
			})
			if len(rounds) != 3 {
				t.Fatalf("%d rounds", len(rounds))
			}
			for i, r := range rounds {
				c, next := r.Metrics["clip_norm"], r.Metrics["next_clip_norm"]
				if r.State != RoundCommitted || !(c > 0) || !(next > 0) {
					t.Fatalf("round %d: %s %s metrics %v", i+1, r.State, r.Error, r.Metrics)
				}
				if (tc.grow && !(next > c)) || (!tc.grow && !(next < c)) {
					t.Fatalf("round %d: clip %v -> %v, want it to grow: %v", i+1, c, next, tc.grow)
				}
				if i > 0 && c != rounds[i-1].Metrics["next_clip_norm"] {
					t.Fatalf("round %d ran with clip %v, the previous round published %v", i+1, c, rounds[i-1].Metrics["next_clip_norm"])
				}
				if _, ok := r.Metrics["train_loss"]; ok {
					t.Fatalf("round %d reports a training loss the DP noise does not cover", i+1)
				}
			}
			t.Logf("clip per round: %.4g -> %.4g -> %.4g -> %.4g", rounds[0].Metrics["clip_norm"], rounds[1].Metrics["clip_norm"],
				rounds[2].Metrics["clip_norm"], rounds[2].Metrics["next_clip_norm"])
			if !tc.grow && rounds[0].Metrics["clip_norm"] >= tc.clip {
				t.Fatalf("initial clip %v not bounded by the secure sum's range", rounds[0].Metrics["clip_norm"])
			}
			if job.Privacy == nil || job.Privacy.Rounds != 3 || !(job.Privacy.Epsilon > 0) ||
				math.Abs(job.Privacy.ClipNorm-rounds[2].Metrics["next_clip_norm"]) > 0 || len(job.Privacy.Clip) == 0 {
				t.Fatalf("privacy account %+v", job.Privacy)
			}
		})
	}
}

func TestJobAdaptiveNeedsSecAggAndNoise(t *testing.T) {
	for _, j := range []JobSpec{
		{Model: "2nn", DP: DPSpec{Enabled: true, NoiseMultiplier: 1, Adaptive: true}},
		{Model: "2nn", SecAgg: SecAggSpec{Enabled: true}, DP: DPSpec{Enabled: true, Adaptive: true}},
		{Model: "2nn", SecAgg: SecAggSpec{Enabled: true}, DP: DPSpec{Enabled: true, NoiseMultiplier: 1, Adaptive: true, TargetQuantile: 1.5}},
		{Model: "2nn", SecAgg: SecAggSpec{Enabled: true}, DP: DPSpec{Enabled: true, NoiseMultiplier: 1, Adaptive: true, BitNoise: 0.4}},
	} {
		if err := j.Normalize(); err == nil {
			t.Errorf("accepted %+v", j.DP)
		}
	}
	ok := JobSpec{Model: "2nn", SecAgg: SecAggSpec{Enabled: true}, DP: DPSpec{Enabled: true, NoiseMultiplier: 1, Adaptive: true}}
	if err := ok.Normalize(); err != nil || ok.DP.TargetQuantile != 0.5 {
		t.Fatalf("%v %+v", err, ok.DP)
	}
}
