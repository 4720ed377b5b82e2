package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// gradCase is a small model whose analytic gradient is compared with
// central finite differences of the mean cross-entropy.
type gradCase struct {
	name  string
	spec  Spec
	n     int  // examples (nodes for graph cases)
	graph bool // build a random sparse adjacency and train on some rows
	tweak func(m *Model)
	check int // parameters to check (0: all)
	vocab int // inputs are token ids below vocab, with padding and non-ids among them
}

func gradCases() []gradCase {
	return []gradCase{
		{name: "dense", n: 3, spec: Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerDense, Units: 4}}}},
		{name: "dense-relu-dense", n: 4, spec: Spec{Input: []int{6}, Layers: []LayerSpec{
			{Type: LayerDense, Units: 7}, {Type: LayerReLU}, {Type: LayerDense, Units: 3}}}},
		{name: "flatten-dense", n: 2, spec: Spec{Input: []int{2, 3, 2}, Layers: []LayerSpec{
			{Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
		{name: "conv-same", n: 2, spec: Spec{Input: []int{2, 5, 5}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 3, Kernel: 3, Padding: 1}, {Type: LayerReLU},
			{Type: LayerConv2D, Filters: 2, Kernel: 3, Stride: 2},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
		{name: "conv-stride-pad", n: 2, spec: Spec{Input: []int{1, 7, 6}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 2, Kernel: 3, Stride: 2, Padding: 2},
			{Type: LayerConv2D, Filters: 3, Kernel: 2, Stride: 1, Padding: 1},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 2}}}},
		{name: "conv-chunked", n: 3, spec: Spec{Input: []int{3, 6, 6}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 4, Kernel: 3, Padding: 1}, {Type: LayerReLU},
			{Type: LayerConv2D, Filters: 2, Kernel: 3, Padding: 1},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 3}}},
			// Chunks of 7 and 5 im2col rows straddle example boundaries.
			tweak: func(m *Model) { m.layers[0].(*conv).rows = 7; m.layers[2].(*conv).rows = 5 }},
		{name: "conv-sharded", n: 12, check: 40, spec: Spec{Input: []int{4, 16, 16}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 16, Kernel: 5, Padding: 2},
			{Type: LayerConv2D, Filters: 4, Kernel: 5, Padding: 2},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 3}}},
			tweak: func(m *Model) {
				if m.layers[0].(*conv).shards(12) < 2 || m.layers[1].(*conv).shards(12) < 2 {
					panic("conv-sharded does not shard")
				}
				m.layers[1].(*conv).rows = 300
			}},
		{name: "maxpool", n: 2, spec: Spec{Input: []int{1, 6, 6}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 3, Kernel: 3, Padding: 1},
			{Type: LayerMaxPool, Kernel: 2}, {Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
		{name: "relu-maxpool-fused", n: 3, spec: Spec{Input: []int{2, 6, 6}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 3, Kernel: 3, Padding: 1}, {Type: LayerReLU},
			{Type: LayerMaxPool, Kernel: 2}, {Type: LayerFlatten}, {Type: LayerDense, Units: 3}}},
			tweak: func(m *Model) {
				if !m.fused[1] {
					panic("relu before maxpool not fused")
				}
			}},
		{name: "relu-first-maxpool", n: 2, spec: Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{
			{Type: LayerReLU}, {Type: LayerMaxPool, Kernel: 2}, {Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
		{name: "dropout-first", n: 3, spec: Spec{Input: []int{5}, Layers: []LayerSpec{
			{Type: LayerDropout, Rate: 0.2}, {Type: LayerReLU}, {Type: LayerDense, Units: 4}, {Type: LayerReLU},
			{Type: LayerDropout}, {Type: LayerDense, Units: 3}}}},
		{name: "flatten-relu-chain", n: 2, spec: Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{
			{Type: LayerDropout}, {Type: LayerReLU}, {Type: LayerMaxPool, Kernel: 2}, {Type: LayerFlatten},
			{Type: LayerReLU}, {Type: LayerDense, Units: 3}}},
			tweak: func(m *Model) {
				if m.fused[1] {
					panic("relu after an in-place layer fused")
				}
			}},
		{name: "maxpool-overlap", n: 2, spec: Spec{Input: []int{2, 5, 5}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 2, Kernel: 2},
			{Type: LayerMaxPool, Kernel: 3, Stride: 1}, {Type: LayerFlatten}, {Type: LayerDense, Units: 2}}}},
		{name: "dropout", n: 4, spec: Spec{Input: []int{6}, Layers: []LayerSpec{
			{Type: LayerDense, Units: 8}, {Type: LayerReLU}, {Type: LayerDropout, Rate: 0.4},
			{Type: LayerDense, Units: 3}}}},
		{name: "standardize-first", n: 3, spec: Spec{Input: []int{2, 3, 3}, Layers: []LayerSpec{
			stdLayer(18, 1), {Type: LayerConv2D, Filters: 2, Kernel: 2}, {Type: LayerReLU},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
		{name: "dense-standardize-relu", n: 4, spec: Spec{Input: []int{5}, Layers: []LayerSpec{
			{Type: LayerDense, Units: 6}, stdLayer(6, 2), {Type: LayerReLU}, {Type: LayerDense, Units: 3}}}},
		// The standardize layer changes signs, so it must not overwrite in
		// place the output the ReLU two layers back reads in backward.
		{name: "relu-flatten-standardize", n: 4, spec: Spec{Input: []int{5}, Layers: []LayerSpec{
			{Type: LayerDense, Units: 6}, {Type: LayerReLU}, {Type: LayerFlatten}, stdLayer(6, 3),
			{Type: LayerDense, Units: 3}}}},
		{name: "conv-standardize", n: 2, spec: Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 3, Kernel: 3, Padding: 1}, stdLayer(48, 4), {Type: LayerReLU},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
		{name: "embedding-bag", n: 4, vocab: 7, spec: Spec{Input: []int{6}, Text: &TextSpec{NGrams: 2}, Layers: []LayerSpec{
			{Type: LayerEmbeddingBag, Vocab: 7, Dim: 4}, {Type: LayerDense, Units: 3}}}},
		{name: "embedding-bag-relu-dense", n: 5, vocab: 9, spec: Spec{Input: []int{4}, Layers: []LayerSpec{
			{Type: LayerEmbeddingBag, Vocab: 9, Dim: 5}, {Type: LayerReLU}, {Type: LayerDense, Units: 6},
			{Type: LayerReLU}, {Type: LayerDense, Units: 3}}}},
		{name: "gcn", n: 7, graph: true, spec: Spec{Input: []int{5}, Layers: []LayerSpec{
			{Type: LayerDropout, Rate: 0.3},
			{Type: LayerGCNConv, Units: 4}, {Type: LayerReLU}, {Type: LayerDropout, Rate: 0.3},
			{Type: LayerGCNConv, Units: 3}}}},
		{name: "gcn-dense", n: 6, graph: true, spec: Spec{Input: []int{4}, Layers: []LayerSpec{
			{Type: LayerGCNConv, Units: 5}, {Type: LayerReLU}, {Type: LayerDense, Units: 3}}}},
	}
}

// stdLayer returns a standardize layer over k values with shifts in
// [-0.5, 0.5) and scales in [0.5, 2), drawn from seed.
func stdLayer(k int, seed uint64) LayerSpec {
	rng := rand.New(rand.NewPCG(seed, 77))
	l := LayerSpec{Type: LayerStandardize, Shift: make([]float32, k), Scale: make([]float32, k)}
	for j := range k {
		l.Shift[j] = rng.Float32() - 0.5
		l.Scale[j] = 0.5 + 1.5*rng.Float32()
	}
	return l
}

// gradInput returns n examples of tc's input: normal values, or for a
// token case ids below tc.vocab (repeats included) mixed with PadID,
// out-of-range ids and fractions, which the embedding bag must ignore.
func gradInput(tc gradCase, rng *rand.Rand, n, f int) []float32 {
	x := make([]float32, n*f)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if tc.vocab > 0 {
			switch r := rng.IntN(10); {
			case r == 0:
				x[i] = PadID
			case r == 1:
				x[i] = float32(tc.vocab + rng.IntN(3))
			case r == 2:
				x[i] = float32(rng.IntN(tc.vocab)) + 0.5
			default:
				x[i] = float32(rng.IntN(tc.vocab))
			}
		}
	}
	return x
}

