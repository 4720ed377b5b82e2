package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/tensor"
)

// handoffModel is an external model of n parameters in tensors of up to
// 4M values, like a large network's.
func handoffModel(b *testing.B, n int) *tensor.Model {
	b.Helper()
	var layout []tensor.ExternalTensor
	for i, left := 0, n; left > 0; i++ {
		k := min(left, 1<<22)
		layout = append(layout, tensor.ExternalTensor{Name: fmt.Sprintf("layer%d.weight", i), Shape: []int{k}})
		left -= k
	}
	spec, err := tensor.ExternalSpec(fmt.Sprintf("handoff-%d", n), layout)
	if err != nil {
		b.Fatal(err)
	}
	params := make([]float32, n)
	for i := range params {
		params[i] = float32(i%1000) * 1e-3
	}
	m, err := tensor.NewExternalModel(spec, params)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// copyTrainer is a trivial trainer: it hands the input weights back
// unchanged and reports 600 examples.
var copyTrainer = []string{"/bin/sh", "-c", `cp "$FEDGE_INPUT_WEIGHTS" "$FEDGE_OUTPUT_WEIGHTS" && printf '{"examples": 600}' > "$FEDGE_RESULT"`}

// handoffAgent is an agent with only what a trainer run needs.
func handoffAgent(b *testing.B, argv []string, env map[string]string) *Agent {
	b.Helper()
	return &Agent{log: testLogger(), cfg: Config{DataDir: b.TempDir(), Trainer: TrainerConfig{Command: argv, Env: env, Timeout: Duration(10 * time.Minute)}}}
}

// handoffTimes is one train run's phases.
type handoffTimes struct {
	write, process, read time.Duration
	res                  TrainResult
}

// handoff is the agent's whole hand-off of one train run, as
// trainExternal does it: run folder, input weights and plan.json, the
// trainer process, result.json and the checked output weights.
func handoff(b *testing.B, a *Agent, m *tensor.Model, epochs int) handoffTimes {
	var t handoffTimes
	t0 := time.Now()
	r, err := a.prepareRun(TrainerPlan{Task: TaskTrain, Job: "bench", RoundID: 1, ModelVersion: 1, Split: "train",
		Epochs: epochs, BatchSize: 32, LR: 0.02, Momentum: 0.9, Seed: 1, Deadline: time.Now().Add(10 * time.Minute)}, m)
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(r.dir)
	t1 := time.Now()
	if err := a.runTrainer(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	t2 := time.Now()
	if err := readResult(r.plan.Result, &t.res); err != nil {
		b.Fatal(err)
	}
	trained, err := readTrainedWeights(r.plan.OutputWeights, m.Spec, m.NumParams())
	if err != nil {
		b.Fatal(err)
	}
	t.write, t.process, t.read = t1.Sub(t0), t2.Sub(t1), time.Since(t2)
	runtime.KeepAlive(trained)
	return t
}

// procStatusKB reads a field of /proc/self/status in kB; ok is false
// where there is no such file (not Linux).
func procStatusKB(b *testing.B, field string) (kb int64, ok bool) {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, found := strings.CutPrefix(line, field+":"); found {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb, true
		}
	}
	return 0, false
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux
// clear_refs 5); where it cannot, VmHWM stays the process's peak so far,
// an upper bound of the hand-off's.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// benchTrainerHandoff measures the agent's whole hand-off with the
// trivial copyTrainer for a model of n parameters. Metrics: the weight
// transfer in each direction in GB/s (write: flat vector → input file;
// read: output file → checked flat vector), the process phase (start,
// cp, exit), and the peak RSS above the agent's RSS before it held the
// model, in model sizes (the start weights are 1, the trained copy 2).
func benchTrainerHandoff(b *testing.B, n int) {
	debug.FreeOSMemory()
	base, haveRSS := procStatusKB(b, "VmRSS")
	m := handoffModel(b, n)
	a := handoffAgent(b, copyTrainer, nil)
	var sum handoffTimes
	var peak int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		debug.FreeOSMemory() // a hand-off starts with the last one's weights collected
		resetPeakRSS()
		b.StartTimer()
		t := handoff(b, a, m, 1)
		b.StopTimer()
		hwm, _ := procStatusKB(b, "VmHWM")
		peak = max(peak, hwm)
		b.StartTimer()
		sum.write += t.write
		sum.process += t.process
		sum.read += t.read
	}
	bytes := 4 * float64(n) * float64(b.N)
	b.ReportMetric(bytes/sum.write.Seconds()/1e9, "write-GB/s")
	b.ReportMetric(bytes/sum.read.Seconds()/1e9, "read-GB/s")
	b.ReportMetric(float64(sum.process.Milliseconds())/float64(b.N), "process-ms")
	if haveRSS {
		b.ReportMetric(float64(peak-base)*1024/(4*float64(n)), "peakRSS/model")
	}
}

// BenchmarkTrainerHandoff1_6M is the FedAvg CNN's size (1,663,370
// parameters, 6.7 MB).
func BenchmarkTrainerHandoff1_6M(b *testing.B) { benchTrainerHandoff(b, 1_663_370) }

// BenchmarkTrainerHandoff100M is a 100M-parameter model (400 MB).
func BenchmarkTrainerHandoff100M(b *testing.B) { benchTrainerHandoff(b, 100_000_000) }
