package statedict

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// convSpec has every layer type a state_dict maps, with a multi-channel
// flatten after convolutions (where the orders differ), a standardize on
// a 3-D input and a strided, padded convolution.
func convSpec() tensor.Spec {
	return tensor.Spec{Name: "mix", Input: []int{3, 9, 8}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerStandardize, Shift: ramp(3*9*8, 0.1, -2), Scale: ramp(3*9*8, 0.01, 0.5)},
		{Type: tensor.LayerConv2D, Filters: 4, Kernel: 3, Padding: 1}, {Type: tensor.LayerReLU},
		{Type: tensor.LayerMaxPool, Kernel: 2},
		{Type: tensor.LayerConv2D, Filters: 5, Kernel: 3, Stride: 2, Padding: 1},
		{Type: tensor.LayerFlatten}, {Type: tensor.LayerDropout, Rate: 0.25},
		{Type: tensor.LayerDense, Units: 7}, {Type: tensor.LayerReLU},
		{Type: tensor.LayerDense, Units: 3},
	}}
}

func ramp(n int, step, start float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = start + step*float32(i%17)
	}
	return out
}

func TestLayoutNames2NN(t *testing.T) {
	spec, _ := tensor.NamedSpec(tensor.Spec2NN)
	got, err := Layout(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []tensor.ExternalTensor{
		{Name: "1.weight", Shape: []int{200, 784}}, {Name: "1.bias", Shape: []int{200}},
		{Name: "3.weight", Shape: []int{200, 200}}, {Name: "3.bias", Shape: []int{200}},
		{Name: "5.weight", Shape: []int{10, 200}}, {Name: "5.bias", Shape: []int{10}},
	}
	if len(got) != len(want) {
		t.Fatalf("layout %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || !slices.Equal(got[i].Shape, want[i].Shape) {
			t.Errorf("tensor %d = %v, want %v", i, got[i], want[i])
		}
	}
	cnn, _ := tensor.NamedSpec(tensor.SpecCNN)
	got, _ = Layout(cnn)
	if got[0].Name != "0.weight" || !slices.Equal(got[0].Shape, []int{32, 1, 5, 5}) || got[6].Name != "9.weight" || !slices.Equal(got[4].Shape, []int{512, 3136}) {
		t.Errorf("cnn layout %v", got)
	}
}

func TestRoundTripBitExact(t *testing.T) {
	for _, spec := range []tensor.Spec{convSpec(), named(t, tensor.SpecCNN), named(t, tensor.SpecGCN), named(t, tensor.SpecLogReg)} {
		m, err := tensor.NewModel(spec, 7)
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Params { // biases too, not only the initialized weights
			m.Params[i] = float32(math.Sin(float64(i)))
		}
		layout, sd, err := FromModel(m)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := (tensor.Spec{External: layout}).ParamCount(); n != len(sd) || n != m.NumParams() {
			t.Fatalf("%s: layout of %d values, vector %d, model %d", spec.Name, n, len(sd), m.NumParams())
		}
		back, err := ToModel(spec, sd)
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Params {
			if math.Float32bits(back.Params[i]) != math.Float32bits(m.Params[i]) {
				t.Fatalf("%s: param %d = %v, want %v", spec.Name, i, back.Params[i], m.Params[i])
			}
		}
	}
}

func named(t *testing.T, name string) tensor.Spec {
	s, err := tensor.NamedSpec(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPyTorchSemantics runs the state_dict tensors through a reference
// forward pass written from PyTorch's definitions (NCHW activations, OIHW
// convolutions, [out, in] linear weights, channels-first flatten) and
// checks it predicts what the engine predicts.
func TestPyTorchSemantics(t *testing.T) {
	spec := convSpec()
	m, err := tensor.NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range m.Params {
		m.Params[i] = float32(rng.NormFloat64() * 0.3)
	}
	layout, sd, err := FromModel(m)
	if err != nil {
		t.Fatal(err)
	}
	tensors := map[string][]float32{}
	off := 0
	for _, l := range layout {
		tensors[l.Name] = sd[off : off+l.Size()]
		off += l.Size()
	}
	const n = 5
	x := make([]float32, n*m.Features())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	want, err := m.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	for e := range n {
		got := referenceForward(spec, tensors, x[e*m.Features():(e+1)*m.Features()])
		for c, p := range got {
			if d := math.Abs(float64(p - want[e*3+c])); d > 1e-5 {
				t.Fatalf("example %d class %d: reference %v, engine %v", e, c, p, want[e*3+c])
			}
		}
	}
}

// referenceForward is PyTorch's forward pass of one example x ([C, H, W]
// order) through spec, with state_dict tensors sd, ending in a softmax.
func referenceForward(spec tensor.Spec, sd map[string][]float32, x []float32) []float32 {
	shape := append([]int(nil), spec.Input...)
	v := append([]float32(nil), x...)
	for i, l := range spec.Layers {
		p := func(s string) []float32 { return sd[strconv.Itoa(i)+"."+s] }
		switch l.Type {
		case tensor.LayerStandardize:
			for j := range v {
				v[j] = (v[j] - l.Shift[j]) * l.Scale[j]
			}
		case tensor.LayerReLU:
			for j := range v {
				v[j] = max(v[j], 0)
			}
		case tensor.LayerFlatten:
			shape = []int{len(v)}
		case tensor.LayerDropout:
		case tensor.LayerDense:
			w, b := p("weight"), p("bias")
			in := shape[0]
			out := make([]float32, l.Units)
			for o := range out {
				s := b[o]
				for j := range in {
					s += w[o*in+j] * v[j]
				}
				out[o] = s
			}
			v, shape = out, []int{l.Units}
		case tensor.LayerConv2D:
			w, b := p("weight"), p("bias")
			c, h, wd := shape[0], shape[1], shape[2]
			k, st, pad := l.Kernel, max(l.Stride, 1), l.Padding
			oh, ow := (h+2*pad-k)/st+1, (wd+2*pad-k)/st+1
			out := make([]float32, l.Filters*oh*ow)
			for f := range l.Filters {
				for y := range oh {
					for xx := range ow {
						s := b[f]
						for ch := range c {
							for kh := range k {
								for kw := range k {
									iy, ix := y*st-pad+kh, xx*st-pad+kw
									if iy < 0 || iy >= h || ix < 0 || ix >= wd {
										continue
									}
									s += w[((f*c+ch)*k+kh)*k+kw] * v[(ch*h+iy)*wd+ix]
								}
							}
						}
						out[(f*oh+y)*ow+xx] = s
					}
				}
			}
			v, shape = out, []int{l.Filters, oh, ow}
		case tensor.LayerMaxPool:
			c, h, wd := shape[0], shape[1], shape[2]
			k, st := l.Kernel, l.Stride
			if st == 0 {
				st = k
			}
			oh, ow := (h-k)/st+1, (wd-k)/st+1
			out := make([]float32, c*oh*ow)
			for ch := range c {
				for y := range oh {
					for xx := range ow {
						mx := float32(math.Inf(-1))
						for kh := range k {
							for kw := range k {
								mx = max(mx, v[(ch*h+y*st+kh)*wd+xx*st+kw])
							}
						}
						out[(ch*oh+y)*ow+xx] = mx
					}
				}
			}
			v, shape = out, []int{c, oh, ow}
		}
	}
	mx := slices.Max(v)
	var sum float64
	for j := range v {
		sum += math.Exp(float64(v[j] - mx))
	}
	out := make([]float32, len(v))
	for j := range v {
		out[j] = float32(math.Exp(float64(v[j]-mx)) / sum)
	}
	return out
}

func TestVectorOrder(t *testing.T) {
	spec := convSpec()
	o, err := VectorOrder(spec, 6) // the dropout after the flatten of 5 channels of 2x2
	if err != nil {
		t.Fatal(err)
	}
	// PyTorch position c·4 + q holds the engine's q·5 + c.
	if len(o) != 20 || o[1] != 5 || o[4] != 1 || o[19] != 19 {
		t.Fatalf("order %v", o)
	}
	if o, _ := VectorOrder(named(t, tensor.Spec2NN), 1); o != nil {
		t.Errorf("2nn (one channel, no convolution): order %v, want nil", o)
	}
}

func TestExternalRefused(t *testing.T) {
	s, err := tensor.ExternalSpec("x", []tensor.ExternalTensor{{Name: "w", Shape: []int{2}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Layout(s); !errors.Is(err, ErrNotEngine) {
		t.Fatalf("Layout(external) = %v, want ErrNotEngine", err)
	}
	if _, err := ToModel(convSpec(), make([]float32, 3)); !errors.Is(err, tensor.ErrShape) {
		t.Fatalf("ToModel(short vector) = %v, want ErrShape", err)
	}
}

// TestEmbeddingBagLayout: a text classifier's embedding table is
// nn.EmbeddingBag's weight [V, D], in the same row-major order, and the
// vector round-trips bit-exactly.
func TestEmbeddingBagLayout(t *testing.T) {
	spec := tensor.TextClassifierSpec(50, 4, 16, 2, 3)
	m, err := tensor.NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	layout, sd, err := FromModel(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(layout) != 3 || layout[0].Name != "0.weight" || !slices.Equal(layout[0].Shape, []int{50, 4}) ||
		layout[1].Name != "1.weight" || !slices.Equal(layout[1].Shape, []int{3, 4}) || len(sd) != m.NumParams() {
		t.Fatalf("layout %v, %d values for %d parameters", layout, len(sd), m.NumParams())
	}
	w, _ := m.LayerParams(0)
	if !slices.Equal(sd[:len(w)], w) {
		t.Fatal("embedding table reordered")
	}
	back, err := ToModel(spec, sd)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Params, m.Params) {
		t.Fatal("round trip changed the parameters")
	}
}