// randomCSR builds an n×n sparse matrix that is NOT symmetric, so the
// transposed product in the GCN backward pass is really exercised.
func randomCSR(rng *rand.Rand, n int) *CSR {
	a := &CSR{Rows: n, Cols: n, RowPtr: make([]int32, n+1)}
	for i := range n {
		for j := range n {
			if i == j || rng.Float64() < 0.35 {
				a.ColIdx = append(a.ColIdx, int32(j))
				a.Val = append(a.Val, float32(rng.Float64()*0.8+0.1))
			}
		}
		a.RowPtr[i+1] = int32(len(a.ColIdx))
	}
	return a
}

func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, tc := range gradCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewModel(tc.spec, 7)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tweak != nil {
				tc.tweak(m)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			// Perturb biases too, so their gradients are not trivially
			// checked at zero.
			for i := range m.Params {
				m.Params[i] += float32(rng.NormFloat64() * 0.05)
			}
			f, c := m.Features(), m.Classes()
			x := gradInput(tc, rng, tc.n, f)
			y := make([]int32, tc.n)
			for i := range y {
				y[i] = int32(rng.IntN(c))
			}
			var adj *CSR
			var rows []int
			if tc.graph {
				adj = randomCSR(rng, tc.n)
				rows = []int{0, 2, 3, tc.n - 1}
			}
			ws := m.newWorkspace(tc.n, modeTrain)
			in := make([]float32, len(x))
			// pattern fingerprints the piecewise-linear choices of the
			// last pass (ReLU signs, max-pool winners): a finite difference
			// across a kink says nothing about the derivative.
			pattern := func() uint64 {
				h := uint64(14695981039346656037)
				mix := func(v uint64) { h = (h ^ v) * 1099511628211 }
				for i, l := range m.layers {
					switch l.(type) {
					case *relu:
						for _, v := range ws.acts[i+1][:tc.n*l.plan().outSize] {
							if v > 0 {
								mix(uint64(i))
							} else {
								mix(7)
							}
						}
					case *maxPool:
						for _, a := range ws.scr[i].i {
							mix(uint64(a))
						}
					}
				}
				return h
			}
			loss := func() float64 {
				ps := &pass{train: true, rng: rand.New(rand.NewPCG(99, 1)), adj: adj}
				copy(in, x)
				xs := m.input(ws, in, tc.n)
				count := tc.n
				if rows != nil {
					count = len(rows)
				}
				l, _ := m.trainStep(ws, ps, xs, y, rows, tc.n)
				return l / float64(count)
			}
			loss()
			grad := append([]float32(nil), m.Grads...)
			idx := make([]int, len(m.Params))
			for i := range idx {
				idx[i] = i
			}
			if tc.check > 0 {
				rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
				idx = idx[:tc.check]
			}
			const eps = 1e-3
			bad, kinks := 0, 0
			for _, i := range idx {
				old := m.Params[i]
				m.Params[i] = old + eps
				lp := loss()
				pp := pattern()
				m.Params[i] = old - eps
				lm := loss()
				pm := pattern()
				m.Params[i] = old
				if pp != pm {
					kinks++
					continue
				}
				num := (lp - lm) / (2 * eps)
				ana := float64(grad[i])
				if d := math.Abs(num - ana); d > 2e-3+2e-2*math.Max(math.Abs(num), math.Abs(ana)) {
					bad++
					if bad <= 5 {
						t.Errorf("param %d: analytic %.6g, numeric %.6g", i, ana, num)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d gradients differ", bad, len(idx))
			}
			if kinks > len(idx)/10 {
				t.Errorf("%d of %d finite differences crossed a kink", kinks, len(idx))
			}
			nonzero := 0
			for _, g := range grad {
				if g != 0 {
					nonzero++
				}
			}
			if nonzero < len(grad)/3 {
				t.Errorf("only %d of %d gradients are non-zero", nonzero, len(grad))
			}
		})
	}
}

// TestEvalMatchesTrainForward checks that the evaluation path (pooled
// workspace, no argmax bookkeeping, in-place layers) computes the same
// logits as the training path, for every gradient case without dropout.
func TestEvalMatchesTrainForward(t *testing.T) {
	for _, tc := range gradCases() {
		if tc.graph || tc.name == "dropout" || tc.name == "dropout-first" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewModel(tc.spec, 3)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(4, 4))
			x := gradInput(tc, rng, tc.n, m.Features())
			orig := append([]float32(nil), x...)
			ws := m.newWorkspace(tc.n, modeTrain)
			logits := m.forward(ws, &pass{train: true}, m.input(ws, x, tc.n), tc.n)
			probs, err := m.Predict(x, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range x {
				if x[i] != orig[i] {
					t.Fatalf("a forward pass wrote into the caller's input at %d", i)
				}
			}
			softmaxRows(logits, tc.n, m.Classes())
			for i := range probs {
				if math.Abs(float64(probs[i]-logits[i])) > 1e-6 {
					t.Fatalf("value %d: eval %v, train %v", i, probs[i], logits[i])
				}
			}
		})
	}
}
