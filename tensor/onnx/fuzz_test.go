package onnx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// FuzzImport: Import never panics, and what it accepts is a valid model
// that exports again. Seeds: the PyTorch files in testdata and exports of
// a model with every layer type and of the logreg.
func FuzzImport(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed files in testdata: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, spec := range []tensor.Spec{mixSpec(), named(f, tensor.SpecLogReg)} {
		b, err := Export(randomModel(f, spec, 1))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Import(bytes.NewReader(b), 1<<20)
		if err != nil {
			for _, want := range []error{ErrFormat, ErrUnsupported, ErrTooLarge, ErrExternalData} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("Import error wraps no sentinel: %v", err)
		}
		if err := m.Spec.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := Export(m); err != nil {
			t.Fatalf("an imported model does not export: %v", err)
		}
	})
}
