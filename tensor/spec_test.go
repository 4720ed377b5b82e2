package tensor

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestNamedSpecParamCounts(t *testing.T) {
	tests := []struct {
		name    string
		params  int
		classes int
		graph   bool
	}{
		{SpecLogReg, 7850, 10, false},
		{Spec2NN, 199210, 10, false},
		{SpecCNN, 1663370, 10, false},
		{SpecGCN, 1433*16 + 16 + 16*7 + 7, 7, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := NamedSpec(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			n, err := spec.ParamCount()
			if err != nil || n != tt.params {
				t.Fatalf("ParamCount = %d, %v; want %d", n, err, tt.params)
			}
			m, err := NewModel(spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Params) != tt.params || len(m.Grads) != tt.params || m.NumParams() != tt.params {
				t.Errorf("model has %d params, %d grads; want %d", len(m.Params), len(m.Grads), tt.params)
			}
			if m.Classes() != tt.classes || spec.Classes() != tt.classes {
				t.Errorf("classes = %d; want %d", m.Classes(), tt.classes)
			}
			if spec.IsGraph() != tt.graph {
				t.Errorf("IsGraph = %v", spec.IsGraph())
			}
		})
	}
	if _, err := NamedSpec("resnet"); !errors.Is(err, ErrUnknownSpec) {
		t.Errorf("NamedSpec(resnet) = %v, want ErrUnknownSpec", err)
	}
}

func TestGCNSpecSizes(t *testing.T) {
	s := GCNSpec(100, 8, 3)
	n, err := s.ParamCount()
	if err != nil || n != 100*8+8+8*3+3 {
		t.Fatalf("ParamCount = %d, %v", n, err)
	}
	if s.Features() != 100 || s.Classes() != 3 {
		t.Errorf("features %d classes %d", s.Features(), s.Classes())
	}
}

func TestSpecValidateErrors(t *testing.T) {
	img := []int{1, 28, 28}
	tests := []struct {
		name string
		spec Spec
		want string // substring of the error
	}{
		{"no input", Spec{Layers: []LayerSpec{{Type: LayerDense, Units: 2}}}, "input shape"},
		{"zero dim", Spec{Input: []int{3, 0}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}}, "positive dimensions"},
		{"no layers", Spec{Input: []int{4}}, "no layers"},
		{"unknown type", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: "lstm"}}}, `layer 0 (lstm): unknown layer type`},
		{"dense on image", Spec{Input: img, Layers: []LayerSpec{{Type: LayerDense, Units: 10}}}, "layer 0 (dense): input shape [1 28 28] is not a vector; add a flatten layer"},
		{"zero units", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense}}}, "units 0"},
		{"conv on vector", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerConv2D, Filters: 2, Kernel: 3}}}, "is not [C, H, W]"},
		{"conv kernel too big", Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{{Type: LayerConv2D, Filters: 2, Kernel: 7, Padding: 1}, {Type: LayerFlatten}}}, "larger than padded input 6x6"},
		{"conv padding", Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{{Type: LayerConv2D, Filters: 2, Kernel: 3, Padding: 3}}}, "padding < kernel"},
		{"conv negative stride", Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{{Type: LayerConv2D, Filters: 2, Kernel: 3, Stride: -1}}}, "stride -1"},
		{"pool too big", Spec{Input: []int{1, 4, 4}, Layers: []LayerSpec{{Type: LayerMaxPool, Kernel: 5}}}, "do not fit"},
		{"dropout rate", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerDropout, Rate: 1}, {Type: LayerDense, Units: 2}}}, "rate 1 outside"},
		{"stray field", Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerReLU, Units: 3}}}, `field "units" does not apply to relu`},
		{"image output", Spec{Input: img, Layers: []LayerSpec{{Type: LayerConv2D, Filters: 2, Kernel: 3}}}, "not a vector of class logits"},
		{"too many params", Spec{Input: []int{1 << 20}, Layers: []LayerSpec{{Type: LayerDense, Units: 1 << 12}}}, "exceed"},
		{"huge activation", Spec{Input: []int{1 << 12, 1 << 12, 2}, Layers: []LayerSpec{{Type: LayerFlatten}}}, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate = %v, want ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if _, err := NewModel(tt.spec, 0); !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("NewModel = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestSpecShapes(t *testing.T) {
	spec, _ := NamedSpec(SpecCNN)
	plans, _, err := spec.plan()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int{{32, 28, 28}, {32, 28, 28}, {32, 14, 14}, {64, 14, 14}, {64, 14, 14}, {64, 7, 7}, {3136}, {512}, {512}, {10}}
	for i, p := range plans {
		if !reflect.DeepEqual(p.out, want[i]) {
			t.Errorf("layer %d output %v, want %v", i, p.out, want[i])
		}
	}
	if shapes, err := spec.Shapes(); err != nil || !reflect.DeepEqual(shapes, want) {
		t.Errorf("Shapes() = %v, %v", shapes, err)
	}
	// Strided convolution with padding: (9 + 2 - 3)/2 + 1 = 5.
	s := Spec{Input: []int{2, 9, 7}, Layers: []LayerSpec{{Type: LayerConv2D, Filters: 3, Kernel: 3, Stride: 2, Padding: 1}, {Type: LayerFlatten}}}
	plans, _, err = s.plan()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plans[0].out, []int{3, 5, 4}) {
		t.Errorf("strided conv output %v", plans[0].out)
	}
}

