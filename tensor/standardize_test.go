package tensor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// stdConsts returns k shifts in [-2, 2) and scales in [0.25, 4), from seed.
func stdConsts(k int, seed uint64) (shift, scale []float32) {
	l := stdLayer(k, seed)
	for j := range k {
		l.Shift[j] *= 4
		l.Scale[j] = l.Scale[j]*2 - 0.75
	}
	return l.Shift, l.Scale
}

// randInputs returns n examples of f values drawn from N(1, 3²).
func randInputs(n, f int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := make([]float32, n*f)
	for i := range x {
		x[i] = float32(1 + 3*rng.NormFloat64())
	}
	return x
}

// standardizeRef applies (x − shift)·scale to each example of x in the
// Spec's layout, the way the layer is documented to.
func standardizeRef(x, shift, scale []float32) []float32 {
	out := make([]float32, len(x))
	k := len(shift)
	for i, v := range x {
		out[i] = (v - shift[i%k]) * scale[i%k]
	}
	return out
}

// TestStandardizeMatchesPreprocessing checks that a model whose first
// layer standardizes predicts from raw inputs exactly what the same model
// without it predicts from inputs standardized beforehand, in the Spec's
// [C, H, W] order even where the model stores images channels-last, and
// with no parameters added.
func TestStandardizeMatchesPreprocessing(t *testing.T) {
	tests := []struct {
		name string
		base Spec
	}{
		{"vector", mlpSpec(7, 5, 3, 0)},
		{"image-flatten", Spec{Input: []int{3, 4, 5}, Layers: []LayerSpec{{Type: LayerFlatten}, {Type: LayerDense, Units: 4}}}},
		{"image-conv-channels-last", Spec{Input: []int{3, 4, 5}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 4, Kernel: 3, Padding: 1}, {Type: LayerReLU}, {Type: LayerMaxPool, Kernel: 2},
			{Type: LayerFlatten}, {Type: LayerDense, Units: 4}}}},
		{"one-channel-conv", Spec{Input: []int{1, 6, 6}, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 2, Kernel: 3}, {Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.base.Features()
			shift, scale := stdConsts(f, 11)
			spec, err := tt.base.Standardized(shift, scale)
			if err != nil {
				t.Fatal(err)
			}
			base, err := NewModel(tt.base, 5)
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewModel(spec, 5)
			if err != nil {
				t.Fatal(err)
			}
			if m.NumParams() != base.NumParams() || !reflect.DeepEqual(m.Params, base.Params) {
				t.Fatalf("standardize changed the parameters: %d vs %d values", m.NumParams(), base.NumParams())
			}
			const n = 9
			x := randInputs(n, f, 1)
			raw := append([]float32(nil), x...)
			got, err := m.Predict(x, n)
			if err != nil {
				t.Fatal(err)
			}
			want, err := base.Predict(standardizeRef(x, shift, scale), n)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("standardize layer predicts %v, preprocessing %v", got[:3], want[:3])
			}
			if !reflect.DeepEqual(x, raw) {
				t.Fatal("Predict wrote into the caller's input")
			}
		})
	}
}

