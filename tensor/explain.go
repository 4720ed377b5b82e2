package tensor

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Integrated gradients: the attribution of input feature i to the logit
// F_c of class c is (x_i − b_i)·∫₀¹ ∂F_c/∂x_i(b + α(x − b)) dα, for a
// baseline b. The integral is the midpoint rule over Steps points
// α_k = (k + ½)/Steps, each gradient computed by the engine's backward
// pass. The attributions sum to F_c(x) − F_c(b) up to the rule's error
// (completeness); for a model without ReLU or max-pool they sum to it
// exactly, whatever the step count.
const (
	// DefaultIGSteps is the step count when ExplainConfig.Steps is zero.
	DefaultIGSteps = 32
	// MaxIGSteps bounds ExplainConfig.Steps: the cost of an explanation is
	// Steps forward and backward passes.
	MaxIGSteps = 1024
)

// ExplainConfig configures Explain and ExplainGraph. Zero values mean the
// documented defaults.
type ExplainConfig struct {
	// Steps is the number of points of the integral; if zero,
	// DefaultIGSteps; at most MaxIGSteps.
	Steps int
	// Baseline is the input the attributions are measured from: Features()
	// values in the model's input layout (for ExplainGraph, every node's
	// features); if nil, all zeros.
	Baseline []float32
}

func (c ExplainConfig) steps() (int, error) {
	switch {
	case c.Steps == 0:
		return DefaultIGSteps, nil
	case c.Steps < 0 || c.Steps > MaxIGSteps:
		return 0, fmt.Errorf("%d integration steps, want 1 to %d: %w", c.Steps, MaxIGSteps, ErrShape)
	}
	return c.Steps, nil
}

// Attribution is the explanation of one example's score for one class.
type Attribution struct {
	// Class is the class explained.
	Class int
	// Values holds one attribution per input value, in the model's input
	// layout (for ExplainGraph, one per feature of every node).
	Values []float32
	// Logit and BaselineLogit are the class's logit at the input and at
	// the baseline.
	Logit, BaselineLogit float32
}

// CompletenessError returns Σ Values − (Logit − BaselineLogit): how far
// the attributions are from summing to the change of the logit.
func (a Attribution) CompletenessError() float64 {
	var s float64
	for _, v := range a.Values {
		s += float64(v)
	}
	return s - (float64(a.Logit) - float64(a.BaselineLogit))
}

// InputGradient writes into dst (n × Features() values, input layout) the
// gradient of each example's logit of class classes[i] with respect to its
// input: the engine's backward pass, down to the input, in evaluation
// mode (dropout is the identity). It is safe for concurrent use.
func (m *Model) InputGradient(dst, x []float32, n int, classes []int) error {
	if err := m.checkExplain(x, n, classes); err != nil {
		return fmt.Errorf("tensor.Model.InputGradient: %w", err)
	}
	f := m.Features()
	if len(dst) < n*f {
		return fmt.Errorf("tensor.Model.InputGradient: dst holds %d values, need %d: %w", len(dst), n*f, ErrShape)
	}
	ws := m.getGrad()
	defer m.gradPool.Put(ws)
	for e0 := 0; e0 < n; e0 += ws.cap {
		k := min(ws.cap, n-e0)
		g := m.inputGrad(ws, m.input(ws, x[e0*f:(e0+k)*f], k), k, classes[e0:e0+k])
		m.putInput(dst[e0*f:(e0+k)*f], g, k)
	}
	return nil
}

