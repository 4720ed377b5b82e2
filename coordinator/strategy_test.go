package coordinator

import (
	"errors"
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-5*math.Max(1, math.Abs(b)) }

func TestStrategiesOneStep(t *testing.T) {
	g := 0.5
	tau, b1, b2, lr := 1e-3, 0.9, 0.99, 0.01
	adamV := b2*tau*tau + (1-b2)*g*g
	yogiV := tau*tau - (1-b2)*g*g*math.Copysign(1, tau*tau-g*g)
	tests := []struct {
		spec StrategySpec
		want float64 // w after one step from w=1 with delta g
	}{
		{StrategySpec{Name: "fedavg"}, 1 + g},
		{StrategySpec{Name: "fedavg", ServerLR: 0.5}, 1 + 0.5*g},
		{StrategySpec{Name: "fedprox"}, 1 + g},
		{StrategySpec{Name: "fedavgm", Momentum: 0.9}, 1 + g},
		{StrategySpec{Name: "fedadam"}, 1 + lr*(1-b1)*g/(math.Sqrt(adamV)+tau)},
		{StrategySpec{Name: "fedyogi"}, 1 + lr*(1-b1)*g/(math.Sqrt(yogiV)+tau)},
		{StrategySpec{Name: "fedadagrad"}, 1 + lr*(1-b1)*g/(math.Sqrt(tau*tau+g*g)+tau)},
	}
	for _, tt := range tests {
		t.Run(tt.spec.Name, func(t *testing.T) {
			s, err := NewStrategy(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			w := []float32{1}
			if err := s.Apply(w, []float32{float32(g)}); err != nil {
				t.Fatal(err)
			}
			if !near(float64(w[0]), tt.want) {
				t.Fatalf("w = %v, want %v", w[0], tt.want)
			}
		})
	}
}

func TestMomentumAndStateCarry(t *testing.T) {
	for _, name := range []string{"fedavgm", "fedadam", "fedyogi", "fedadagrad"} {
		t.Run(name, func(t *testing.T) {
			a, _ := NewStrategy(StrategySpec{Name: name})
			wa := []float32{0, 1}
			deltas := [][]float32{{0.1, -0.2}, {0.3, 0.1}, {-0.2, 0.05}}
			_ = a.Apply(wa, deltas[0])
			// A new leader restores the state and continues identically.
			b, _ := NewStrategy(StrategySpec{Name: name})
			if err := b.SetState(a.State()); err != nil {
				t.Fatal(err)
			}
			wb := append([]float32(nil), wa...)
			for _, d := range deltas[1:] {
				_ = a.Apply(wa, d)
				_ = b.Apply(wb, d)
			}
			if wa[0] != wb[0] || wa[1] != wb[1] {
				t.Fatalf("restored strategy diverged: %v vs %v", wa, wb)
			}
			// Without the state it would differ: momentum matters.
			c, _ := NewStrategy(StrategySpec{Name: name})
			wc := []float32{0, 1}
			_ = c.Apply(wc, deltas[0])
			c2, _ := NewStrategy(StrategySpec{Name: name})
			for _, d := range deltas[1:] {
				_ = c2.Apply(wc, d)
			}
			if wc[0] == wa[0] && wc[1] == wa[1] {
				t.Fatal("state carried nothing")
			}
		})
	}
	if _, err := decodeVectors([]byte{2, 0, 0, 0, 9, 9}, 2); !errors.Is(err, ErrStrategy) {
		t.Fatalf("malformed state accepted: %v", err)
	}
}

func TestRobustAggregators(t *testing.T) {
	honest := []Update{
		{Delta: []float32{1.0, -1.0}}, {Delta: []float32{1.1, -0.9}}, {Delta: []float32{0.9, -1.1}},
		{Delta: []float32{1.05, -1.0}}, {Delta: []float32{0.95, -1.0}},
	}
	attack := append(append([]Update(nil), honest...), Update{Delta: []float32{1000, 1000}})
	for _, name := range []string{"median", "trimmedmean", "krum"} {
		t.Run(name, func(t *testing.T) {
			s, err := NewStrategy(StrategySpec{Name: name, Trim: 0.2})
			if err != nil {
				t.Fatal(err)
			}
			r := s.(RobustStrategy)
			d, err := r.Aggregate(attack)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(float64(d[0])-1) > 0.11 || math.Abs(float64(d[1])+1) > 0.11 {
				t.Fatalf("%s let the outlier through: %v", name, d)
			}
		})
	}
	// The plain mean would not resist the attack: the test above means something.
	var mean float64
	for _, u := range attack {
		mean += float64(u.Delta[0])
	}
	if mean/float64(len(attack)) < 100 {
		t.Fatal("attack too weak to test robustness")
	}
	if _, err := krum(honest[:3], 1); !errors.Is(err, ErrStrategy) {
		t.Fatalf("krum with n <= f+2: %v", err)
	}
	med, _ := coordinateMedian([]Update{{Delta: []float32{1}}, {Delta: []float32{3}}})
	if med[0] != 2 {
		t.Fatalf("even median %v", med)
	}
}

func TestJobSpecNormalize(t *testing.T) {
	tests := []struct {
		name string
		spec JobSpec
		ok   bool
	}{
		{"defaults", JobSpec{Model: "2nn"}, true},
		{"no model", JobSpec{}, false},
		{"median with secagg", JobSpec{Model: "2nn", Strategy: StrategySpec{Name: "median"}, SecAgg: SecAggSpec{Enabled: true}}, false},
		{"unknown strategy", JobSpec{Model: "2nn", Strategy: StrategySpec{Name: "fedmagic"}}, false},
		{"bad fraction", JobSpec{Model: "2nn", Fraction: 2}, false},
		{"fedprox by mu", JobSpec{Model: "2nn", Plan: LocalPlan{Mu: 0.01}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Normalize()
			if (err == nil) != tt.ok {
				t.Fatalf("Normalize: %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidJob) {
				t.Fatalf("error not ErrInvalidJob: %v", err)
			}
			if tt.ok && (tt.spec.Rounds != 10 || tt.spec.Plan.BatchSize != 10 || tt.spec.MinClients != 2) {
				t.Fatalf("defaults not filled: %+v", tt.spec)
			}
		})
	}
	s := JobSpec{Model: "2nn", Plan: LocalPlan{Mu: 0.01}}
	_ = s.Normalize()
	if s.Strategy.Name != "fedprox" {
		t.Fatalf("mu > 0 should default to fedprox, got %s", s.Strategy.Name)
	}
}

func TestSpendPrivacyAccumulates(t *testing.T) {
	job := &JobRecord{Spec: JobSpec{Model: "2nn", SecAgg: SecAggSpec{Enabled: true}, DP: DPSpec{Enabled: true, NoiseMultiplier: 1.1, Clip: 1}}}
	if err := job.Spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	p1, err := spendPrivacy(job, 0.1)
	if err != nil || p1 == nil || p1.Rounds != 1 || !(p1.Epsilon > 0) {
		t.Fatalf("first round: %+v %v", p1, err)
	}
	job.Privacy = p1
	p2, err := spendPrivacy(job, 0.1)
	if err != nil || p2.Rounds != 2 || !(p2.Epsilon > p1.Epsilon) {
		t.Fatalf("epsilon must grow with rounds: %v then %v (%v)", p1.Epsilon, p2.Epsilon, err)
	}
	// Without amplification (q = 1) a round costs more than with q = 0.1.
	job.Privacy = nil
	full, _ := spendPrivacy(job, 1)
	if !(full.Epsilon > p1.Epsilon) {
		t.Fatalf("q=1 epsilon %v not above q=0.1 epsilon %v", full.Epsilon, p1.Epsilon)
	}
	off := &JobRecord{Spec: JobSpec{Model: "2nn"}}
	if p, err := spendPrivacy(off, 0.1); p != nil || err != nil {
		t.Fatalf("DP off still charged: %+v %v", p, err)
	}
}
