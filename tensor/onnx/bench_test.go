package onnx

import (
	"bytes"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// BenchmarkExportCNN and BenchmarkImportCNN time the cnn (1,663,370
// parameters, a 6.7 MB file) through Export and Import; docs/BENCHMARKS.md
// records the figures.
func BenchmarkExportCNN(b *testing.B) {
	m := randomModel(b, named(b, tensor.SpecCNN), 1)
	b.SetBytes(int64(4 * m.NumParams()))
	for b.Loop() {
		if _, err := Export(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkImportCNN(b *testing.B) {
	file, err := Export(randomModel(b, named(b, tensor.SpecCNN), 1))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		if _, err := Import(bytes.NewReader(file), limit); err != nil {
			b.Fatal(err)
		}
	}
}