// Explain returns the integrated-gradients attributions of the n examples
// x (n × Features(), input layout) for the classes classes[i], or for each
// example's most probable class when classes is nil. The path points of an
// example are batched through the backward pass together; examples run on
// up to GOMAXPROCS goroutines. It is safe for concurrent use.
func (m *Model) Explain(x []float32, n int, classes []int, cfg ExplainConfig) ([]Attribution, error) {
	if classes == nil {
		if err := m.checkDifferentiable(); err != nil {
			return nil, fmt.Errorf("tensor.Model.Explain: %w", err)
		}
		if err := m.checkInputs(x, n); err != nil {
			return nil, fmt.Errorf("tensor.Model.Explain: %w", err)
		}
	} else if err := m.checkExplain(x, n, classes); err != nil {
		return nil, fmt.Errorf("tensor.Model.Explain: %w", err)
	}
	steps, err := cfg.steps()
	if err != nil {
		return nil, fmt.Errorf("tensor.Model.Explain: %w", err)
	}
	f, c := m.Features(), m.Classes()
	base := cfg.Baseline
	if base == nil {
		base = make([]float32, f)
	} else if len(base) != f {
		return nil, fmt.Errorf("tensor.Model.Explain: baseline has %d values, model takes %d: %w", len(base), f, ErrShape)
	}
	logits := make([]float32, (n+1)*c)
	all := append(append(make([]float32, 0, (n+1)*f), x...), base...)
	m.chunked(n+1, func(ws *workspace, ps *pass, e0, e1 int) {
		copy(logits[e0*c:e1*c], m.forward(ws, ps, m.input(ws, all[e0*f:e1*f], e1-e0), e1-e0))
	})
	out := make([]Attribution, n)
	for i := range out {
		k := 0
		if classes != nil {
			k = classes[i]
		} else {
			row := logits[i*c : (i+1)*c]
			for j, v := range row {
				if v > row[k] {
					k = j
				}
			}
		}
		out[i] = Attribution{Class: k, Values: make([]float32, f), Logit: logits[i*c+k], BaselineLogit: logits[n*c+k]}
	}
	workers := min(n, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := m.getGrad()
			defer m.gradPool.Put(ws)
			acc := make([]float64, f)
			for i := w; i < n; i += workers {
				m.integrate(ws, acc, x[i*f:(i+1)*f], base, out[i].Class, steps)
				a := out[i].Values
				for j := range a {
					a[j] = float32(float64(x[i*f+j]-base[j]) * acc[j] / float64(steps))
				}
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// integrate overwrites acc (input layout) with the sum of the gradients
// of class's logit at the steps midpoints between base and x.
func (m *Model) integrate(ws *workspace, acc []float64, x, base []float32, class, steps int) {
	f := len(x)
	clear(acc)
	classes := make([]int, ws.cap)
	for i := range classes {
		classes[i] = class
	}
	for k0 := 0; k0 < steps; k0 += ws.cap {
		k := min(ws.cap, steps-k0)
		for j := range k {
			a := float32((float64(k0+j) + 0.5) / float64(steps))
			row := ws.in[j*f : (j+1)*f]
			if m.hwc {
				// Interpolate in input layout into the gradient buffer,
				// then transpose into the workspace input.
				tmp := ws.gB[:f]
				for i := range tmp {
					tmp[i] = base[i] + a*(x[i]-base[i])
				}
				m.putExample(row, tmp)
				continue
			}
			for i := range row {
				row[i] = base[i] + a*(x[i]-base[i])
			}
		}
		g := m.inputGrad(ws, ws.in[:k*f], k, classes[:k])
		for j := range k {
			row := g[j*f : (j+1)*f]
			if !m.hwc {
				for i, v := range row {
					acc[i] += float64(v)
				}
				continue
			}
			c := m.Spec.Input[0]
			hw := f / c
			for ch := range c {
				for p := range hw {
					acc[ch*hw+p] += float64(row[p*c+ch])
				}
			}
		}
	}
}

// inputGrad runs the evaluation forward pass over the k examples in (in
// layer layout) and the backward pass of each example's
// class logit down to the input; it returns the gradient in layer
// layout, in one of ws's gradient buffers.
func (m *Model) inputGrad(ws *workspace, in []float32, k int, classes []int) []float32 {
	ps := &pass{record: true}
	m.forward(ws, ps, in, k)
	c := m.Classes()
	clear(ws.gA[:k*c])
	for j, cl := range classes[:k] {
		ws.gA[j*c+cl] = 1
	}
	return m.backwardInput(ws, ps, k)
}

// backwardInput propagates the gradient in ws.gA down every layer to the
// input, computing no parameter gradient, and returns it.
func (m *Model) backwardInput(ws *workspace, ps *pass, n int) []float32 {
	g, other := ws.gA, ws.gB
	for i := len(m.layers) - 1; i >= 0; i-- {
		if m.fused[i] {
			continue // in place, and the pool already masked the gradient
		}
		l := m.layers[i]
		p := &m.plans[i]
		dx := other
		if l.elementwise() {
			dx = g
		}
		l.backward(ps, &ws.scr[i], m.Params[p.offset:p.offset+p.params], nil, ws.acts[i], ws.acts[i+1], g, dx, n)
		if !l.elementwise() {
			g, other = other, g
		}
	}
	return g[:n*m.Features()]
}

// putInput copies n examples from layer layout src to input layout dst
// (the inverse of putExample).
func (m *Model) putInput(dst, src []float32, n int) {
	f := m.Features()
	if !m.hwc {
		copy(dst[:n*f], src[:n*f])
		return
	}
	c := m.Spec.Input[0]
	hw := f / c
	for e := range n {
		s, d := src[e*f:(e+1)*f], dst[e*f:(e+1)*f]
		for ch := range c {
			for p := range hw {
				d[ch*hw+p] = s[p*c+ch]
			}
		}
	}
}

// checkExplain validates examples and their classes.
func (m *Model) checkExplain(x []float32, n int, classes []int) error {
	if err := m.checkDifferentiable(); err != nil {
		return err
	}
	if err := m.checkInputs(x, n); err != nil {
		return err
	}
	if len(classes) < n {
		return fmt.Errorf("%d classes for %d examples: %w", len(classes), n, ErrShape)
	}
	for i, k := range classes[:n] {
		if k < 0 || k >= m.Classes() {
			return fmt.Errorf("example %d: class %d outside [0, %d): %w", i, k, m.Classes(), ErrShape)
		}
	}
	return nil
}

// checkDifferentiable refuses a model whose input is token ids.
func (m *Model) checkDifferentiable() error {
	if len(m.Spec.Layers) > 0 && m.Spec.Layers[0].Type == LayerEmbeddingBag {
		return fmt.Errorf("model %q starts with %s: %w", m.Spec.Name, LayerEmbeddingBag, ErrNotDifferentiable)
	}
	return nil
}

// getGrad returns a pooled workspace for input gradients.
func (m *Model) getGrad() *workspace {
	if ws, ok := m.gradPool.Get().(*workspace); ok {
		return ws
	}
	return m.newWorkspace(min(m.predictCap, MaxIGSteps), modeInput)
}

// ExplainGraph returns the integrated-gradients attributions of node's
// logit of class (or of its most probable class when class < 0) with
// respect to the features of every node of g: Nodes() × Features()
// values, since a graph convolution mixes neighbours. The baseline is
// cfg.Baseline (Nodes() × Features() values) or all zeros, on the same
// graph. Each step is a full-graph forward and backward pass.
func (m *Model) ExplainGraph(g *Graph, node, class int, cfg ExplainConfig) (Attribution, error) {
	if err := m.checkGraph(g, nil); err != nil {
		return Attribution{}, fmt.Errorf("tensor.Model.ExplainGraph: %w", err)
	}
	if err := m.checkParams(false); err != nil {
		return Attribution{}, fmt.Errorf("tensor.Model.ExplainGraph: %w", err)
	}
	n, f, c := g.Nodes(), m.Features(), m.Classes()
	if node < 0 || node >= n || class >= c {
		return Attribution{}, fmt.Errorf("tensor.Model.ExplainGraph: node %d of %d, class %d of %d: %w", node, n, class, c, ErrShape)
	}
	steps, err := cfg.steps()
	if err != nil {
		return Attribution{}, fmt.Errorf("tensor.Model.ExplainGraph: %w", err)
	}
	x := g.X[:n*f]
	base := cfg.Baseline
	if base == nil {
		base = make([]float32, n*f)
	} else if len(base) != n*f {
		return Attribution{}, fmt.Errorf("tensor.Model.ExplainGraph: baseline has %d values, graph has %d: %w", len(base), n*f, ErrShape)
	}
	ws := m.newWorkspace(n, modeInput)
	logitAt := func(in []float32) []float32 {
		copy(ws.in, in)
		return m.forward(ws, &pass{adj: g.Adj}, ws.in[:n*f], n)[node*c : (node+1)*c]
	}
	row := logitAt(x)
	if class < 0 {
		class = 0
		for j, v := range row {
			if v > row[class] {
				class = j
			}
		}
	}
	a := Attribution{Class: class, Values: make([]float32, n*f), Logit: row[class]}
	a.BaselineLogit = logitAt(base)[class]
	acc := make([]float64, n*f)
	for k := range steps {
		t := float32((float64(k) + 0.5) / float64(steps))
		for i := range ws.in[:n*f] {
			ws.in[i] = base[i] + t*(x[i]-base[i])
		}
		ps := &pass{adj: g.Adj, record: true}
		m.forward(ws, ps, ws.in[:n*f], n)
		clear(ws.gA[:n*c])
		ws.gA[node*c+class] = 1
		for i, v := range m.backwardInput(ws, ps, n) {
			acc[i] += float64(v)
		}
	}
	for i := range acc {
		a.Values[i] = float32(float64(x[i]-base[i]) * acc[i] / float64(steps))
	}
	return a, nil
}

// AttributionSums explains the first min(n, ds.Len()) examples of ds for
// their most probable class (integrated gradients from a zero baseline,
// steps steps) and returns, per input feature, the sum of the absolute
// attributions, and the number of examples explained. Summed over many
// datasets and divided by the total count it is the mean absolute
// attribution of each feature: a global explanation of the model.
func AttributionSums(m *Model, ds *Dataset, n, steps int) ([]float64, int, error) {
	if err := m.checkDataset(ds); err != nil {
		return nil, 0, fmt.Errorf("tensor.AttributionSums: %w", err)
	}
	n = min(max(n, 0), ds.Len())
	f := m.Features()
	sums := make([]float64, f)
	const chunk = 64 // bounds the attributions held at once
	for e0 := 0; e0 < n; e0 += chunk {
		k := min(chunk, n-e0)
		atts, err := m.Explain(ds.X[e0*f:(e0+k)*f], k, nil, ExplainConfig{Steps: steps})
		if err != nil {
			return nil, 0, fmt.Errorf("tensor.AttributionSums: %w", err)
		}
		for _, a := range atts {
			for i, v := range a.Values {
				sums[i] += math.Abs(float64(v))
			}
		}
	}
	return sums, n, nil
}
