package tensor

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
)

func TestPredictProbabilities(t *testing.T) {
	spec, _ := NamedSpec(SpecCNN)
	m, err := NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	n := 3*m.predictCap + 5 // several chunks, the last one short
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, n*784)
	for i := range x {
		x[i] = rng.Float32()
	}
	probs, err := m.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != n*10 {
		t.Fatalf("%d probabilities for %d examples", len(probs), n)
	}
	for i := range n {
		var sum float64
		for _, p := range probs[i*10 : i*10+10] {
			if p < 0 || p > 1 || math.IsNaN(float64(p)) {
				t.Fatalf("example %d: probability %v", i, p)
			}
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Fatalf("example %d: probabilities sum to %v", i, sum)
		}
	}
	// Each example alone gives the same answer as in the big batch.
	for _, i := range []int{0, m.predictCap, n - 1} {
		one, err := m.Predict(x[i*784:(i+1)*784], 1)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 10 {
			if d := math.Abs(float64(one[j] - probs[i*10+j])); d > 1e-5 {
				t.Errorf("example %d class %d: alone %v, in batch %v", i, j, one[j], probs[i*10+j])
			}
		}
	}
}

func TestPredictConcurrent(t *testing.T) {
	spec, _ := NamedSpec(Spec2NN)
	m, _ := NewModel(spec, 4)
	rng := rand.New(rand.NewPCG(2, 2))
	const n = 50
	x := make([]float32, n*784)
	for i := range x {
		x[i] = rng.Float32()
	}
	want, err := m.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 1 + g%n
			dst := make([]float32, k*10)
			for range 20 {
				if err := m.PredictInto(dst, x[:k*784], k); err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(dst, want[:k*10]) {
					errs <- errors.New("concurrent prediction differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestPredictErrors(t *testing.T) {
	spec, _ := NamedSpec(SpecLogReg)
	m, _ := NewModel(spec, 1)
	tests := []struct {
		name string
		dst  []float32
		x    []float32
		n    int
	}{
		{"short x", make([]float32, 20), make([]float32, 783), 1},
		{"long x", make([]float32, 20), make([]float32, 785), 1},
		{"negative n", make([]float32, 20), nil, -1},
		{"short dst", make([]float32, 9), make([]float32, 784), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := m.PredictInto(tt.dst, tt.x, tt.n); !errors.Is(err, ErrShape) {
				t.Errorf("PredictInto = %v, want ErrShape", err)
			}
		})
	}
	if p, err := m.Predict(nil, 0); err != nil || len(p) != 0 {
		t.Errorf("Predict of nothing = %v, %v", p, err)
	}
	g, _ := NewModel(GCNSpec(4, 3, 2), 1)
	if _, err := g.Predict(make([]float32, 4), 1); !errors.Is(err, ErrNeedsGraph) {
		t.Errorf("Predict on a GCN = %v, want ErrNeedsGraph", err)
	}
}

// TestSoftmaxStable feeds logits far outside exp's range: the softmax and
// the loss must stay finite.
func TestSoftmaxStable(t *testing.T) {
	logits := []float32{1000, -1000, 0, 88.8, 89, 1e30}
	grad := make([]float32, 6)
	loss, correct := softmaxXent(logits, 3, []int32{1, 2}, nil, 2, grad, 2)
	if math.IsNaN(loss) || math.IsInf(loss, 0) || math.Abs(loss-2000) > 1e-3 {
		t.Errorf("loss %v", loss)
	}
	if correct != 1 {
		t.Errorf("correct = %d, want 1", correct)
	}
	for _, g := range grad {
		if math.IsNaN(float64(g)) {
			t.Fatalf("NaN gradient %v", grad)
		}
	}
	// Row 0: softmax ≈ (1, 0, 0), label 1: gradient (1, -1, 0)/2.
	if math.Abs(float64(grad[0]-0.5)) > 1e-6 || math.Abs(float64(grad[1]+0.5)) > 1e-6 {
		t.Errorf("gradient row 0 = %v", grad[:3])
	}
	softmaxRows(logits, 2, 3)
	if logits[0] != 1 || logits[1] != 0 || logits[5] != 1 {
		t.Errorf("softmax %v", logits)
	}
}

// twoCommunities is a graph of two dense clusters with sparse links
// between them; node features are noisy hints of the cluster.
func twoCommunities(n int, seed uint64) *Graph {
	rng := rand.New(rand.NewPCG(seed, 3))
	var edges [][2]int32
	for i := range n {
		for j := i + 1; j < n; j++ {
			same := i%2 == j%2
			if (same && rng.Float64() < 0.1) || (!same && rng.Float64() < 0.005) {
				edges = append(edges, [2]int32{int32(i), int32(j)})
			}
		}
	}
	adj, err := NormalizeAdjacency(n, edges)
	if err != nil {
		panic(err)
	}
	const f = 8
	g := &Graph{Adj: adj, X: make([]float32, n*f), Features: f, Y: make([]int32, n), Classes: 2}
	for i := range n {
		g.Y[i] = int32(i % 2)
		for j := range f {
			g.X[i*f+j] = float32(rng.NormFloat64())
		}
		g.X[i*f+i%2] += 0.8 // a weak hint, unreliable alone
	}
	return g
}

func TestTrainGraph(t *testing.T) {
	g := twoCommunities(200, 1)
	m, err := NewModel(GCNSpec(8, 16, 2), 2)
	if err != nil {
		t.Fatal(err)
	}
	trainIdx, testIdx := seq(0, 20), seq(20, 200)
	before, _ := EvaluateGraph(m, g, testIdx)
	epochs := 0
	st, err := TrainGraph(context.Background(), m, g, trainIdx, TrainConfig{Epochs: 100, Seed: 3,
		Optimizer: NewAdam(AdamConfig{LR: 0.01, WeightDecay: 5e-4}),
		Progress:  func(p TrainProgress) { epochs = p.Epoch }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Steps != 100 || epochs != 100 || st.Examples != 2000 {
		t.Errorf("stats %+v, progress epochs %d", st, epochs)
	}
	after, err := EvaluateGraph(m, g, testIdx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Total != 180 || after.Accuracy() < 0.9 {
		t.Errorf("test accuracy %.3f (before %.3f)", after.Accuracy(), before.Accuracy())
	}
	probs, err := m.PredictGraph(g)
	if err != nil {
		t.Fatal(err)
	}
	correct := 0
	for _, i := range testIdx {
		if (probs[2*i+1] > probs[2*i]) == (g.Y[i] == 1) {
			correct++
		}
		if math.Abs(float64(probs[2*i]+probs[2*i+1]-1)) > 1e-5 {
			t.Fatalf("node %d probabilities %v", i, probs[2*i:2*i+2])
		}
	}
	if correct != after.Correct {
		t.Errorf("PredictGraph gets %d right, EvaluateGraph %d", correct, after.Correct)
	}

	// Reproducible: dropout masks come from the seed.
	run := func() []float32 {
		m, _ := NewModel(GCNSpec(8, 16, 2), 2)
		if _, err := TrainGraph(context.Background(), m, g, trainIdx, TrainConfig{Epochs: 5, Seed: 9, LR: 0.1}); err != nil {
			t.Fatal(err)
		}
		return m.Params
	}
	if !reflect.DeepEqual(run(), run()) {
		t.Error("TrainGraph is not reproducible")
	}
}

func TestGraphErrors(t *testing.T) {
	g := twoCommunities(10, 1)
	m, _ := NewModel(GCNSpec(8, 4, 2), 1)
	ctx := context.Background()
	bad := func(mut func(g *Graph)) *Graph {
		c := *g
		a := *g.Adj
		a.RowPtr = append([]int32(nil), a.RowPtr...)
		a.ColIdx = append([]int32(nil), a.ColIdx...)
		c.Adj = &a
		c.Y = append([]int32(nil), g.Y...)
		mut(&c)
		return &c
	}
	tests := []struct {
		name string
		g    *Graph
		idx  []int
		want error
	}{
		{"nil graph", nil, nil, ErrShape},
		{"index", g, []int{10}, ErrShape},
		{"features", bad(func(g *Graph) { g.Features = 7 }), nil, ErrShape},
		{"label", bad(func(g *Graph) { g.Y[3] = 2 }), nil, ErrShape},
		{"nil adjacency", bad(func(g *Graph) { g.Adj = nil }), nil, ErrShape},
		{"column", bad(func(g *Graph) { g.Adj.ColIdx[0] = 10 }), nil, ErrShape},
		{"row pointers", bad(func(g *Graph) { g.Adj.RowPtr[3] = 1000 }), nil, ErrShape},
		{"rows", bad(func(g *Graph) { g.Adj.Rows = 9 }), nil, ErrShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := TrainGraph(ctx, m, tt.g, tt.idx, TrainConfig{}); !errors.Is(err, tt.want) {
				t.Errorf("TrainGraph = %v, want %v", err, tt.want)
			}
			if _, err := EvaluateGraph(m, tt.g, tt.idx); !errors.Is(err, tt.want) {
				t.Errorf("EvaluateGraph = %v, want %v", err, tt.want)
			}
		})
	}
	plain, _ := NewModel(mlpSpec(8, 4, 2, 0), 1)
	if _, err := TrainGraph(ctx, plain, g, []int{0}, TrainConfig{}); !errors.Is(err, ErrNeedsGraph) {
		t.Errorf("TrainGraph on an MLP = %v, want ErrNeedsGraph", err)
	}
	if _, err := plain.PredictGraph(g); !errors.Is(err, ErrNeedsGraph) {
		t.Errorf("PredictGraph on an MLP = %v, want ErrNeedsGraph", err)
	}
}

// TestSoftmaxRowsOverflow feeds softmaxRows the logits of inputs near the
// float32 limit: values that overflowed to ±Inf must still give
// probabilities (finite, summing to 1), and only NaN stays NaN.
func TestSoftmaxRowsOverflow(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		name string
		row  []float32
		want []float32 // nil: every value NaN
	}{
		{"huge finite", []float32{3e38, -3e38, 1e38}, []float32{1, 0, 0}},
		{"one +Inf", []float32{inf, 1, -inf}, []float32{1, 0, 0}},
		{"two +Inf", []float32{inf, 5, inf}, []float32{0.5, 0, 0.5}},
		{"all -Inf", []float32{-inf, -inf}, []float32{0.5, 0.5}},
		{"NaN", []float32{float32(math.NaN()), 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := append([]float32(nil), tt.row...)
			softmaxRows(z, 1, len(z))
			for j, v := range z {
				if tt.want == nil {
					if !math.IsNaN(float64(v)) {
						t.Fatalf("softmax(%v) = %v, want NaN", tt.row, z)
					}
					continue
				}
				if !(math.Abs(float64(v-tt.want[j])) <= 1e-6) {
					t.Fatalf("softmax(%v) = %v, want %v", tt.row, z, tt.want)
				}
			}
		})
	}
}
