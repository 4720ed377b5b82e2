package tensor

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// quantSpecs are small models covering what Quantize handles: a dense
// stack on signed inputs, a padded convolution with pooling on
// non-negative inputs, and a standardize layer that makes a convolution's
// inputs signed.
func quantSpecs() map[string]Spec {
	conv := Spec{Input: []int{2, 9, 9}, Layers: []LayerSpec{
		{Type: LayerConv2D, Filters: 5, Kernel: 3, Padding: 1}, {Type: LayerReLU},
		{Type: LayerMaxPool, Kernel: 2}, {Type: LayerConv2D, Filters: 33, Kernel: 3, Stride: 2},
		{Type: LayerReLU}, {Type: LayerFlatten}, {Type: LayerDense, Units: 7},
	}}
	std := conv.clone()
	std.Layers = append([]LayerSpec{{Type: LayerStandardize, Shift: fill(162, 0.5), Scale: fill(162, 2)}}, std.Layers...)
	return map[string]Spec{
		"dense": {Input: []int{37}, Layers: []LayerSpec{
			{Type: LayerDense, Units: 50}, {Type: LayerReLU}, {Type: LayerDense, Units: 19}, {Type: LayerReLU}, {Type: LayerDense, Units: 3},
		}},
		"conv":             conv,
		"standardize+conv": std,
	}
}

func fill(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestQuantizedMatchesFloat checks the quantized forward against the
// float one, logit by logit: the int8 error must stay within a few
// percent of the logits' spread. Wrong zero points (signed inputs, the
// padding of a convolution), scales or weight layouts are off by far
// more.
func TestQuantizedMatchesFloat(t *testing.T) {
	for name, spec := range quantSpecs() {
		t.Run(name, func(t *testing.T) {
			m, err := NewModel(spec, 3)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range m.Params {
				m.Params[i] += float32(rng.NormFloat64() * 0.01) // biases too
			}
			f := m.Features()
			n := 300
			x := make([]float32, n*f)
			for i := range x {
				x[i] = rng.Float32()
				if name == "dense" {
					x[i] = 2*x[i] - 1
				}
			}
			q, err := Quantize(m, x[:100*f], 100)
			if err != nil {
				t.Fatal(err)
			}
			ws := m.getInference()
			want := append([]float32(nil), m.forward(ws, &pass{}, m.input(ws, x, n), n)...)
			qw := q.workspace()
			got := q.forward(qw, q.m.input(qw.ws, x, n), n)
			var spread, worst float64
			for i := range want {
				spread = max(spread, math.Abs(float64(want[i])))
				worst = max(worst, math.Abs(float64(got[i]-want[i])))
			}
			t.Logf("%s: worst logit error %.4f of %.4f (%.2f%%), kernel %s", name, worst, spread, 100*worst/spread, q.Kernel())
			if worst > 0.03*spread {
				t.Errorf("worst logit error %.4f, more than 3%% of the largest logit %.4f", worst, spread)
			}
			probs, err := q.Predict(x, n)
			if err != nil {
				t.Fatal(err)
			}
			agree := 0
			fp, _ := m.Predict(x, n)
			c := m.Classes()
			for i := range n {
				if argmaxF(probs[i*c:(i+1)*c]) == argmaxF(fp[i*c:(i+1)*c]) {
					agree++
				}
			}
			if agree < n*95/100 {
				t.Errorf("quantized and float agree on %d of %d classes", agree, n)
			}
		})
	}
}

func argmaxF(p []float32) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// TestQuantizeBytes checks that the quantized cnn takes about a quarter
// of the float parameters' bytes.
func TestQuantizeBytes(t *testing.T) {
	for _, name := range []string{Spec2NN, SpecCNN} {
		spec, _ := NamedSpec(name)
		m, err := NewModel(spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		ds := mnistLike(20)
		q, err := Quantize(m, ds.X, 20)
		if err != nil {
			t.Fatal(err)
		}
		ratio := float64(4*m.NumParams()) / float64(q.Bytes())
		t.Logf("%s: %d float bytes, %d int8 bytes: ÷%.2f", name, 4*m.NumParams(), q.Bytes(), ratio)
		if ratio < 3.9 || ratio > 4 {
			t.Errorf("%s: bytes divided by %.2f, want 3.9 to 4", name, ratio)
		}
	}
}

// TestQuantizeRefuses checks the models and data Quantize rejects.
func TestQuantizeRefuses(t *testing.T) {
	gspec, _ := NamedSpec(SpecGCN)
	g, err := NewModel(gspec, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Quantize(g, make([]float32, g.Features()), 1); !errors.Is(err, ErrNotQuantizable) {
		t.Errorf("graph model: %v, want ErrNotQuantizable", err)
	}
	spec, _ := NamedSpec(Spec2NN)
	m, _ := NewModel(spec, 1)
	if _, err := Quantize(m, nil, 0); !errors.Is(err, ErrShape) {
		t.Errorf("no calibration data: %v, want ErrShape", err)
	}
	if _, err := Quantize(m, make([]float32, 10), 1); !errors.Is(err, ErrShape) {
		t.Errorf("wrong width: %v, want ErrShape", err)
	}
	spec.Quantize = "int4"
	if err := spec.Validate(); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("quantize int4: %v, want ErrInvalidSpec", err)
	}
	spec.Quantize = QuantizeInt8
	if err := spec.Validate(); err != nil {
		t.Errorf("quantize int8: %v", err)
	}
	if m2, err := NewModel(spec, 1); err != nil || m2.Clone().Spec.Quantize != QuantizeInt8 {
		t.Errorf("a clone lost the quantize directive (%v)", err)
	}
}
