package agent

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// externalModel is a small external model: a 2×3 matrix and a bias.
func externalModel(t testing.TB) (*tensor.Model, []byte) {
	t.Helper()
	spec, err := tensor.ExternalSpec("tiny-ext", []tensor.ExternalTensor{{Name: "fc.weight", Shape: []int{2, 3}}, {Name: "fc.bias", Shape: []int{2}}})
	if err != nil {
		t.Fatal(err)
	}
	params := []float32{0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.01, 0.02}
	m, err := tensor.NewExternalModel(spec, params)
	if err != nil {
		t.Fatal(err)
	}
	return m, modelBlob(t, m)
}

// python returns a python3 (stdlib only), or fails under CI and skips.
func python(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		testutil.Missing(t, "python3 is not installed (apt-get install -y python3)")
	}
	return p
}

// trainerAgent is a roundAgent without data of its own whose trainer is
// argv.
func trainerAgent(t *testing.T, argv ...string) *Agent {
	t.Helper()
	a := roundAgent(t, &tensor.Dataset{}, 0)
	a.cfg.DataDir = t.TempDir()
	a.cfg.Trainer = TrainerConfig{Command: argv, Timeout: Duration(20 * time.Second)}
	return a
}

// withdrawal returns the reason of the RoundJoin{Accept: false} the agent
// sent, or "" if it sent none.
func withdrawal(t *testing.T, tw *twin) string {
	t.Helper()
	for _, f := range tw.frames() {
		_, m, err := protocol.DecodeMessage(f, protocol.Limits{})
		if err != nil {
			continue
		}
		if j, ok := m.(*protocol.RoundJoin); ok && !j.Accept {
			return j.Reason
		}
	}
	return ""
}

// TestExternalTrainerRound runs a real trainer process for a plain round:
// the update is its weights minus the start, weighted by its example
// count, with its metrics.
func TestExternalTrainerRound(t *testing.T) {
	py := python(t)
	start, blob := externalModel(t)
	h := newHub(map[uint64][]byte{4: blob})
	a := trainerAgent(t, py, filepath.Join(testdataDir(t), "trainers", "mutate.py"), "ok")
	t.Setenv("SECRET_FROM_AGENT_ENV", "1") // the trainer checks it cannot see it
	plan := &protocol.RoundPlan{RoundID: 9, ModelVersion: 4, ModelHash: start.Hash(), Epochs: 1, BatchSize: 4, LR: 0.1}
	twins, ups := runTrainRound(t, h, []*Agent{a}, plan)
	if r := withdrawal(t, twins[0]); r != "" {
		t.Fatalf("agent left the round: %s", r)
	}
	vec, w, err := protocol.DecodePlainUpdate(h.plain[a.ID()], start.NumParams()+protocol.UpdateMetrics)
	if err != nil || w != 42 {
		t.Fatalf("plain update: weight %d, %v", w, err)
	}
	for i := range start.NumParams() {
		if math.Abs(float64(vec[i])-0.5) > 1e-6 {
			t.Fatalf("delta[%d] = %v, want 0.5", i, vec[i])
		}
	}
	if !equalFloats(vec, ups[0].vec) || a.m.roundsCompleted.Load() != 1 {
		t.Fatal("round not completed through the update path")
	}
	if r, _ := a.LastTrainerFailure(); r != "" {
		t.Errorf("LastTrainerFailure = %q", r)
	}
	ents, _ := os.ReadDir(a.cfg.Trainer.workDir(a.cfg.DataDir))
	if len(ents) != 0 {
		t.Errorf("run folders left behind: %d", len(ents))
	}
}

