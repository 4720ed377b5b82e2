package tensor

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// blobs returns n examples of Gaussian clusters, one per class, in
// features dimensions; the cluster centres are far apart, so a model that
// learns gets them nearly all right.
func blobs(n, features, classes int, seed uint64, shape ...int) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 5))
	centres := make([]float32, classes*features)
	for i := range centres {
		centres[i] = float32(rng.NormFloat64() * 1.5)
	}
	if shape == nil {
		shape = []int{features}
	}
	ds := &Dataset{X: make([]float32, n*features), Y: make([]int32, n), Shape: shape, Classes: classes}
	for i := range n {
		c := rng.IntN(classes)
		ds.Y[i] = int32(c)
		for j := range features {
			ds.X[i*features+j] = centres[c*features+j] + float32(rng.NormFloat64()*0.7)
		}
	}
	return ds
}

func mlpSpec(features, hidden, classes int, dropout float64) Spec {
	layers := []LayerSpec{{Type: LayerDense, Units: hidden}, {Type: LayerReLU}}
	if dropout > 0 {
		layers = append(layers, LayerSpec{Type: LayerDropout, Rate: dropout})
	}
	layers = append(layers, LayerSpec{Type: LayerDense, Units: classes})
	return Spec{Input: []int{features}, Layers: layers}
}

func smallCNNSpec() Spec {
	return Spec{Input: []int{2, 8, 8}, Layers: []LayerSpec{
		{Type: LayerConv2D, Filters: 8, Kernel: 3, Padding: 1}, {Type: LayerReLU},
		{Type: LayerMaxPool, Kernel: 2},
		{Type: LayerConv2D, Filters: 8, Kernel: 3, Padding: 1}, {Type: LayerReLU},
		{Type: LayerFlatten}, {Type: LayerDropout, Rate: 0.25},
		{Type: LayerDense, Units: 4},
	}}
}

func TestTrainLearns(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		ds   *Dataset
		cfg  TrainConfig
	}{
		{"mlp-sgd", mlpSpec(20, 32, 4, 0), blobs(600, 20, 4, 1), TrainConfig{Epochs: 5, BatchSize: 16, LR: 0.05}},
		{"mlp-dropout-momentum", mlpSpec(20, 32, 4, 0.3), blobs(600, 20, 4, 2),
			TrainConfig{Epochs: 5, BatchSize: 10, Optimizer: NewSGD(SGDConfig{LR: 0.02, Momentum: 0.9, WeightDecay: 1e-4})}},
		{"mlp-adam", mlpSpec(20, 32, 4, 0), blobs(600, 20, 4, 3), TrainConfig{Epochs: 5, BatchSize: 32, Optimizer: NewAdam(AdamConfig{LR: 0.01})}},
		{"cnn", smallCNNSpec(), blobs(400, 128, 4, 4, 2, 8, 8), TrainConfig{Epochs: 4, BatchSize: 20, LR: 0.05}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewModel(tt.spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			test := tt.ds.Subset(seq(0, 100))
			train := tt.ds.Subset(seq(100, tt.ds.Len()))
			before, err := Evaluate(m, test)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Train(context.Background(), m, train, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			after, err := Evaluate(m, test)
			if err != nil {
				t.Fatal(err)
			}
			batches := (train.Len() + tt.cfg.BatchSize - 1) / tt.cfg.BatchSize
			if st.Epochs != tt.cfg.Epochs || st.Steps != tt.cfg.Epochs*batches || st.Examples != int64(tt.cfg.Epochs*train.Len()) {
				t.Errorf("stats %+v, want %d epochs of %d batches", st, tt.cfg.Epochs, batches)
			}
			if after.Total != 100 || after.Accuracy() < 0.95 {
				t.Errorf("test accuracy %.3f after training (%.3f before)", after.Accuracy(), before.Accuracy())
			}
			if after.Loss() >= before.Loss() {
				t.Errorf("test loss %.3f did not fall from %.3f", after.Loss(), before.Loss())
			}
		})
	}
}

func seq(a, b int) []int {
	s := make([]int, 0, b-a)
	for i := a; i < b; i++ {
		s = append(s, i)
	}
	return s
}

