//go:build torch

package testcluster_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/safetensors"
)

// This file runs examples/trainer-torch (make test-torch: go test -tags
// torch); it needs a python3 that imports torch and the MNIST files.
//
// FEDGE_TORCH_ROUNDS (default 3) and FEDGE_TORCH_LIMIT (training images
// per agent, default 300) size TestTorchTrainerSecAgg; docs/BENCHMARKS.md
// records larger runs.

// torchExample is the example's folder and a python3 that runs it.
type torchExample struct {
	py, dir, mnist string
}

func newTorchExample(t *testing.T) torchExample {
	t.Helper()
	py := testutil.PythonWith(t, "torch", "numpy")
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "trainer-torch"))
	if err != nil {
		t.Fatal(err)
	}
	return torchExample{py: py, dir: dir, mnist: testutil.MNISTDir(t)}
}

// init runs init.py and reads its weights as the external model
// "mnist-cnn-bn".
func (e torchExample) init(t *testing.T) *tensor.Model {
	t.Helper()
	return testutil.TorchInit(t, e.py, e.dir)
}

// run runs train.py on its own, as an agent would, for plan (task and
// hyper-parameters) on m, with the data environment env; it returns the
// result.json's bytes and, for a train task, the trained model.
func (e torchExample) run(t *testing.T, plan agent.TrainerPlan, m *tensor.Model, env map[string]string) ([]byte, *tensor.Model) {
	t.Helper()
	dir := t.TempDir()
	plan.ContractVersion = agent.TrainerContractVersion
	plan.Tensors = m.Spec.External
	plan.InputWeights = filepath.Join(dir, "in.safetensors")
	plan.Result = filepath.Join(dir, "result.json")
	if plan.Task == agent.TaskTrain {
		plan.OutputWeights = filepath.Join(dir, "out.safetensors")
	}
	if err := safetensors.WriteFile(plan.InputWeights, m.Spec.External, m.Params, nil); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	planPath := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.py, filepath.Join(e.dir, "train.py"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "FEDGE_PLAN=" + planPath, "MNIST_DIR=" + e.mnist}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("train.py %s: %v\n%s", plan.Task, err, out)
	}
	res, err := os.ReadFile(plan.Result)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Task != agent.TaskTrain {
		return res, nil
	}
	f, err := os.Open(plan.OutputWeights)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	trained := m.Clone()
	if _, err := safetensors.ReadInto(f, 1<<30, m.Spec.External, trained.Params); err != nil {
		t.Fatal(err)
	}
	return res, trained
}

// accuracy is m's accuracy on the first 2,000 MNIST test images (every
// fifth), by the trainer's evaluate task.
func (e torchExample) accuracy(t *testing.T, m *tensor.Model) float64 {
	t.Helper()
	b, _ := e.run(t, agent.TrainerPlan{Task: agent.TaskEvaluate, Split: "held_out"}, m, map[string]string{"SHARD": "0", "SHARDS": "5"})
	var r agent.EvalResult
	if err := json.Unmarshal(b, &r); err != nil || r.Total != 2000 {
		t.Fatalf("evaluate: %s (%v)", b, err)
	}
	return float64(r.Correct) / float64(r.Total)
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// TestTorchTrainerSecAgg is the PyTorch example end to end: three agents
// over QUIC, each reading its own MNIST shard, train the imported CNN with
// batch norm under SecAgg+ on a 3-node Raft cluster, one epoch a round.
// The committed model's accuracy on 2,000 test images, measured by the
// trainer's evaluate task, rises from chance to a good classifier. The
// same model trained centrally on the union of the shards for as many
// epochs is logged next to it (the table in docs/BENCHMARKS.md).
func TestTorchTrainerSecAgg(t *testing.T) {
	e := newTorchExample(t)
	const agents, shards = 3, 3
	rounds, limit := envInt(t, "FEDGE_TORCH_ROUNDS", 3), envInt(t, "FEDGE_TORCH_LIMIT", 300)
	plan := api.LocalPlan{Epochs: 1, BatchSize: 16, LR: 0.02, Momentum: 0.9}
	c := testcluster.New(t, testcluster.Options{Agents: agents, Trainer: func(i int) agent.TrainerConfig {
		return agent.TrainerConfig{
			Command: []string{e.py, filepath.Join(e.dir, "train.py")},
			Env: map[string]string{"MNIST_DIR": e.mnist, "SHARD": strconv.Itoa(i), "SHARDS": strconv.Itoa(shards),
				"LIMIT": strconv.Itoa(limit), "EVAL_LIMIT": "200", "TORCH_THREADS": "1"},
			Timeout: agent.Duration(10 * time.Minute),
		}
	}})
	init := e.init(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	v, err := c.Admin.Models().Import(ctx, "", init)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	train := time.Duration(limit)*40*time.Millisecond + 60*time.Second // 1 epoch of the shard on a loaded core, and the start
	began := time.Now()
	job := c.StartJob(api.JobSpec{
		Name: "mnist-torch", InitModel: v.Version, Rounds: rounds, Fraction: 1, MinClients: agents, Plan: plan,
		SecAgg:   api.SecAggSpec{Enabled: true, Clip: 4},
		Deadline: api.Deadlines{Download: api.Duration(30 * time.Second), Train: api.Duration(train), Stage: api.Duration(30 * time.Second)},
	})
	rs := c.WaitCommitted(job, rounds, time.Duration(rounds)*(train+2*time.Minute))
	took := time.Since(began)
	for _, r := range rs {
		if r.State != api.RoundCommitted || r.Metrics["survivors"] != agents {
			t.Fatalf("round %d: %s %q, survivors %v", r.Number, r.State, r.Error, r.Metrics["survivors"])
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	final, err := c.Admin.FetchModel(ctx, rs[len(rs)-1].ModelOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Fleet {
		if reason, _ := a.Daemon().LastTrainerFailure(); reason != "" {
			t.Errorf("agent %d: trainer failed: %s", a.Index, reason)
		}
	}

	before, fed := e.accuracy(t, init), e.accuracy(t, final)
	t.Logf("federated: %d agents × %d images, %d rounds of E=1 B=%d lr=%g momentum=%g under SecAgg+ (%.0f s): test accuracy %.3f → %.3f, train loss %.3f → %.3f",
		agents, limit, rounds, plan.BatchSize, plan.LR, plan.Momentum, took.Seconds(), before, fed, rs[0].Metrics["train_loss"], rs[len(rs)-1].Metrics["train_loss"])
	if fed < 0.7 || fed < before+0.5 {
		t.Errorf("test accuracy %.3f after %d federated rounds, %.3f at the import", fed, rounds, before)
	}

	began = time.Now()
	_, central := e.run(t, agent.TrainerPlan{Task: agent.TaskTrain, Split: "train", Epochs: rounds, BatchSize: plan.BatchSize, LR: plan.LR, Momentum: plan.Momentum, Seed: 1},
		init, map[string]string{"SHARD": "0", "SHARDS": "1", "LIMIT": strconv.Itoa(agents * limit), "TORCH_THREADS": "1"})
	cen := e.accuracy(t, central)
	t.Logf("central: the same %d images, %d epochs, same plan (%.0f s): test accuracy %.3f", agents*limit, rounds, time.Since(began).Seconds(), cen)
}