func TestSpecJSONRoundTrip(t *testing.T) {
	for _, name := range []string{SpecLogReg, Spec2NN, SpecCNN, SpecGCN} {
		spec, _ := NamedSpec(name)
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(spec, back) {
			t.Errorf("%s: round trip %+v != %+v", name, back, spec)
		}
		if spec.String() != string(b) {
			t.Errorf("String() = %s", spec.String())
		}
	}
	var s Spec
	js := `{"input":[784],"layers":[{"type":"dense","units":10}]}`
	if err := json.Unmarshal([]byte(js), &s); err != nil || s.Validate() != nil {
		t.Fatalf("hand-written spec: %v %v", err, s.Validate())
	}
}

func TestInitDeterministicAndScaled(t *testing.T) {
	spec, _ := NamedSpec(Spec2NN)
	a, _ := NewModel(spec, 42)
	b, _ := NewModel(spec, 42)
	c, _ := NewModel(spec, 43)
	if !reflect.DeepEqual(a.Params, b.Params) {
		t.Fatal("same seed gave different parameters")
	}
	if reflect.DeepEqual(a.Params, c.Params) {
		t.Fatal("different seeds gave equal parameters")
	}
	// Layer 1 (dense 784→200, followed by ReLU): He bound sqrt(6/784).
	w, bias := a.LayerParams(1)
	if len(w) != 784*200 || len(bias) != 200 {
		t.Fatalf("layer 1 views %d, %d", len(w), len(bias))
	}
	he := float32(heBound(784))
	var maxAbs float32
	for _, v := range w {
		maxAbs = max(maxAbs, v, -v)
	}
	if maxAbs > he || maxAbs < 0.9*he {
		t.Errorf("He weights max |w| = %v, bound %v", maxAbs, he)
	}
	for _, v := range bias {
		if v != 0 {
			t.Fatal("bias not zero")
		}
	}
	// Last layer (200→10, no ReLU): Glorot bound sqrt(6/210).
	w, _ = a.LayerParams(5)
	maxAbs = 0
	for _, v := range w {
		maxAbs = max(maxAbs, v, -v)
	}
	if g := float32(glorotBound(200, 10)); maxAbs > g || maxAbs < 0.8*g {
		t.Errorf("Glorot weights max |w| = %v, bound %v", maxAbs, g)
	}
}

// TestSpecCalibration: a calibration set is declared only with a
// quantized serving directive, and is a bounded path.
func TestSpecCalibration(t *testing.T) {
	base := Spec{Name: "c", Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}}
	tests := []struct {
		quantize, calibration string
		ok                    bool
	}{
		{"", "", true},
		{QuantizeInt8, "", true},
		{QuantizeInt8, CalibrationHeldOut, true},
		{QuantizeInt8, "calib/rows.f32", true},
		{"", "calib/rows.f32", false},
		{QuantizeInt8, "a\x00b", false},
		{QuantizeInt8, strings.Repeat("a", maxCalibrationPath+1), false},
	}
	for _, tt := range tests {
		s := base
		s.Quantize, s.Calibration = tt.quantize, tt.calibration
		if err := s.Validate(); (err == nil) != tt.ok {
			t.Errorf("quantize %q calibration %.20q: %v, want ok %v", tt.quantize, tt.calibration, err, tt.ok)
		}
	}
}