func TestTrainReproducible(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		ds   *Dataset
	}{
		{"mlp-dropout", mlpSpec(12, 16, 3, 0.5), blobs(200, 12, 3, 9)},
		{"cnn-dropout", smallCNNSpec(), blobs(120, 128, 4, 10, 2, 8, 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := func(seed uint64) []float32 {
				m, err := NewModel(tt.spec, 3)
				if err != nil {
					t.Fatal(err)
				}
				cfg := TrainConfig{Epochs: 2, BatchSize: 7, Seed: seed, Optimizer: NewSGD(SGDConfig{LR: 0.05, Momentum: 0.5})}
				if _, err := Train(context.Background(), m, tt.ds, cfg); err != nil {
					t.Fatal(err)
				}
				return m.Params
			}
			a, b, c := run(11), run(11), run(12)
			if !reflect.DeepEqual(a, b) {
				t.Error("same seed, different parameters")
			}
			if reflect.DeepEqual(a, c) {
				t.Error("different seeds, same parameters")
			}
		})
	}
}

func TestTrainCancelAndProgress(t *testing.T) {
	ds := blobs(100, 8, 2, 1)
	m, _ := NewModel(mlpSpec(8, 8, 2, 0), 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls []TrainProgress
	cfg := TrainConfig{Epochs: 3, BatchSize: 10, ProgressEvery: 1, Progress: func(p TrainProgress) {
		calls = append(calls, p)
		if p.Epoch == 2 && p.Batch == 3 {
			cancel()
		}
	}}
	st, err := Train(ctx, m, ds, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Train = %v, want context.Canceled", err)
	}
	if st.Steps != 13 || st.Epochs != 1 || st.Examples != 130 {
		t.Errorf("stats after cancel %+v, want 13 steps in epoch 2", st)
	}
	if len(calls) != 13 {
		t.Fatalf("%d progress calls, want 13", len(calls))
	}
	for i, p := range calls {
		if p.Examples != int64(10*(i+1)) || p.Batches != 10 || math.IsNaN(p.Loss) || p.Loss <= 0 {
			t.Errorf("call %d: %+v", i, p)
		}
		if p.EpochDone != (i == 9) {
			t.Errorf("call %d: EpochDone = %v", i, p.EpochDone)
		}
	}

	// ProgressEvery zero: one call per epoch, at its end.
	calls = nil
	cfg.ProgressEvery = 0
	if _, err := Train(context.Background(), m, ds, cfg); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || !calls[2].EpochDone || calls[2].Epoch != 3 || calls[2].Batch != 10 {
		t.Errorf("per-epoch progress %+v", calls)
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	m, _ := NewModel(mlpSpec(8, 8, 2, 0), 1)
	ctx := context.Background()
	tests := []struct {
		name string
		ds   *Dataset
		want error
	}{
		{"nil", nil, ErrShape},
		{"features", blobs(10, 9, 2, 1), ErrShape},
		{"classes", blobs(10, 8, 3, 1), ErrShape},
		{"label", &Dataset{X: make([]float32, 8), Y: []int32{5}, Shape: []int{8}, Classes: 2}, ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Train(ctx, m, tt.ds, TrainConfig{}); !errors.Is(err, tt.want) {
				t.Errorf("Train = %v, want %v", err, tt.want)
			}
			if _, err := Evaluate(m, tt.ds); !errors.Is(err, tt.want) {
				t.Errorf("Evaluate = %v, want %v", err, tt.want)
			}
		})
	}
	g, _ := NewModel(GCNSpec(8, 4, 2), 1)
	if _, err := Train(ctx, g, blobs(10, 8, 2, 1), TrainConfig{}); !errors.Is(err, ErrNeedsGraph) {
		t.Errorf("Train(gcn) = %v, want ErrNeedsGraph", err)
	}
	m.Params = m.Params[:10]
	if _, err := Train(ctx, m, blobs(10, 8, 2, 1), TrainConfig{}); !errors.Is(err, ErrShape) {
		t.Errorf("Train with truncated Params = %v, want ErrShape", err)
	}
}

// A model without parameters trains (nothing moves) and evaluates.
func TestTrainParameterless(t *testing.T) {
	m, err := NewModel(Spec{Input: []int{1, 2, 2}, Layers: []LayerSpec{{Type: LayerReLU}, {Type: LayerFlatten}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ds := &Dataset{X: []float32{3, 1, 0, 0, 0, 0, 2, 5}, Y: []int32{0, 3}, Shape: []int{1, 2, 2}, Classes: 4}
	st, err := Train(context.Background(), m, ds, TrainConfig{Epochs: 2})
	if err != nil || st.Steps != 2 || st.Accuracy != 1 {
		t.Fatalf("Train = %+v, %v", st, err)
	}
	met, err := Evaluate(m, ds)
	if err != nil || met.Correct != 2 {
		t.Fatalf("Evaluate = %+v, %v", met, err)
	}
}

// The GCN's gradient buffers cover only the layers backward visits: not
// the input-sized dropout in front of the first graph convolution.
func TestGradientBuffersSkipInputLayers(t *testing.T) {
	m, _ := NewModel(GCNSpec(500, 16, 7), 1)
	ws := m.newWorkspace(100, modeTrain)
	if len(ws.gA) != 100*16 || m.firstParam != 1 {
		t.Errorf("gradient buffer of %d values, first parameter layer %d", len(ws.gA), m.firstParam)
	}
}

func TestTrainDiverges(t *testing.T) {
	m, _ := NewModel(mlpSpec(8, 8, 2, 0), 1)
	_, err := Train(context.Background(), m, blobs(50, 8, 2, 1), TrainConfig{Epochs: 20, BatchSize: 5, LR: 1e30})
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("Train with lr 1e30 = %v, want ErrDiverged", err)
	}
}

// TestTrainStepAllocs checks that a steady-state training step of the 2nn
// (gather, forward, loss, backward, optimizer) allocates nothing, also
// with a standardize layer in front.
func TestTrainStepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	spec, _ := NamedSpec(Spec2NN)
	shift, scale := stdConsts(784, 1)
	std, err := spec.Standardized(shift, scale)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Spec{spec, std} {
		trainStepAllocs(t, s)
	}
}

func trainStepAllocs(t *testing.T, spec Spec) {
	m, _ := NewModel(spec, 1)
	ds := blobs(64, 784, 10, 1, 1, 28, 28)
	opt := NewSGD(SGDConfig{LR: 0.01, Momentum: 0.9})
	for _, batch := range []int{10, 64} {
		ws := m.trainWorkspace(batch)
		ps := &pass{train: true, rng: rand.New(rand.NewPCG(1, 2))}
		f := m.Features()
		step := func() {
			for j := range batch {
				m.putExample(ws.in[j*f:(j+1)*f], ds.Row(j))
				ws.labels[j] = ds.Y[j]
			}
			m.trainStep(ws, ps, ws.in[:batch*f], ws.labels[:batch], nil, batch)
			opt.Step(m.Params, m.Grads)
		}
		step()
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("%d layers, B=%d: %v allocations per training step, want 0", len(spec.Layers), batch, a)
		}
	}
}

func TestEvaluateMatchesPredict(t *testing.T) {
	ds := blobs(2500, 6, 3, 4)
	m, _ := NewModel(mlpSpec(6, 10, 3, 0), 2)
	m.predictCap = 64 // many chunks, several goroutines
	got, err := Evaluate(m, ds)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := m.Predict(ds.X, ds.Len())
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{Total: ds.Len()}
	for i := range ds.Len() {
		row := probs[i*3 : i*3+3]
		arg := 0
		for j := range row {
			if row[j] > row[arg] {
				arg = j
			}
		}
		if arg == int(ds.Y[i]) {
			want.Correct++
		}
		want.LossSum -= math.Log(float64(row[ds.Y[i]]))
	}
	if got.Correct != want.Correct || got.Total != want.Total || math.Abs(got.LossSum-want.LossSum) > 1e-3*want.LossSum {
		t.Errorf("Evaluate = %+v, from Predict %+v", got, want)
	}
}
