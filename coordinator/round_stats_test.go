package coordinator

import (
	"math"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// TestEngineStandardizeJob runs a job that asks for federated
// standardization: a statistics round (with one agent vanishing at masked
// input) comes first, and the job's first model carries a standardize
// layer built from exactly the survivors' pooled statistics.
func TestEngineStandardizeJob(t *testing.T) {
	h := newEngineHarness(t, 6, 200)
	h.agents[5].dropAt, h.agents[5].dropRound = protocol.TypeMaskedInput, 1
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 2, Fraction: 1, MinClients: 4, Seed: 3,
		Data:     DataSchema{Kind: "mnist", Standardize: true},
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.05},
		SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 16},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	})
	h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })

	var stats *RoundRecord
	var v1 uint64
	h.fsm.Read(func(s *State) {
		stats = s.Rounds[1]
		for _, v := range sortedKeys(s.Models) {
			if s.Models[v].Job == "job" {
				v1 = v
				break
			}
		}
	})
	if stats == nil || stats.Kind != RoundStats || stats.State != RoundCommitted {
		t.Fatalf("first round %+v", stats)
	}
	if stats.Metrics["survivors"] != 5 || stats.Metrics["features"] != 784 {
		t.Fatalf("statistics round metrics %v", stats.Metrics)
	}
	pooled := data.NewStats(784)
	for _, a := range h.agents[:5] {
		if err := pooled.Add(data.ComputeStats(a.train)); err != nil {
			t.Fatal(err)
		}
	}
	if stats.Metrics["examples"] != pooled.Count[0] {
		t.Fatalf("examples %v, want %v", stats.Metrics["examples"], pooled.Count[0])
	}
	m, _, err := h.eng.loadModel(v1)
	if err != nil {
		t.Fatal(err)
	}
	first := m.Spec.Layers[0]
	if first.Type != tensor.LayerStandardize {
		t.Fatalf("model %d begins with %q", v1, first.Type)
	}
	want := data.NewStandardizer(pooled)
	for j := range 784 {
		if math.Abs(float64(first.Shift[j]-want.Mean[j])) > 1e-6 || math.Abs(float64(first.Scale[j]-want.InvStd[j])) > 1e-3*float64(want.InvStd[j]) {
			t.Fatalf("feature %d: shift %v scale %v, want %v %v", j, first.Shift[j], first.Scale[j], want.Mean[j], want.InvStd[j])
		}
	}
	// Training went on from the standardized model and learned.
	var last uint64
	h.fsm.Read(func(s *State) { last = s.Jobs["job"].Model })
	if acc := h.accuracy(last); acc < 0.7 {
		t.Fatalf("accuracy %.3f after two standardized rounds", acc)
	}
}

func TestJobStandardizeWithInitModel(t *testing.T) {
	j := JobSpec{InitModel: 4, Data: DataSchema{Standardize: true}}
	if err := j.Normalize(); err == nil {
		t.Fatal("standardize with init_model accepted")
	}
}
