package agent

import (
	"context"
	"runtime"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestTrainConfigThreads: a job limited by jobs.threads to 1 thread
// trains on one worker in the engine; without the limit the same
// training uses the process's threads.
func TestTrainConfigThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // at least two, even on one core
	spec, err := tensor.NamedSpec(tensor.Spec2NN)
	if err != nil {
		t.Fatal(err)
	}
	ds := &tensor.Dataset{X: make([]float32, 64*784), Y: make([]int32, 64), Shape: []int{784}, Classes: 10}
	for i := range ds.X {
		ds.X[i] = float32(i%255) / 255
	}
	plan := &protocol.RoundPlan{Epochs: 1, BatchSize: 64}
	for _, tt := range []struct{ threads, want int }{{1, 1}, {0, 2}} {
		m, err := tensor.NewModel(spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		a := &Agent{cfg: Config{Jobs: JobsConfig{Threads: tt.threads}}, m: newMetrics()}
		st, err := tensor.Train(context.Background(), m, ds, a.trainConfig(plan, nil, 1))
		if err != nil {
			t.Fatal(err)
		}
		if st.Workers != tt.want {
			t.Errorf("jobs.threads %d: the engine trained on %d workers, want %d", tt.threads, st.Workers, tt.want)
		}
	}
}
