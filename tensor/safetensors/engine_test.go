package safetensors

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// engineModel returns a cnn (multi-channel flatten after convolutions)
// with a standardize layer in front and random parameters, biases too.
func engineModel(t *testing.T) *tensor.Model {
	t.Helper()
	spec, err := tensor.NamedSpec(tensor.SpecCNN)
	if err != nil {
		t.Fatal(err)
	}
	shift, scale := make([]float32, 784), make([]float32, 784)
	for i := range shift {
		shift[i], scale[i] = 0.1307, 3.2457
	}
	if spec, err = spec.Standardized(shift, scale); err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params {
		m.Params[i] = float32(math.Sin(float64(i) * 0.37))
	}
	return m
}

// TestEngineRoundTripBitExact: fedge → safetensors → fedge gives the same
// spec and the same bits, with the spec given or read from the metadata.
func TestEngineRoundTripBitExact(t *testing.T) {
	m := engineModel(t)
	var buf bytes.Buffer
	if _, err := WriteEngineModel(&buf, m, map[string]string{"round": "7"}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadHeader(bytes.NewReader(buf.Bytes()), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	// The cnn behind a standardize: PyTorch's Sequential indices shift by one.
	want := []tensor.ExternalTensor{
		{Name: "1.weight", Shape: []int{32, 1, 5, 5}}, {Name: "1.bias", Shape: []int{32}},
		{Name: "4.weight", Shape: []int{64, 32, 5, 5}}, {Name: "4.bias", Shape: []int{64}},
		{Name: "8.weight", Shape: []int{512, 3136}}, {Name: "8.bias", Shape: []int{512}},
		{Name: "10.weight", Shape: []int{10, 512}}, {Name: "10.bias", Shape: []int{10}},
	}
	if !reflect.DeepEqual(f.Layout, want) || f.Metadata["round"] != "7" {
		t.Fatalf("layout %v, metadata %v", f.Layout, f.Metadata)
	}
	for _, spec := range []tensor.Spec{{}, m.Spec} {
		back, err := ReadEngineModel(bytes.NewReader(buf.Bytes()), 1<<30, spec)
		if err != nil {
			t.Fatal(err)
		}
		if back.Spec.String() != m.Spec.String() {
			t.Fatalf("spec %v, want %v", back.Spec, m.Spec)
		}
		for i := range m.Params {
			if math.Float32bits(back.Params[i]) != math.Float32bits(m.Params[i]) {
				t.Fatalf("param %d = %v, want %v", i, back.Params[i], m.Params[i])
			}
		}
	}
}

func TestReadEngineModelRefuses(t *testing.T) {
	m := engineModel(t)
	var buf bytes.Buffer
	if _, err := WriteEngineModel(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	other, _ := tensor.NamedSpec(tensor.Spec2NN)
	if _, err := ReadEngineModel(bytes.NewReader(buf.Bytes()), 1<<30, other); !errors.Is(err, ErrLayout) {
		t.Errorf("ReadEngineModel(wrong spec) = %v, want ErrLayout", err)
	}
	// A file without the spec metadata needs the caller's spec.
	var plain bytes.Buffer
	if _, err := Write(&plain, []tensor.ExternalTensor{{Name: "1.weight", Shape: []int{10, 784}}}, make([]float32, 7840), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEngineModel(bytes.NewReader(plain.Bytes()), 1<<30, tensor.Spec{}); !errors.Is(err, ErrLayout) {
		t.Errorf("ReadEngineModel(no spec anywhere) = %v, want ErrLayout", err)
	}
	logreg, _ := tensor.NamedSpec(tensor.SpecLogReg)
	if _, err := ReadEngineModel(bytes.NewReader(plain.Bytes()), 1<<30, logreg); !errors.Is(err, ErrLayout) {
		t.Errorf("ReadEngineModel(missing bias) = %v, want ErrLayout", err)
	}
	ext, _ := tensor.ExternalSpec("ext", []tensor.ExternalTensor{{Name: "w", Shape: []int{2}}})
	em, _ := tensor.NewExternalModel(ext, []float32{1, 2})
	if _, err := WriteEngineModel(&bytes.Buffer{}, em, nil); err == nil {
		t.Error("WriteEngineModel(external model) succeeded")
	}
}

// TestTextModelRoundTrip: a text model's embedding table is "0.weight"
// [vocab, dim], and its spec, tokenizer section included, comes back from
// the metadata with the same bits.
func TestTextModelRoundTrip(t *testing.T) {
	m, err := tensor.NewModel(tensor.TextClassifierSpec(300, 8, 32, 2, 3), 4)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteEngineModel(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	f, err := ReadHeader(bytes.NewReader(buf.Bytes()), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	want := []tensor.ExternalTensor{{Name: "0.weight", Shape: []int{300, 8}}, {Name: "1.weight", Shape: []int{3, 8}}, {Name: "1.bias", Shape: []int{3}}}
	if !reflect.DeepEqual(f.Layout, want) {
		t.Fatalf("layout %v, want %v", f.Layout, want)
	}
	back, err := ReadEngineModel(bytes.NewReader(buf.Bytes()), 1<<30, tensor.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if back.Spec.Text == nil || back.Spec.Text.NGrams != 2 || back.Hash() != m.Hash() {
		t.Fatalf("read back %v", back.Spec)
	}
}
