package agent

import (
	"path/filepath"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// numpyPython returns a python3 that imports numpy, or fails under CI and
// skips locally.
func numpyPython(t testing.TB) string {
	t.Helper()
	return testutil.PythonWith(t, "numpy")
}

// TestNumpyTrainerRound runs examples/trainer-numpy for a training round
// through the agent's code path: the update, added to the start weights,
// classifies the agent's held-out split, and carries the example count.
func TestNumpyTrainerRound(t *testing.T) {
	py := numpyPython(t)
	spec, err := tensor.ExternalSpec("logreg-numpy", []tensor.ExternalTensor{{Name: "linear.weight", Shape: []int{3, 12}}, {Name: "linear.bias", Shape: []int{3}}})
	if err != nil {
		t.Fatal(err)
	}
	start, err := tensor.NewExternalModel(spec, make([]float32, 39))
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := start.MarshalBinary()
	h := newHub(map[uint64][]byte{1: blob})
	csv := writeSynthCSV(t, t.TempDir(), 100, 5)
	script, _ := filepath.Abs(filepath.Join("..", "examples", "trainer-numpy", "train.py"))
	a := trainerAgent(t, py, script)
	a.cfg.Trainer.Env = map[string]string{"DATA_CSV": csv, "HELD_OUT": "0.2"}
	plan := &protocol.RoundPlan{RoundID: 1, ModelVersion: 1, ModelHash: start.Hash(), Epochs: 5, BatchSize: 8, LR: 0.1}
	twins, _ := runTrainRound(t, h, []*Agent{a}, plan)
	if r := withdrawal(t, twins[0]); r != "" {
		t.Fatalf("agent left the round: %s", r)
	}
	vec, w, err := protocol.DecodePlainUpdate(h.plain[a.ID()], 39+protocol.UpdateMetrics)
	if err != nil || w != 80 {
		t.Fatalf("update: weight %d (want the 80 training examples), %v", w, err)
	}
	// Held-out accuracy of start + delta, computed here in Go.
	held := synthData(100, 12, 3, 5)
	correct := 0
	for i := 80; i < 100; i++ {
		best, bestZ := 0, float32(0)
		for c := range 3 {
			z := vec[36+c]
			for j := range 12 {
				z += vec[c*12+j] * held.Row(i)[j]
			}
			if c == 0 || z > bestZ {
				best, bestZ = c, z
			}
		}
		if best == int(held.Y[i]) {
			correct++
		}
	}
	if correct < 18 {
		t.Fatalf("trained weights classify %d of 20 held-out examples", correct)
	}
}
