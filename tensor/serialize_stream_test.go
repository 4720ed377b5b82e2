package tensor

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// TestReadModelParams checks the streamed reading against ReadModel: the
// same spec and values, chunk by chunk, and a corrupted file refused.
func TestReadModelParams(t *testing.T) {
	spec, _ := NamedSpec("2nn")
	m, err := NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, m.NumParams())
	next := 0
	s, err := ReadModelParams(bytes.NewReader(b), 0, func(off int, p []float32) error {
		if off != next {
			t.Fatalf("chunk at %d, want %d", off, next)
		}
		copy(got[off:], p)
		next += len(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, m.Params) || s.Name != spec.Name {
		t.Fatal("streamed parameters or spec differ from the model's")
	}
	hs, n, err := ReadModelHeader(bytes.NewReader(b), 0)
	if err != nil || n != m.NumParams() || hs.Name != spec.Name {
		t.Fatalf("header: %d parameters of %q, %v", n, hs.Name, err)
	}
	bad := slices.Clone(b)
	bad[len(bad)/2] ^= 1
	if _, err := ReadModelParams(bytes.NewReader(bad), 0, func(int, []float32) error { return nil }); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupted file: %v", err)
	}
	stop := errors.New("stop")
	if _, err := ReadModelParams(bytes.NewReader(b), 0, func(int, []float32) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn's error: %v", err)
	}
	if _, err := ReadModelParams(bytes.NewReader(b), int64(len(b)-1), func(int, []float32) error { return nil }); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	w, err := ModelWith(spec, got)
	if err != nil || &w.Params[0] != &got[0] || w.Hash() != m.Hash() {
		t.Fatalf("ModelWith: %v", err)
	}
	if _, err := ModelWith(spec, got[1:]); !errors.Is(err, ErrShape) {
		t.Fatalf("ModelWith of a short vector: %v", err)
	}
}