// TestStandardizeAfterConv checks a standardize layer inside a model, on
// an activation stored channels-last: its constants are in [C, H, W] order
// while a flatten after a convolution orders values (h, w, c), so standardizing
// before the flatten with constants c must equal standardizing after it
// with c transposed.
func TestStandardizeAfterConv(t *testing.T) {
	const ch, h, w = 3, 4, 4
	shift, scale := stdConsts(ch*h*w, 4)
	tShift, tScale := make([]float32, ch*h*w), make([]float32, ch*h*w)
	for c := range ch {
		for q := range h * w {
			tShift[q*ch+c], tScale[q*ch+c] = shift[c*h*w+q], scale[c*h*w+q]
		}
	}
	conv := LayerSpec{Type: LayerConv2D, Filters: ch, Kernel: 3, Padding: 1}
	before := Spec{Input: []int{2, h, w}, Layers: []LayerSpec{conv,
		{Type: LayerStandardize, Shift: shift, Scale: scale}, {Type: LayerFlatten}, {Type: LayerDense, Units: 3}}}
	after := Spec{Input: []int{2, h, w}, Layers: []LayerSpec{conv,
		{Type: LayerFlatten}, {Type: LayerStandardize, Shift: tShift, Scale: tScale}, {Type: LayerDense, Units: 3}}}
	a, err := NewModel(before, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewModel(after, 2)
	if err != nil {
		t.Fatal(err)
	}
	x := randInputs(5, 2*h*w, 8)
	pa, _ := a.Predict(x, 5)
	pb, _ := b.Predict(x, 5)
	if !reflect.DeepEqual(pa, pb) {
		t.Fatalf("before flatten %v, after %v", pa[:3], pb[:3])
	}
}

func TestStandardizeValidate(t *testing.T) {
	ones := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	with := func(v []float32, i int, x float32) []float32 {
		v = append([]float32(nil), v...)
		v[i] = x
		return v
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	std := func(shift, scale []float32) Spec {
		return Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerStandardize, Shift: shift, Scale: scale}, {Type: LayerDense, Units: 2}}}
	}
	tests := []struct {
		name string
		spec Spec
		want string // substring of the error; "" for a valid spec
	}{
		{"valid", std(make([]float32, 4), ones(4)), ""},
		{"valid image", Spec{Input: []int{2, 2, 2}, Layers: []LayerSpec{{Type: LayerStandardize, Shift: ones(8), Scale: ones(8)}, {Type: LayerFlatten}, {Type: LayerDense, Units: 2}}}, ""},
		{"short shift", std(ones(3), ones(4)), "shift has 3 values and scale 4; the input has 4"},
		{"long scale", std(ones(4), ones(5)), "scale 5"},
		{"missing both", std(nil, nil), "shift has 0 values"},
		{"NaN shift", std(with(ones(4), 2, nan), ones(4)), "shift[2] = NaN is not finite"},
		{"infinite shift", std(with(ones(4), 0, -inf), ones(4)), "shift[0] = -Inf"},
		{"NaN scale", std(ones(4), with(ones(4), 1, nan)), "scale[1] = NaN"},
		{"infinite scale", std(ones(4), with(ones(4), 3, inf)), "scale[3] = +Inf"},
		{"zero scale", std(ones(4), with(ones(4), 1, 0)), "scale[1] = 0: need a finite value > 0"},
		{"negative scale", std(ones(4), with(ones(4), 0, -2)), "scale[0] = -2"},
		{"size after dense", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense, Units: 3},
			{Type: LayerStandardize, Shift: ones(4), Scale: ones(4)}}}, "layer 1 (standardize): shift has 4 values and scale 4; the input has 3"},
		{"shift on dense", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense, Units: 2, Shift: ones(4)}}}, `field "shift" does not apply to dense`},
		{"scale on relu", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerReLU, Scale: ones(4)}, {Type: LayerDense, Units: 2}}}, `field "scale" does not apply to relu`},
		{"units on standardize", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerStandardize, Units: 2, Shift: ones(4), Scale: ones(4)}}}, `field "units" does not apply to standardize`},
		{"unknown lists standardize", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: "normalize"}}}, "gcnconv, standardize, embedding_bag)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate = %v, want ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestStandardized(t *testing.T) {
	base, _ := NamedSpec(SpecLogReg)
	shift, scale := stdConsts(784, 1)
	s1, err := base.Standardized(shift, scale)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1.Layers) != 3 || s1.Layers[0].Type != LayerStandardize || !reflect.DeepEqual(s1.Layers[1:], base.Layers) {
		t.Fatalf("Standardized layers %v", s1.Layers)
	}
	if len(base.Layers) != 2 {
		t.Fatal("Standardized modified its receiver")
	}
	shift[0] = 99 // the result owns copies
	if s1.Layers[0].Shift[0] == 99 {
		t.Fatal("Standardized kept the caller's slice")
	}
	n1, _ := s1.ParamCount()
	n0, _ := base.ParamCount()
	if n1 != n0 {
		t.Errorf("ParamCount %d, without standardize %d", n1, n0)
	}
	// Again: the first layer is replaced, not stacked, and the receiver's
	// constants are not touched.
	shift2, scale2 := stdConsts(784, 2)
	s2, err := s1.Standardized(shift2, scale2)
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.Layers) != 3 || !reflect.DeepEqual(s2.Layers[0].Shift, shift2) || !reflect.DeepEqual(s2.Layers[0].Scale, scale2) {
		t.Fatalf("re-standardized spec has %d layers", len(s2.Layers))
	}
	if reflect.DeepEqual(s1.Layers[0].Scale, scale2) {
		t.Fatal("Standardized wrote into its receiver's layer")
	}
	for _, tc := range []struct {
		name         string
		shift, scale []float32
	}{
		{"short", shift2[:783], scale2},
		{"long", shift2, append(append([]float32(nil), scale2...), 1)},
		{"nil", nil, nil},
		{"zero scale", shift2, make([]float32, 784)},
	} {
		if _, err := base.Standardized(tc.shift, tc.scale); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Standardized = %v, want ErrInvalidSpec", tc.name, err)
		}
	}
}

