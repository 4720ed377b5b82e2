package tensor

import (
	"context"
	"runtime"
	"testing"
)

// TestTrainThreads: TrainConfig.Threads caps the goroutines of the
// training's products and shards (TrainStats.Workers), for dense and
// convolutional models, while a training without it uses GOMAXPROCS.
func TestTrainThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // at least two, even on one core
	ds := mnistLike(64)
	tests := []struct {
		spec    string
		threads int
		want    int
	}{
		{Spec2NN, 1, 1},
		{Spec2NN, 0, 2},
		{Spec2NN, 5, 2}, // never above GOMAXPROCS
		{SpecCNN, 1, 1},
		{SpecCNN, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			spec, err := NamedSpec(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewModel(spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Train(context.Background(), m, ds, TrainConfig{BatchSize: 64, Seed: 1, Threads: tt.threads})
			if err != nil {
				t.Fatal(err)
			}
			if st.Workers != tt.want {
				t.Errorf("threads %d: trained on %d workers, want %d", tt.threads, st.Workers, tt.want)
			}
		})
	}
}
