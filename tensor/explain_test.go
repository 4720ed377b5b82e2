package tensor

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// logitsOf returns the logits of the n examples x (input layout), from
// the inference path.
func logitsOf(m *Model, x []float32, n int) []float32 {
	c := m.Classes()
	out := make([]float32, n*c)
	m.chunked(n, func(ws *workspace, ps *pass, e0, e1 int) {
		copy(out[e0*c:e1*c], m.forward(ws, ps, m.input(ws, x[e0*m.Features():e1*m.Features()], e1-e0), e1-e0))
	})
	return out
}

// graphLogitsAt returns the logits of every node of g with features x.
func graphLogitsAt(m *Model, g *Graph, x []float32) []float32 {
	n := g.Nodes()
	ws := m.newWorkspace(n, modeInfer)
	return append([]float32(nil), m.forward(ws, &pass{adj: g.Adj}, x, n)...)
}

// randomised returns a model of tc's spec with perturbed biases, and
// normal inputs for its examples.
func randomised(t *testing.T, tc gradCase, seed uint64) (*Model, []float32) {
	t.Helper()
	m, err := NewModel(tc.spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	if tc.tweak != nil {
		tc.tweak(m)
	}
	rng := rand.New(rand.NewPCG(seed, 5))
	for i := range m.Params {
		m.Params[i] += float32(rng.NormFloat64() * 0.05)
	}
	x := make([]float32, tc.n*m.Features())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return m, x
}

// TestInputGradientMatchesFiniteDifferences checks the gradient of a class
// logit with respect to the input, through every layer type, against
// central finite differences of the evaluation path's logits. Dropout
// layers are the identity here, as in serving.
func TestInputGradientMatchesFiniteDifferences(t *testing.T) {
	for _, tc := range gradCases() {
		if tc.graph || tc.spec.Layers[0].Type == LayerEmbeddingBag {
			continue // graphs below; token ids have no gradient (TestExplainRefusesTokenIDs)
		}
		t.Run(tc.name, func(t *testing.T) {
			m, x := randomised(t, tc, 11)
			f, c := m.Features(), m.Classes()
			classes := make([]int, tc.n)
			for i := range classes {
				classes[i] = (i + 1) % c
			}
			grad := make([]float32, tc.n*f)
			if err := m.InputGradient(grad, x, tc.n, classes); err != nil {
				t.Fatal(err)
			}
			checkInputGradient(t, grad, x, f, c, classes, func(x []float32) []float32 { return logitsOf(m, x, tc.n) })
		})
	}
}

// checkInputGradient compares grad with central differences of the class
// logits that logits computes; a difference that crosses a kink (a ReLU
// sign, a max-pool winner) may disagree, but only a few may.
func checkInputGradient(t *testing.T, grad, x []float32, f, c int, classes []int, logits func([]float32) []float32) {
	t.Helper()
	const eps = 1e-3
	bad, nonzero := 0, 0
	xp := append([]float32(nil), x...)
	idx := rand.New(rand.NewPCG(uint64(len(x)), 1)).Perm(len(x))
	idx = idx[:min(len(idx), 200)] // the big cases: a sample
	for _, i := range idx {
		e := i / f
		if e >= len(classes) {
			e = len(classes) - 1 // graphs: one node's class, every node's features
		}
		xp[i] = x[i] + eps
		lp := logits(xp)
		xp[i] = x[i] - eps
		lm := logits(xp)
		xp[i] = x[i]
		k := e*c + classes[e]
		num := (float64(lp[k]) - float64(lm[k])) / (2 * eps)
		ana := float64(grad[i])
		if math.Abs(num-ana) > 2e-3+2e-2*math.Max(math.Abs(num), math.Abs(ana)) {
			bad++
			if bad <= 3 {
				t.Logf("input %d: analytic %.6g, numeric %.6g", i, ana, num)
			}
		}
		if ana != 0 {
			nonzero++
		}
	}
	if bad > len(idx)/20 {
		t.Errorf("%d of %d input gradients differ from finite differences", bad, len(idx))
	}
	// A ReLU in front of a 2×2 max-pool passes at most a quarter.
	if nonzero < len(idx)/8 {
		t.Errorf("only %d of %d input gradients are non-zero", nonzero, len(idx))
	}
}

// completenessTol is the completeness error allowed with 512 steps: the
// midpoint rule is exact between kinks (ReLU signs, max-pool winners) and
// errs by at most the slope's jump × step/2 at each.
func completenessTol(diff float64) float64 { return 5e-3 + 1e-2*math.Abs(diff) }

// TestExplainCompleteness is the completeness property of integrated
// gradients on every layer type: the attributions sum to the change of
// the class logit between the baseline and the input.
func TestExplainCompleteness(t *testing.T) {
	for _, tc := range gradCases() {
		if tc.graph || tc.spec.Layers[0].Type == LayerEmbeddingBag {
			continue // graphs below; token ids have no gradient (TestExplainRefusesTokenIDs)
		}
		t.Run(tc.name, func(t *testing.T) {
			m, x := randomised(t, tc, 21)
			f := m.Features()
			rng := rand.New(rand.NewPCG(3, 3))
			base := make([]float32, f)
			for i := range base {
				base[i] = float32(rng.NormFloat64() * 0.3)
			}
			for _, b := range [][]float32{nil, base} {
				n := min(tc.n, 3) // the big cases: a few
				atts, err := m.Explain(x[:n*f], n, nil, ExplainConfig{Steps: 512, Baseline: b})
				if err != nil {
					t.Fatal(err)
				}
				want := logitsOf(m, x, tc.n)
				for i, a := range atts {
					row := want[i*m.Classes() : (i+1)*m.Classes()]
					if a.Class != argmaxf(row) || a.Logit != row[a.Class] {
						t.Fatalf("example %d: explained class %d (logit %v), predicted %d (%v)", i, a.Class, a.Logit, argmaxf(row), row)
					}
					diff := float64(a.Logit - a.BaselineLogit)
					if e := a.CompletenessError(); math.Abs(e) > completenessTol(diff) {
						t.Errorf("example %d: attributions sum to %.5g, logit changed by %.5g (error %.3g)", i, diff+e, diff, e)
					}
					if len(a.Values) != f {
						t.Fatalf("%d attributions for %d features", len(a.Values), f)
					}
				}
			}
		})
	}
}

func argmaxf(p []float32) int {
	k := 0
	for j, v := range p {
		if v > p[k] {
			k = j
		}
	}
	return k
}

// TestExplainLinearExact: for a model that is linear in its input
// (standardize, dense, flatten, dropout) integrated gradients are exact
// with one step, and each attribution is (x_i − b_i)·W_ic·scale_i.
func TestExplainLinearExact(t *testing.T) {
	spec := Spec{Input: []int{1, 2, 3}, Layers: []LayerSpec{stdLayer(6, 9), {Type: LayerFlatten}, {Type: LayerDropout, Rate: 0.5},
		{Type: LayerDense, Units: 4}}}
	m, err := NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1, -2, 0.5, 3, 0, -1}
	atts, err := m.Explain(x, 1, []int{2}, ExplainConfig{Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := m.LayerParams(3)
	for i, v := range atts[0].Values {
		want := x[i] * w[i*4+2] * spec.Layers[0].Scale[i]
		if math.Abs(float64(v-want)) > 1e-5 {
			t.Errorf("attribution %d = %v, want %v", i, v, want)
		}
	}
	if e := atts[0].CompletenessError(); math.Abs(e) > 1e-5 {
		t.Errorf("completeness error %v with one step on a linear model", e)
	}
	// The baseline equal to the input explains nothing.
	same, err := m.Explain(x, 1, nil, ExplainConfig{Baseline: x})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range same[0].Values {
		if v != 0 {
			t.Errorf("attribution %d = %v with the input as baseline", i, v)
		}
	}
}

// TestExplainGraphCompleteness: the graph convolution's input gradients
// match finite differences, and integrated gradients over all nodes'
// features are complete for one node's logit.
func TestExplainGraphCompleteness(t *testing.T) {
	for _, tc := range gradCases() {
		if !tc.graph {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			m, x := randomised(t, tc, 31)
			rng := rand.New(rand.NewPCG(8, 8))
			g := &Graph{X: x, Features: m.Features(), Adj: randomCSR(rng, tc.n), Y: make([]int32, tc.n), Classes: m.Classes()}
			node := tc.n - 2
			a, err := m.ExplainGraph(g, node, -1, ExplainConfig{Steps: 512})
			if err != nil {
				t.Fatal(err)
			}
			row := graphLogitsAt(m, g, x)[node*m.Classes() : (node+1)*m.Classes()]
			if a.Class != argmaxf(row) {
				t.Fatalf("explained class %d, predicted %d", a.Class, argmaxf(row))
			}
			diff := float64(a.Logit - a.BaselineLogit)
			if e := a.CompletenessError(); math.Abs(e) > completenessTol(diff) {
				t.Errorf("attributions sum to %.5g, logit changed by %.5g", diff+e, diff)
			}
			// One step from the baseline −x samples the gradient at the
			// path's midpoint, zero: attribution_i = 2·x_i·∂F/∂x_i(0).
			// Compare that gradient with finite differences there.
			neg := make([]float32, len(x))
			for i, v := range x {
				neg[i] = -v
			}
			one, err := m.ExplainGraph(g, node, a.Class, ExplainConfig{Steps: 1, Baseline: neg})
			if err != nil {
				t.Fatal(err)
			}
			grad := make([]float32, len(x))
			for i, v := range one.Values {
				if x[i] != 0 {
					grad[i] = v / (2 * x[i]) // attribution = (x − (−x))·∇F(0)
				}
			}
			zero := make([]float32, len(x))
			checkInputGradient(t, grad, zero, len(x), m.Classes(), []int{a.Class}, func(in []float32) []float32 {
				return graphLogitsAt(m, g, in)[node*m.Classes():]
			})
		})
	}
}

func TestExplainErrors(t *testing.T) {
	m, err := NewModel(Spec{Input: []int{3}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 2, 3}
	tests := []struct {
		name    string
		classes []int
		cfg     ExplainConfig
	}{
		{"class out of range", []int{2}, ExplainConfig{}},
		{"negative class", []int{-1}, ExplainConfig{}},
		{"too many steps", nil, ExplainConfig{Steps: MaxIGSteps + 1}},
		{"negative steps", nil, ExplainConfig{Steps: -1}},
		{"short baseline", nil, ExplainConfig{Baseline: []float32{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Explain(x, 1, tt.classes, tt.cfg); !errors.Is(err, ErrShape) {
				t.Errorf("err = %v, want ErrShape", err)
			}
		})
	}
	g := &Graph{X: x, Features: 3, Adj: &CSR{Rows: 1, Cols: 1, RowPtr: []int32{0, 1}, ColIdx: []int32{0}, Val: []float32{1}}, Y: []int32{0}, Classes: 2}
	if _, err := m.ExplainGraph(g, 0, -1, ExplainConfig{}); !errors.Is(err, ErrNeedsGraph) {
		t.Errorf("ExplainGraph on a model without graph layers: %v, want ErrNeedsGraph", err)
	}
}

func TestAttributionSums(t *testing.T) {
	m, err := NewModel(Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense, Units: 3}}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	ds := &Dataset{X: []float32{1, 0, -2, 3, 0.5, 1, 1, -1, 2, 2, 0, 0}, Y: []int32{0, 1, 2}, Shape: []int{4}, Classes: 3}
	sums, n, err := AttributionSums(m, ds, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	atts, err := m.Explain(ds.X[:8], 2, nil, ExplainConfig{Steps: 8})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("explained %d examples, want the first 2", n)
	}
	for i := range sums {
		want := math.Abs(float64(atts[0].Values[i])) + math.Abs(float64(atts[1].Values[i]))
		if math.Abs(sums[i]-want) > 1e-6 {
			t.Errorf("feature %d: sum %v, want %v", i, sums[i], want)
		}
	}
	if _, n, _ := AttributionSums(m, ds, 100, 8); n != 3 {
		t.Errorf("explained %d of 3 examples when asked for 100", n)
	}
}

// TestExplainRefusesTokenIDs: a text model's input is token ids, which
// have no gradient; InputGradient and Explain say so instead of returning
// zero attributions.
func TestExplainRefusesTokenIDs(t *testing.T) {
	for _, tc := range gradCases() {
		if tc.spec.Layers[0].Type != LayerEmbeddingBag {
			continue
		}
		m, x := randomised(t, tc, 3)
		for i := range x {
			x[i] = float32(i % 4)
		}
		if _, err := m.Explain(x, tc.n, nil, ExplainConfig{}); !errors.Is(err, ErrNotDifferentiable) {
			t.Fatalf("%s: Explain: %v, want ErrNotDifferentiable", tc.name, err)
		}
		grad := make([]float32, len(x))
		if err := m.InputGradient(grad, x, tc.n, make([]int, tc.n)); !errors.Is(err, ErrNotDifferentiable) {
			t.Fatalf("%s: InputGradient: %v, want ErrNotDifferentiable", tc.name, err)
		}
	}
}
