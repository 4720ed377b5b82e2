package tensor

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
)

// TestInt8ModelFile: a model served in int8 whose weights are rounded
// (RoundWeightsInt8) is stored with int8 weights, about a quarter of its
// float size, reads back to the same parameters bit for bit (so the same
// hash) by UnmarshalModel and ReadModel, and quantizes to the same int8
// weights; the float form of such a model, and an unrounded one, still
// read and write as before.
func TestInt8ModelFile(t *testing.T) {
	for _, name := range []string{Spec2NN, SpecCNN} {
		t.Run(name, func(t *testing.T) {
			spec, err := NamedSpec(name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewModel(spec, 7)
			if err != nil {
				t.Fatal(err)
			}
			m.Params[0] = float32(math.Copysign(0, -1)) // a -0 weight must survive as the file reads it
			float, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			m.Spec.Quantize = QuantizeInt8
			unrounded, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(unrounded) < len(float) {
				t.Fatalf("unrounded weights stored in %d bytes, want the float form's %d", len(unrounded), len(float))
			}
			m.RoundWeightsInt8()
			file, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if ratio := float64(len(file)) / float64(len(float)); ratio > 0.27 {
				t.Fatalf("int8 file is %d bytes, %.3f of the float file's %d", len(file), ratio, len(float))
			}
			t.Logf("%s: int8 file %d bytes, float file %d (%.3f)", name, len(file), len(float), float64(len(file))/float64(len(float)))
			got, err := UnmarshalModel(file)
			if err != nil {
				t.Fatal(err)
			}
			streamed, err := ReadModel(bytes.NewReader(file), 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []*Model{got, streamed} {
				if r.Hash() != m.Hash() || r.Spec.Quantize != QuantizeInt8 {
					t.Fatalf("read back with hash %x quantize %q, want %x int8", r.Hash(), r.Spec.Quantize, m.Hash())
				}
			}
			again, _ := got.MarshalBinary()
			if !bytes.Equal(again, file) {
				t.Fatal("the model read from an int8 file does not write the same file")
			}
			old, err := UnmarshalModel(unrounded) // the float form of a model served in int8
			if err != nil || old.Spec.Quantize != QuantizeInt8 {
				t.Fatalf("float form of an int8 model: %v", err)
			}
			// Served from the file, the model quantizes as the rounded one.
			calib := make([]float32, 8*m.Features())
			for i := range calib {
				calib[i] = float32(i%97) / 97
			}
			qa, err := Quantize(m, calib, 8)
			if err != nil {
				t.Fatal(err)
			}
			qb, err := Quantize(got, calib, 8)
			if err != nil {
				t.Fatal(err)
			}
			pa, _ := qa.Predict(calib, 8)
			pb, _ := qb.Predict(calib, 8)
			if !slices.Equal(pa, pb) {
				t.Fatal("the model read from its int8 file quantizes differently")
			}
		})
	}
}

// TestInt8FileRefusals: int8 parameters are refused for a model not
// served in int8, a truncated int8 file is refused, and a corrupted one
// never panics.
func TestInt8FileRefusals(t *testing.T) {
	spec := Spec{Name: "r", Input: []int{6}, Layers: []LayerSpec{{Type: LayerDense, Units: 4}}, Quantize: QuantizeInt8}
	m, err := NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.RoundWeightsInt8()
	file, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if file[10] != flagInt8 {
		t.Fatalf("flags %d, want the int8 flag", file[10])
	}
	for k := range len(file) {
		if _, err := UnmarshalModel(file[:k]); err == nil {
			t.Fatalf("a %d-byte prefix decoded", k)
		}
		bad := slices.Clone(file)
		bad[k] ^= 0x40
		_, _ = UnmarshalModel(bad)
		_, _ = ReadModel(bytes.NewReader(bad), 0)
	}
	m.Spec.Quantize = ""
	plain, _ := m.MarshalBinary()
	if plain[10] != 0 {
		t.Fatal("a float model was written in the int8 form")
	}
	if _, err := newInt8Model(m.Spec); !errors.Is(err, ErrFormat) {
		t.Fatalf("int8 parameters for a float model: %v, want ErrFormat", err)
	}
}

// TestReadModelParamsInt8: the chunked reader hands out an int8 file's
// parameters as the whole-file reader decodes them, and keeps checking
// its checksum.
func TestReadModelParamsInt8(t *testing.T) {
	spec, err := NamedSpec(Spec2NN)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	m.Spec.Quantize = QuantizeInt8
	m.RoundWeightsInt8()
	file, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want, err := UnmarshalModel(file)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(want.Params))
	seen := 0
	if _, err := ReadModelParams(bytes.NewReader(file), 0, func(off int, p []float32) error {
		seen += copy(got[off:], p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != len(got) || !slices.Equal(got, want.Params) {
		t.Fatalf("streamed %d of %d parameters; equal to the whole read: %v", seen, len(got), slices.Equal(got, want.Params))
	}
	file[len(file)/2] ^= 1
	if _, err := ReadModelParams(bytes.NewReader(file), 0, func(int, []float32) error { return nil }); err == nil {
		t.Fatal("a flipped byte read without an error")
	}
}