// TestStandardizeSpecOwnsConstants checks that a model copies the spec's
// constants, so the caller changing its slices later changes nothing.
func TestStandardizeSpecOwnsConstants(t *testing.T) {
	shift, scale := stdConsts(6, 3)
	spec, _ := mlpSpec(6, 4, 2, 0).Standardized(shift, scale)
	m, _ := NewModel(spec, 1)
	x := randInputs(3, 6, 2)
	before, _ := m.Predict(x, 3)
	spec.Layers[0].Shift[0] += 5
	spec.Layers[0].Scale[1] *= 3
	after, _ := m.Predict(x, 3)
	if !reflect.DeepEqual(before, after) || m.Spec.Layers[0].Shift[0] == spec.Layers[0].Shift[0] {
		t.Fatal("the model shares its spec's constants with the caller")
	}
	if c := m.Clone(); !reflect.DeepEqual(c.Spec, m.Spec) || &c.Spec.Layers[0].Shift[0] == &m.Spec.Layers[0].Shift[0] {
		t.Fatal("Clone does not own a copy of the constants")
	}
}

func TestStandardizeSpecJSON(t *testing.T) {
	shift := []float32{0.1307, -1e-7, 3.4028235e38, 500}
	scale := []float32{3.2457, 1e-30, 0.001, 1.0000001}
	spec, err := Spec{Name: "tab", Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}}.Standardized(shift, scale)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"type":"standardize","shift":[0.1307,-1e-7,3.4028235e+38,500],"scale":[3.2457,1e-30,0.001,1.0000001]`) {
		t.Errorf("JSON %s", b)
	}
	if strings.Count(string(b), "shift") != 1 {
		t.Errorf("shift written for a layer without it: %s", b)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, spec) || back.Validate() != nil {
		t.Fatalf("round trip %+v != %+v", back, spec)
	}
}

// TestStandardizeModelFile checks that a model file keeps a standardize
// layer exactly: the decoded model predicts bit-identically.
func TestStandardizeModelFile(t *testing.T) {
	base, _ := NamedSpec(Spec2NN)
	shift, scale := stdConsts(784, 9)
	spec, err := base.Standardized(shift, scale)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(spec, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalModel(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadModel(bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Spec, m.Spec) || back.Hash() != m.Hash() {
		t.Fatal("spec or parameters changed through the file")
	}
	x := randInputs(20, 784, 6)
	want, _ := m.Predict(x, 20)
	for name, d := range map[string]*Model{"UnmarshalModel": back, "ReadModel": r} {
		got, err := d.Predict(x, 20)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: predictions differ (%v)", name, err)
		}
	}
	if specLen := len(b) - int(encodedSize(0, m.NumParams())); specLen > MaxSpecBytes/16 {
		t.Errorf("784-feature standardized spec is %d bytes, a large share of the %d-byte limit", specLen, MaxSpecBytes)
	}
}

// scaledFeatures returns a 2-class problem whose two features carry the
// same information at wildly different scales: x0 ~ N(±1, 1) and
// x1 = 1000·N(±1, 1) + 500. The Bayes accuracy is Φ(√2) ≈ 0.92.
func scaledFeatures(n int, seed uint64) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 9))
	ds := &Dataset{X: make([]float32, 2*n), Y: make([]int32, n), Shape: []int{2}, Classes: 2}
	for i := range n {
		y := rng.IntN(2)
		s := float64(2*y - 1)
		ds.Y[i] = int32(y)
		ds.X[2*i] = float32(s + rng.NormFloat64())
		ds.X[2*i+1] = float32(1000*(s+rng.NormFloat64()) + 500)
	}
	return ds
}

// TestStandardizeHelpsTraining trains the same models with the same
// hyperparameters with and without a standardize layer built from the
// training data's mean and standard deviation: only the standardized one
// gets near the Bayes accuracy.
func TestStandardizeHelpsTraining(t *testing.T) {
	train, test := scaledFeatures(2000, 1), scaledFeatures(2000, 2)
	var sum, sq [2]float64
	for i := range train.Len() {
		for j := range 2 {
			v := float64(train.X[2*i+j])
			sum[j] += v
			sq[j] += v * v
		}
	}
	shift, scale := make([]float32, 2), make([]float32, 2)
	for j := range 2 {
		mean := sum[j] / float64(train.Len())
		shift[j] = float32(mean)
		scale[j] = float32(1 / math.Sqrt(sq[j]/float64(train.Len())-mean*mean))
	}
	tests := []struct {
		name string
		spec Spec
	}{
		{"logreg", Spec{Input: []int{2}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}}},
		{"mlp", mlpSpec(2, 8, 2, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			std, err := tt.spec.Standardized(shift, scale)
			if err != nil {
				t.Fatal(err)
			}
			acc := func(s Spec) float64 {
				m, err := NewModel(s, 3)
				if err != nil {
					t.Fatal(err)
				}
				cfg := TrainConfig{Epochs: 3, BatchSize: 32, LR: 0.1, Seed: 3}
				if _, err := Train(context.Background(), m, train, cfg); err != nil && !errors.Is(err, ErrDiverged) {
					t.Fatal(err)
				}
				mt, err := Evaluate(m, test)
				if err != nil {
					t.Fatal(err)
				}
				return mt.Accuracy()
			}
			raw, standardized := acc(tt.spec), acc(std)
			t.Logf("test accuracy: raw %.3f, standardized %.3f", raw, standardized)
			if standardized < 0.88 {
				t.Errorf("standardized accuracy %.3f, want >= 0.88 (Bayes 0.92)", standardized)
			}
			if standardized-raw < 0.05 {
				t.Errorf("standardized %.3f is not clearly better than raw %.3f", standardized, raw)
			}
		})
	}
}

// TestStandardizeGraph checks a standardize layer in front of a GCN: it
// applies to each node's features, like preprocessing them.
func TestStandardizeGraph(t *testing.T) {
	const nodes, f = 6, 5
	rng := rand.New(rand.NewPCG(3, 3))
	g := &Graph{Adj: randomCSR(rng, nodes), X: randInputs(nodes, f, 4), Features: f, Y: make([]int32, nodes), Classes: 3}
	shift, scale := stdConsts(f, 5)
	base := GCNSpec(f, 4, 3)
	spec, err := base.Standardized(shift, scale)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewModel(spec, 1)
	b, _ := NewModel(base, 1)
	got, err := m.PredictGraph(g)
	if err != nil {
		t.Fatal(err)
	}
	pre := *g
	pre.X = standardizeRef(g.X, shift, scale)
	want, err := b.PredictGraph(&pre)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("standardized GCN %v, preprocessed %v", got[:3], want[:3])
	}
}
