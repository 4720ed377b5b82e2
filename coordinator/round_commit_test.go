package coordinator

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/fedge/fedge/tensor"
)

// TestStepModelExactAndBounded steps a 50 MB external model with a mean
// delta as a round's commit does: plain FedAvg streams the parent from
// its blob into the delta's memory, allocating less than a quarter of
// the model, and FedAvgM loads it; both give exactly the reference step.
func TestStepModelExactAndBounded(t *testing.T) {
	p := 12_500_000 // 50 MB of float32
	if testing.Short() {
		p = 2_500_000
	}
	spec, err := tensor.ExternalSpec("big", []tensor.ExternalTensor{{Name: "w", Shape: []int{p}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 9))
	w := make([]float32, p)
	for i := range w {
		w[i] = rng.Float32() - 0.5
	}
	parent, err := tensor.NewExternalModel(spec, w)
	if err != nil {
		t.Fatal(err)
	}
	file, err := parent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	fsm := NewFSM(nil)
	rep := &memRep{f: fsm}
	ctx := context.Background()
	if _, err := rep.apply(ctx, cmdBootstrap, bootstrapCmd{ClusterName: "mem", CA: []byte("ca")}, nil); err != nil {
		t.Fatal(err)
	}
	v, err := rep.apply(ctx, cmdModelImport, importCmd(file), file)
	if err != nil {
		t.Fatal(err)
	}
	file = nil
	e := newEngine(discardLogger(), EngineConfig{}, fsm, rep, func() []AgentLink { return nil }, nil)
	mean := make([]float32, p)
	for i := range mean {
		mean[i] = (rng.Float32() - 0.5) / 100
	}
	for _, tt := range []struct {
		name     string
		strategy StrategySpec
		streamed bool
	}{
		{"fedavg", StrategySpec{Name: "fedavg"}, true},
		{"fedavgm", StrategySpec{Name: "fedavgm", Momentum: 0.5}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ref, _ := NewStrategy(tt.strategy)
			want := slices.Clone(parent.Params)
			if err := ref.Apply(want, mean); err != nil {
				t.Fatal(err)
			}
			strat, _ := NewStrategy(tt.strategy)
			d := slices.Clone(mean)
			job := &JobRecord{ID: "j", Model: v.(uint64), Spec: JobSpec{Strategy: tt.strategy}}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			next, push, _, err := e.stepModel(&activeRound{}, job, strat, d)
			runtime.ReadMemStats(&after)
			if err != nil || push != nil {
				t.Fatalf("push %d bytes, %v", len(push), err)
			}
			if !slices.Equal(next.Params, want) {
				t.Fatal("the next model differs from the reference step")
			}
			inPlace := unsafe.SliceData(next.Params) == unsafe.SliceData(d)
			grew := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: allocated %d bytes for a %d-byte model (in the delta's memory: %v)", tt.name, grew, 4*p, inPlace)
			if inPlace != tt.streamed {
				t.Fatalf("next model in the delta's memory: %v, want %v", inPlace, tt.streamed)
			}
			if tt.streamed && grew >= uint64(p) {
				t.Fatalf("the streamed step allocated %d bytes, want under a quarter of the %d-byte model", grew, 4*p)
			}
		})
	}
}
