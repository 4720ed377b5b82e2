package tensor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenExternal is a small external model (a PyTorch-style layout with a
// scalar), with parameters 0.25·i, whose encoding is kept in testdata/.
func goldenExternal(t testing.TB) *Model {
	t.Helper()
	spec, err := ExternalSpec("tiny-torch", []ExternalTensor{
		{Name: "conv1.weight", Shape: []int{2, 1, 2, 2}},
		{Name: "conv1.bias", Shape: []int{2}},
		{Name: "bn.running_mean", Shape: []int{2}},
		{Name: "temperature", Shape: []int{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, 13)
	for i := range params {
		params[i] = 0.25 * float32(i)
	}
	m, err := NewExternalModel(spec, params)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestExternalModelFileGolden(t *testing.T) {
	m := goldenExternal(t)
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden-external.fedgemdl")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update)", err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", b, want)
	}
	back, err := UnmarshalModel(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Spec, m.Spec) || !reflect.DeepEqual(back.Params, m.Params) || back.Hash() != m.Hash() {
		t.Fatal("decoded external model differs")
	}
	r, err := ReadModel(bytes.NewReader(want), 0)
	if err != nil || !reflect.DeepEqual(r.Params, m.Params) {
		t.Fatalf("ReadModel: %v", err)
	}
	// The spec JSON carries only the layout: no engine fields.
	if !strings.Contains(string(b), `{"name":"tiny-torch","external":[{"name":"conv1.weight","shape":[2,1,2,2]}`) {
		t.Errorf("spec JSON is not the documented form: %s", b[16:16+120])
	}
}

// TestEngineSpecJSONUnchanged pins the JSON of an engine spec: adding the
// external field must not change existing model files (their bytes, and
// so every stored file and hash of a file).
func TestEngineSpecJSONUnchanged(t *testing.T) {
	spec, _ := NamedSpec(SpecLogReg)
	if got, want := spec.String(), `{"name":"logreg","input":[1,28,28],"layers":[{"type":"flatten"},{"type":"dense","units":10}]}`; got != want {
		t.Errorf("engine spec JSON\n got %s\nwant %s", got, want)
	}
}

func TestExternalSpecValidate(t *testing.T) {
	long := strings.Repeat("x", MaxTensorName+1)
	tests := []struct {
		name   string
		spec   Spec
		params int // -1: invalid
	}{
		{"one matrix", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{3, 4}}}}, 12},
		{"scalar", Spec{External: []ExternalTensor{{Name: "s", Shape: nil}}}, 1},
		{"duplicate name", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{1}}, {Name: "w", Shape: []int{2}}}}, -1},
		{"empty name", Spec{External: []ExternalTensor{{Name: "", Shape: []int{1}}}}, -1},
		{"long name", Spec{External: []ExternalTensor{{Name: long, Shape: []int{1}}}}, -1},
		{"control char", Spec{External: []ExternalTensor{{Name: "a\nb", Shape: []int{1}}}}, -1},
		{"bad utf8", Spec{External: []ExternalTensor{{Name: "a\xffb", Shape: []int{1}}}}, -1},
		{"zero dim", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{3, 0}}}}, -1},
		{"negative dim", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{-1}}}}, -1},
		{"too many dims", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{1, 1, 1, 1, 1, 1, 1, 1, 1}}}}, -1},
		{"over MaxParams", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{1 << 16, 1 << 15}}}}, -1},
		{"sum over MaxParams", Spec{External: []ExternalTensor{{Name: "a", Shape: []int{1 << 29}}, {Name: "b", Shape: []int{1 << 29}}, {Name: "c", Shape: []int{1}}}}, -1},
		{"overflowing product", Spec{External: []ExternalTensor{{Name: "w", Shape: []int{1 << 30, 1 << 30, 1 << 30}}}}, -1},
		{"with layers", Spec{Input: []int{3}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}, External: []ExternalTensor{{Name: "w", Shape: []int{1}}}}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.spec.ParamCount()
			if tt.params < 0 {
				if !errors.Is(err, ErrInvalidSpec) {
					t.Fatalf("ParamCount = %d, %v; want ErrInvalidSpec", n, err)
				}
				return
			}
			if err != nil || n != tt.params {
				t.Fatalf("ParamCount = %d, %v; want %d", n, err, tt.params)
			}
		})
	}
}

func TestExternalModelRefusesEngine(t *testing.T) {
	m := goldenExternal(t)
	if m.NumParams() != 13 || m.Features() != 0 || m.Classes() != 0 || m.Spec.Classes() != 0 || m.Spec.Features() != 0 {
		t.Fatalf("NumParams %d, Features %d, Classes %d", m.NumParams(), m.Features(), m.Classes())
	}
	if _, err := NewModel(m.Spec, 1); !errors.Is(err, ErrExternalModel) {
		t.Errorf("NewModel: %v", err)
	}
	ds := &Dataset{X: make([]float32, 4), Y: []int32{0}, Classes: 2}
	if _, err := Train(context.Background(), m, ds, TrainConfig{Epochs: 1}); !errors.Is(err, ErrExternalModel) {
		t.Errorf("Train: %v", err)
	}
	if _, err := Evaluate(m, ds); !errors.Is(err, ErrExternalModel) {
		t.Errorf("Evaluate: %v", err)
	}
	if _, err := m.Predict(make([]float32, 4), 1); !errors.Is(err, ErrExternalModel) {
		t.Errorf("Predict: %v", err)
	}
	if _, err := m.PredictGraph(&Graph{}); !errors.Is(err, ErrExternalModel) {
		t.Errorf("PredictGraph: %v", err)
	}
	if _, err := m.Spec.Standardized([]float32{0}, []float32{1}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Standardized: %v", err)
	}
	c := m.Clone()
	if !reflect.DeepEqual(c.Params, m.Params) || !reflect.DeepEqual(c.Spec, m.Spec) {
		t.Error("Clone differs")
	}
	offs, total, err := m.Spec.ExternalOffsets()
	if err != nil || total != 13 || !reflect.DeepEqual(offs, []int{0, 8, 10, 12}) {
		t.Errorf("ExternalOffsets = %v, %d, %v", offs, total, err)
	}
	if _, err := NewExternalModel(m.Spec, make([]float32, 12)); !errors.Is(err, ErrShape) {
		t.Errorf("NewExternalModel with 12 values: %v", err)
	}
	logreg, _ := NamedSpec(SpecLogReg)
	if _, err := NewExternalModel(logreg, make([]float32, 7850)); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("NewExternalModel of an engine spec: %v", err)
	}
}

func TestBlank(t *testing.T) {
	spec, err := ExternalSpec("ext", []ExternalTensor{{Name: "w", Shape: []int{3, 4}}, {Name: "b", Shape: []int{3}}})
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, 15)
	for i := range params {
		params[i] = float32(i + 1)
	}
	m, err := NewExternalModel(spec, params)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Blank()
	if b.NumParams() != m.NumParams() || b.Spec.Name != "ext" || len(b.Spec.External) != 2 {
		t.Fatalf("blank of %d params: %d, spec %+v", m.NumParams(), b.NumParams(), b.Spec)
	}
	for i, v := range b.Params {
		if v != 0 {
			t.Fatalf("param %d = %v, want 0", i, v)
		}
	}
	if &b.Params[0] == &m.Params[0] {
		t.Fatal("blank shares the original's parameters")
	}
}
