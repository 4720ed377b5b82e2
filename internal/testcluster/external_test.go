package testcluster_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

// The external model of these tests: multinomial logistic regression in
// PyTorch's nn.Linear naming, as examples/trainer-numpy trains it.
const (
	extFeatures = 12
	extClasses  = 3
)

// blobs draws n labelled examples from extClasses Gaussian blobs: class c
// has mean 1.2 on the features j with j%extClasses == c, unit variance.
func blobs(n int, seed uint64) (x [][]float64, y []int) {
	r := rand.New(rand.NewPCG(seed, 0x626c6f6273))
	for range n {
		c := r.IntN(extClasses)
		row := make([]float64, extFeatures)
		for j := range row {
			row[j] = r.NormFloat64()
			if j%extClasses == c {
				row[j] += 1.2
			}
		}
		x, y = append(x, row), append(y, c)
	}
	return x, y
}

// writeBlobsCSV writes n examples as the numpy trainer's CSV (header
// row, label last) and returns its path.
func writeBlobsCSV(t *testing.T, dir string, n int, seed uint64) string {
	t.Helper()
	x, y := blobs(n, seed)
	var b strings.Builder
	for j := range extFeatures {
		fmt.Fprintf(&b, "f%d,", j)
	}
	b.WriteString("label\n")
	for i := range y {
		for _, v := range x[i] {
			fmt.Fprintf(&b, "%.5f,", v)
		}
		fmt.Fprintf(&b, "%d\n", y[i])
	}
	p := filepath.Join(dir, fmt.Sprintf("agent-%d.csv", seed))
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// logregAccuracy is the accuracy of the external model's parameters
// (linear.weight [classes, features] row-major, then linear.bias) on x, y:
// a Go evaluator independent of the trainer.
func logregAccuracy(params []float32, x [][]float64, y []int) float64 {
	bias := params[extClasses*extFeatures:]
	correct := 0
	for i, row := range x {
		best, bestZ := 0, math.Inf(-1)
		for c := range extClasses {
			z := float64(bias[c])
			for j, v := range row {
				z += float64(params[c*extFeatures+j]) * v
			}
			if z > bestZ {
				best, bestZ = c, z
			}
		}
		if best == y[i] {
			correct++
		}
	}
	return float64(correct) / float64(len(y))
}

// importLogreg imports small random initial weights of the external
// logistic regression and returns the version.
func importLogreg(t *testing.T, c *testcluster.Cluster) (uint64, *tensor.Model) {
	t.Helper()
	spec, err := tensor.ExternalSpec("logreg-numpy", []tensor.ExternalTensor{
		{Name: "linear.weight", Shape: []int{extClasses, extFeatures}}, {Name: "linear.bias", Shape: []int{extClasses}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	p := make([]float32, extClasses*extFeatures+extClasses)
	for i := range p {
		p[i] = float32(r.Float64()-0.5) * 0.02
	}
	m, err := tensor.NewExternalModel(spec, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := c.Admin.Models().Import(ctx, "", m)
	if err != nil {
		t.Fatal(err)
	}
	return v.Version, m
}

// externalJob is a SecAgg+ job of every agent (at least n) from version
// init.
func externalJob(init uint64, rounds, n int) api.JobSpec {
	return api.JobSpec{
		Name: "ext", InitModel: init, Rounds: rounds, Fraction: 1, MinClients: n,
		Plan:     api.LocalPlan{Epochs: 1, BatchSize: 16, LR: 0.05},
		SecAgg:   api.SecAggSpec{Enabled: true, Clip: 4},
		Deadline: api.Deadlines{Download: api.Duration(20 * time.Second), Train: api.Duration(60 * time.Second), Stage: api.Duration(20 * time.Second)},
	}
}

// TestExternalTrainerSecAgg is bring-your-own-trainer end to end: three
// agents over QUIC, each with its own CSV, train an imported external
// model with examples/trainer-numpy under SecAgg+ on a 3-node Raft
// cluster. The committed versions, evaluated here in Go on held-out data,
// go from chance to a good classifier; the securely aggregated training
// loss falls; the registry holds every version, external, in a chain
// from the import.
func TestExternalTrainerSecAgg(t *testing.T) {
	py := testutil.PythonWith(t, "numpy")
	script, err := filepath.Abs(filepath.Join("..", "..", "examples", "trainer-numpy", "train.py"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	const agents, rounds = 3, 4
	c := testcluster.New(t, testcluster.Options{Agents: agents, Trainer: func(i int) agent.TrainerConfig {
		return agent.TrainerConfig{
			Command: []string{py, script},
			Env:     map[string]string{"DATA_CSV": writeBlobsCSV(t, dataDir, 300, uint64(i+1)), "HELD_OUT": "0.2"},
			Timeout: agent.Duration(time.Minute),
		}
	}})
	init, m := importLogreg(t, c)
	job := c.StartJob(externalJob(init, rounds, agents))
	rs := c.WaitCommitted(job, rounds, 180*time.Second)
	for _, r := range rs {
		if r.State != api.RoundCommitted || r.Metrics["survivors"] != agents {
			t.Fatalf("round %d: %s %q, survivors %v", r.Number, r.State, r.Error, r.Metrics["survivors"])
		}
	}
	first, last := rs[0], rs[len(rs)-1]
	if !(last.Metrics["train_loss"] < first.Metrics["train_loss"]) {
		t.Errorf("training loss %v in round 1, %v in round %d: did not fall", first.Metrics["train_loss"], last.Metrics["train_loss"], last.Number)
	}
	hx, hy := blobs(2000, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	final, err := c.Admin.FetchModel(ctx, last.ModelOut)
	if err != nil {
		t.Fatal(err)
	}
	before, after := logregAccuracy(m.Params, hx, hy), logregAccuracy(final.Params, hx, hy)
	t.Logf("held-out accuracy: %.3f at the import, %.3f after %d rounds (train loss %.3f -> %.3f)", before, after, rounds,
		first.Metrics["train_loss"], last.Metrics["train_loss"])
	if after < 0.8 || after < before+0.3 {
		t.Errorf("held-out accuracy %.3f after %d rounds, %.3f at the import", after, rounds, before)
	}
	models, err := c.Admin.Models().List(ctx, api.QueryOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	byVersion := map[uint64]api.Model{}
	for _, mm := range models {
		byVersion[mm.Version] = mm
	}
	parent := init
	for _, r := range rs {
		mm, ok := byVersion[r.ModelOut]
		if !ok || mm.Parent != parent || !mm.External || mm.Job != job || mm.Name != "logreg-numpy" || mm.Size == 0 {
			t.Errorf("round %d's version %d in the registry: %+v (present %v), want parent %d", r.Number, r.ModelOut, mm, ok, parent)
		}
		parent = r.ModelOut
	}
	for _, a := range c.Fleet {
		if reason, _ := a.Daemon().LastTrainerFailure(); reason != "" {
			t.Errorf("agent %d: trainer failed: %s", a.Index, reason)
		}
	}
}

// TestTrainerFailureReported: one agent's trainer fails; the round goes
// on without it (SecAgg+ counts a dropout), and by the time it commits
// the job's status and the agent's record say why, in the agent's words.
// The trainers are shell scripts (the others hand the weights back
// unchanged), so this runs without numpy.
func TestTrainerFailureReported(t *testing.T) {
	const bad = 3
	noop := `cp "$FEDGE_INPUT_WEIGHTS" "$FEDGE_OUTPUT_WEIGHTS" && printf '{"examples": 10}' > "$FEDGE_RESULT"`
	fail := `echo "loading data" >&2; echo "ValueError: shapes (32,12) and (10,) not aligned" >&2; exit 1`
	c := testcluster.New(t, testcluster.Options{Agents: 4, Trainer: func(i int) agent.TrainerConfig {
		script := noop
		if i == bad {
			script = fail
		}
		return agent.TrainerConfig{Command: []string{"/bin/sh", "-c", script}}
	}})
	init, _ := importLogreg(t, c)
	job := c.StartJob(externalJob(init, 3, 3))
	rs := c.WaitCommitted(job, 1, 120*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := c.Admin.Jobs().Status(ctx, job, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	badID := c.Fleet[bad].Daemon().ID()
	const want = "trainer exited 1: ValueError: shapes (32,12) and (10,) not aligned"
	if len(j.AgentErrors) != 1 || j.AgentErrors[0].Agent != badID || j.AgentErrors[0].Reason != want || j.AgentErrors[0].Round < rs[0].ID {
		t.Fatalf("job status after round %d: agent errors %+v, want %s: %q", rs[0].ID, j.AgentErrors, badID, want)
	}
	if s := rs[0].Metrics["survivors"]; s != 3 {
		t.Errorf("round 1: %v survivors, want the 3 working agents", s)
	}
	a, err := c.Admin.Agents().Show(ctx, badID, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.LastError != want || a.LastErrorRound < rs[0].ID || a.LastErrorAt.IsZero() {
		t.Errorf("agents show %s: last error %q (round %d, at %v)", badID, a.LastError, a.LastErrorRound, a.LastErrorAt)
	}
	good, err := c.Admin.Agents().Show(ctx, c.Fleet[0].Daemon().ID(), api.QueryOptions{})
	if err != nil || good.LastError != "" {
		t.Errorf("a working agent's last error: %q, %v", good.LastError, err)
	}
}
