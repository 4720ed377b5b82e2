package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// explainRound is the simulated agent's side of an explanation round, as
// the agent computes it (agent.explainVector).
func (a *simAgent) explainRound(r *protocol.ExplainRequest) {
	m, err := a.model(r.ModelVersion)
	if err != nil {
		return
	}
	sums, n, err := tensor.AttributionSums(m, a.heldout, int(r.MaxExamples), int(r.Steps))
	if err != nil {
		return
	}
	x, err := protocol.EncodeFixed(append(sums, float64(n)))
	if err != nil {
		return
	}
	var cfg secagg.Config
	if err := cfg.UnmarshalBinary(r.SecAgg); err != nil {
		return
	}
	a.runSecAgg(r.RoundID, &cfg, x)
}

// TestEngineExplainModel trains a model, then runs an explanation round
// for it (one agent vanishing at masked input): the stored explanation is
// the survivors' mean absolute attribution per feature, as if their
// held-out data had been pooled, and the round is recorded.
func TestEngineExplainModel(t *testing.T) {
	h := newEngineHarness(t, 5, 100)
	startJob(t, h, JobSpec{
		Model: "logreg", Rounds: 1, Fraction: 1, MinClients: 3, Seed: 3,
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.05},
		SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 16},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	})
	h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
	var version uint64
	h.fsm.Read(func(s *State) { version = s.Jobs["job"].Model })
	h.agents[4].dropAt, h.agents[4].dropRound = protocol.TypeMaskedInput, 0

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { h.eng.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	req := api.ExplainRequest{Version: version, Steps: 8, MaxExamples: 12,
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)}}
	if err := req.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.requestExplain(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.requestExplain(ctx, api.ExplainRequest{Version: 999, Steps: 8, MaxExamples: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("explaining a version that does not exist: %v", err)
	}

	var x *ExplanationRecord
	var round *RoundRecord
	h.fsm.Read(func(s *State) {
		x = s.Models[version].Explanation
		if x != nil {
			round = s.Rounds[x.Round]
		}
	})
	if x == nil || round == nil {
		t.Fatal("no explanation stored")
	}
	if round.Kind != RoundExplain || round.State != RoundCommitted || round.ModelIn != version || round.Metrics["survivors"] != 4 {
		t.Fatalf("explanation round %+v", round)
	}
	m, _, err := h.eng.loadModel(version)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 784)
	examples := 0
	for _, a := range h.agents[:4] {
		s, n, err := tensor.AttributionSums(m, a.heldout, 12, 8)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range s {
			want[i] += v
		}
		examples += n
	}
	if x.Examples != examples || examples != 4*12 || x.Agents != 4 || x.Steps != 8 || x.MaxExamples != 12 || len(x.Shape) != 3 {
		t.Fatalf("explanation of %d examples from %d agents (steps %d, max %d, shape %v), want %d from 4", x.Examples, x.Agents, x.Steps, x.MaxExamples, x.Shape, examples)
	}
	nonzero := 0
	for i, v := range x.Importance {
		w := want[i] / float64(examples)
		if math.Abs(v-w) > 1e-6*(1+w) {
			t.Fatalf("feature %d: importance %v, want %v", i, v, w)
		}
		if v > 0 {
			nonzero++
		}
	}
	if nonzero < 100 {
		t.Errorf("only %d of 784 pixels carry importance", nonzero)
	}
	// The explanation is part of the replicated state: a snapshot keeps it.
	var restored *ExplanationRecord
	h.fsm.Read(func(s *State) { restored = s.clone().Models[version].Explanation })
	if restored == nil || restored.Round != x.Round || len(restored.Importance) != 784 || restored.Importance[400] != x.Importance[400] {
		t.Errorf("explanation after a snapshot: %+v", restored)
	}
}

func TestApplyModelExplain(t *testing.T) {
	s := newState()
	s.Models[3] = &ModelRecord{Version: 3}
	tests := []struct {
		name string
		cmd  explainCmd
		err  error
	}{
		{"unknown model", explainCmd{Version: 4, Explanation: ExplanationRecord{Shape: []int{2}, Importance: []float64{1, 2}}}, ErrNotFound},
		{"shape mismatch", explainCmd{Version: 3, Explanation: ExplanationRecord{Shape: []int{3}, Importance: []float64{1, 2}}}, ErrBadEntry},
		{"no shape", explainCmd{Version: 3, Explanation: ExplanationRecord{Importance: []float64{1}}}, ErrBadEntry},
		{"stored", explainCmd{Version: 3, Explanation: ExplanationRecord{Shape: []int{1, 2}, Importance: []float64{1, 2}, Round: 9}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, _ := json.Marshal(tt.cmd)
			res := applyModelExplain(s, hdr)
			err, _ := res.(error)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("apply: %v, want %v", res, tt.err)
			}
		})
	}
	if x := s.Models[3].Explanation; x == nil || x.Round != 9 {
		t.Errorf("stored explanation %+v", x)
	}
}
