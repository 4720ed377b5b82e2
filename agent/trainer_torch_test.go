//go:build torch

package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// This file runs examples/trainer-torch (make test-torch: go test -tags
// torch); it needs a python3 that imports torch and the MNIST files.

// torchTrainer returns a python3 that imports torch and the absolute path
// of examples/trainer-torch.
func torchTrainer(t testing.TB) (py, dir string) {
	t.Helper()
	py = testutil.PythonWith(t, "torch", "numpy")
	dir, err := filepath.Abs(filepath.Join("..", "examples", "trainer-torch"))
	if err != nil {
		t.Fatal(err)
	}
	return py, dir
}

// evalWithTrainer runs the trainer's evaluate task on m through the
// agent's hand-off (run folder, process, checked result.json) and returns
// the held-out accuracy.
func evalWithTrainer(t *testing.T, a *Agent, m *tensor.Model) float64 {
	t.Helper()
	r, err := a.prepareRun(TrainerPlan{Task: TaskEvaluate, Job: "test", Split: "held_out", Deadline: time.Now().Add(time.Minute)}, m)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(r.dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.runTrainer(ctx, r); err != nil {
		t.Fatal(err)
	}
	var res EvalResult
	if err := readResult(r.plan.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Total == 0 {
		t.Fatal("evaluate: no held-out examples")
	}
	return float64(res.Correct) / float64(res.Total)
}

// TestTorchTrainerRound runs examples/trainer-torch (a CNN with batch
// norm, 1.66M values) for a training round through the agent's code path:
// the agent leaves nothing behind, the update is weighted by the shard's
// example count, carries changed batch-norm running statistics, and the
// start weights plus the update classify the held-out split far better
// than the start, as the trainer's own evaluate task measures it.
func TestTorchTrainerRound(t *testing.T) {
	py, dir := torchTrainer(t)
	mnist := testutil.MNISTDir(t)
	start := testutil.TorchInit(t, py, dir)
	blob, err := start.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(map[uint64][]byte{1: blob})
	a := trainerAgent(t, py, filepath.Join(dir, "train.py"))
	a.cfg.Trainer.Timeout = Duration(2 * time.Minute)
	a.cfg.Trainer.Env = map[string]string{"MNIST_DIR": mnist, "SHARD": "3", "SHARDS": "20", "LIMIT": "400", "TORCH_THREADS": "1"}
	plan := &protocol.RoundPlan{RoundID: 1, ModelVersion: 1, ModelHash: start.Hash(), Epochs: 1, BatchSize: 16, LR: 0.02, Momentum: 0.9}
	twins, _ := runTrainRound(t, h, []*Agent{a}, plan)
	if r := withdrawal(t, twins[0]); r != "" {
		t.Fatalf("agent left the round: %s", r)
	}
	n := start.NumParams()
	vec, w, err := protocol.DecodePlainUpdate(h.plain[a.ID()], n+protocol.UpdateMetrics)
	if err != nil || w != 400 {
		t.Fatalf("update: weight %d (want the 400 training examples), %v", w, err)
	}
	trained := start.Clone()
	for i := range n {
		trained.Params[i] += vec[i]
	}
	offs, _, err := start.Spec.ExternalOffsets()
	if err != nil {
		t.Fatal(err)
	}
	for k, tt := range start.Spec.External {
		if tt.Name == "bn2.running_var" {
			if d := vec[offs[k]]; d == 0 {
				t.Errorf("bn2.running_var did not change (delta %v): running statistics are not federated", d)
			}
		}
	}
	a.cfg.Trainer.Env["EVAL_LIMIT"] = "500"
	before, after := evalWithTrainer(t, a, start), evalWithTrainer(t, a, trained)
	t.Logf("held-out accuracy (500 test images): %.3f at the start, %.3f after one epoch of 400 images", before, after)
	if after < 0.6 || after < before+0.4 {
		t.Errorf("held-out accuracy %.3f after the round, %.3f before", after, before)
	}
	ents, _ := os.ReadDir(a.cfg.Trainer.workDir(a.cfg.DataDir))
	if len(ents) != 0 {
		t.Errorf("run folders left behind: %d", len(ents))
	}
}

// BenchmarkTorchEpoch runs examples/trainer-torch for one epoch of a
// 600-image shard (FedAvg's 100 clients; one torch thread) through the
// agent's hand-off, then the trivial copy trainer through the same
// hand-off on the same model, and reports the hand-off as a share of the
// trainer's run: epoch-s is the trainer's whole run (Python and torch
// start, data, one epoch), train-s the epoch alone.
func BenchmarkTorchEpoch(b *testing.B) {
	py, dir := torchTrainer(b)
	mnist := testutil.MNISTDir(b)
	m := testutil.TorchInit(b, py, dir)
	a := handoffAgent(b, []string{py, filepath.Join(dir, "train.py")},
		map[string]string{"MNIST_DIR": mnist, "SHARD": "0", "SHARDS": "100", "TORCH_THREADS": "1"})
	cp := handoffAgent(b, copyTrainer, nil)
	var epoch, train, hand time.Duration
	const copies = 20
	for b.Loop() {
		t := handoff(b, a, m, 1)
		if t.res.Examples != 600 {
			b.Fatalf("trained on %d examples, want the shard's 600", t.res.Examples)
		}
		epoch += t.write + t.process + t.read
		train += time.Duration(t.res.Metrics["train_s"] * float64(time.Second))
		for range copies {
			c := handoff(b, cp, m, 1)
			hand += c.write + c.process + c.read
		}
	}
	n := float64(b.N)
	b.ReportMetric(epoch.Seconds()/n, "epoch-s")
	b.ReportMetric(train.Seconds()/n, "train-s")
	b.ReportMetric(float64(hand.Microseconds())/1e3/n/copies, "handoff-ms")
	b.ReportMetric(100*float64(hand)/copies/float64(epoch), "handoff-%")
}