// TestExternalTrainerFailures checks that each way a trainer can fail
// makes the agent leave the round with the reason, upload nothing and
// remember the failure.
func TestExternalTrainerFailures(t *testing.T) {
	py := python(t)
	mutate := filepath.Join(testdataDir(t), "trainers", "mutate.py")
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }
	tests := []struct {
		name    string
		argv    []string
		timeout time.Duration
		memMB   int
		want    string
	}{
		{"exit 1", sh(`echo loading >&2; echo "ValueError: labels out of range" >&2; exit 1`), 0, 0, "trainer exited 1: ValueError: labels out of range"},
		{"crash", sh(`echo segfaulting >&2; kill -SEGV $$`), 0, 0, "trainer killed by signal 11"},
		{"decline", sh(`echo "data volume not mounted" >&2; exit 75`), 0, 0, "trainer declined: data volume not mounted"},
		{"timeout", sh(`echo "epoch 1" >&2; sleep 30`), 300 * time.Millisecond, 0, "trainer exceeded its timeout of 300ms: epoch 1"},
		{"memory", []string{py, "-c", "b = bytearray(1 << 30)"}, 0, 200, "trainer exited 1: MemoryError"},
		{"missing command", []string{"/nonexistent/trainer"}, 0, 0, "trainer did not start"},
		{"wrong name", []string{py, mutate, "rename"}, 0, 0, `trainer's weights: unexpected tensor "renamed"`},
		{"wrong shape", []string{py, mutate, "reshape"}, 0, 0, `tensor "fc.weight" has shape [3 2], want [2 3]`},
		{"wrong dtype", []string{py, mutate, "f16"}, 0, 0, `has dtype "F16"; fedge accepts F32 only`},
		{"NaN", []string{py, mutate, "nan"}, 0, 0, `non-finite value (NaN) in tensor "fc.bias"`},
		{"Inf", []string{py, mutate, "inf"}, 0, 0, `non-finite value (+Inf) in tensor "fc.weight"`},
		{"oversized", []string{py, mutate, "oversize"}, 0, 0, "trainer's weights file is 8388"},
		{"no result", []string{py, mutate, "noresult"}, 0, 0, "trainer wrote no result.json"},
		{"no examples", []string{py, mutate, "noexamples"}, 0, 0, "examples = 0"},
	}
	start, blob := externalModel(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHub(map[uint64][]byte{4: blob})
			a := trainerAgent(t, tt.argv...)
			if tt.timeout > 0 {
				a.cfg.Trainer.Timeout = Duration(tt.timeout)
			}
			a.cfg.Trainer.MemoryMB = tt.memMB
			plan := &protocol.RoundPlan{RoundID: uint64(100 + i), ModelVersion: 4, ModelHash: start.Hash(), Epochs: 1, BatchSize: 4, LR: 0.1}
			twins, _ := runTrainRound(t, h, []*Agent{a}, plan)
			reason := withdrawal(t, twins[0])
			if !strings.Contains(reason, tt.want) {
				t.Fatalf("withdrawal reason %q, want it to contain %q", reason, tt.want)
			}
			if last, _ := a.LastTrainerFailure(); last != reason {
				t.Errorf("LastTrainerFailure %q, reason sent %q", last, reason)
			}
			if _, ok := h.plain[a.ID()]; ok {
				t.Fatal("an update was uploaded")
			}
			if a.m.roundsFailed.Load() != 1 {
				t.Error("round not counted as failed")
			}
		})
	}
}

// TestExternalModelWithoutTrainer: an agent without a trainer leaves the
// round of an external model, saying why.
func TestExternalModelWithoutTrainer(t *testing.T) {
	start, blob := externalModel(t)
	h := newHub(map[uint64][]byte{4: blob})
	a := roundAgent(t, synthData(20, 12, 3, 1), 0.1)
	plan := &protocol.RoundPlan{RoundID: 3, ModelVersion: 4, ModelHash: start.Hash(), Epochs: 1, BatchSize: 4, LR: 0.1}
	twins, _ := runTrainRound(t, h, []*Agent{a}, plan)
	if r := withdrawal(t, twins[0]); !strings.Contains(r, "no trainer configured") {
		t.Fatalf("reason %q", r)
	}
	if _, ok := h.plain[a.ID()]; ok {
		t.Fatal("an update was uploaded")
	}
}

func TestTrainerErrorIs(t *testing.T) {
	err := trainerErr("trainer exited %d", 2)
	var te *TrainerError
	if !errors.Is(err, ErrTrainer) || !errors.As(err, &te) || te.Reason != "trainer exited 2" {
		t.Fatalf("%v", err)
	}
}

func testdataDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestFirstNonFinite: the bit test finds NaN and both infinities and
// nothing else, down to the largest float32 and the subnormals.
func TestFirstNonFinite(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name string
		p    []float32
		want int
	}{
		{"finite", []float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-40}, -1},
		{"NaN", []float32{1, 2, nan}, 2},
		{"+Inf", []float32{float32(math.Inf(1)), nan}, 0},
		{"-Inf", []float32{1, float32(math.Inf(-1))}, 1},
		{"empty", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstNonFinite(tt.p); got != tt.want {
				t.Errorf("firstNonFinite(%v) = %d, want %d", tt.p, got, tt.want)
			}
		})
	}
}
