package coordinator

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/internal/testutil"
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

// TestJobDPNeedsSecAgg: agents add DP noise inside the secure sum, so a
// DP job without secure aggregation (no noise, no clip, ε charged) is
// refused.
func TestJobDPNeedsSecAgg(t *testing.T) {
	plain := JobSpec{Model: "2nn", DP: DPSpec{Enabled: true, NoiseMultiplier: 1}}
	if err := plain.Normalize(); !errors.Is(err, ErrInvalidJob) {
		t.Fatalf("DP without secure aggregation: %v, want ErrInvalidJob", err)
	}
	ok := JobSpec{Model: "2nn", SecAgg: SecAggSpec{Enabled: true}, DP: DPSpec{Enabled: true, NoiseMultiplier: 1}}
	if err := ok.Normalize(); err != nil {
		t.Fatal(err)
	}
}

// TestEngineDPRoundsSampleThePlannedFraction: a DP job samples its
// fraction of the connected eligible agents and never more. With 10 of 15
// agents connected (as after a leader change, while agents reconnect) the
// fraction is below min_clients, and the job waits instead of inviting
// min_clients of the few connected agents (q 0.3 instead of 0.2); once
// the fleet is back, every round invites 3 of 15, and the ε the job is
// charged is the accountant's plan: q = 0.2 for the rounds run.
func TestEngineDPRoundsSampleThePlannedFraction(t *testing.T) {
	h := newEngineHarness(t, 15, 30)
	var connected atomic.Int64
	connected.Store(10)
	h.eng = newEngine(discardLogger(), EngineConfig{Idle: 20 * time.Millisecond}, h.fsm, h.rep, func() []AgentLink {
		var out []AgentLink
		for _, a := range h.agents[:connected.Load()] {
			out = append(out, a)
		}
		return out
	}, newEngineMetrics())
	for _, a := range h.agents {
		a.eng = h.eng
	}
	const rounds, z, q = 3, 1.0, 0.2
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: rounds, Fraction: q, MinClients: 3, Seed: 3,
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 20},
		DP:       DPSpec{Enabled: true, Clip: 1, NoiseMultiplier: z},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(10 * time.Second)},
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.eng.run(ctx); close(done) }()
	testutil.WaitFor(t, 10*time.Second, "the job to wait for agents", func() bool { return h.eng.waiting("job/job") != "" })
	var started int
	h.fsm.Read(func(s *State) { started = len(s.Rounds) })
	if started != 0 {
		t.Fatalf("%d rounds started with 10 of 15 agents connected; want none (fraction 0.2 of 10 is below min_clients 3)", started)
	}
	if w := h.eng.waiting("job/job"); !strings.Contains(w, "10 of 15") {
		t.Fatalf("waiting note %q, want it to say 10 of the 15 agents needed", w)
	}
	cancel()
	<-done

	connected.Store(15)
	h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
	var job JobRecord
	h.fsm.Read(func(s *State) {
		job = *s.Jobs["job"]
		for _, id := range sortedKeys(s.Rounds) {
			r := s.Rounds[id]
			if r.State != RoundCommitted || len(r.Participants) != 3 {
				t.Errorf("round %d: %s with %d participants, want committed with 3 (fraction %v of 15)", r.Number, r.State, len(r.Participants), q)
			}
		}
	})
	plan, err := dp.NewAccountant(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Step(q, z, rounds); err != nil {
		t.Fatal(err)
	}
	want, _ := plan.Epsilon(1e-5)
	if job.Privacy == nil || job.Privacy.Rounds != rounds || math.Abs(job.Privacy.Epsilon-want) > 1e-9*want {
		t.Fatalf("privacy account %+v, want ε %v after %d rounds at q %v, z %v", job.Privacy, want, rounds, q, z)
	}
}

// TestEngineDPNoiseCalibratedToMinClients: each agent's share of the DP
// noise is z·C/√min_clients, and the secure sum may not hold fewer
// survivors, so a full round's sum carries z·C as the accountant charges
// (not z·C·√(n/t) for the SecAgg+ threshold t).
func TestEngineDPNoiseCalibratedToMinClients(t *testing.T) {
	h := newEngineHarness(t, 10, 30)
	const z, clip, minN = 1.0, 2.0, 8
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 1, Fraction: 1, MinClients: minN, Seed: 5,
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 20},
		DP:       DPSpec{Enabled: true, Clip: clip, NoiseMultiplier: z},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(10 * time.Second)},
	})
	h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
	want := z * clip / math.Sqrt(minN)
	for _, a := range h.agents {
		a.mu.Lock()
		got := a.dp
		a.mu.Unlock()
		if len(got) != 1 || math.Abs(got[0].NoiseStdDev-want) > 1e-12 || got[0].ClipNorm != clip {
			t.Fatalf("agent %s got DP plans %+v; want one with noise %v (z·C/√%d) and clip %v", a.id, got, want, minN, clip)
		}
	}
}
