package data

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
)

// BenchmarkLoadMNIST measures LoadMNIST on the real gzip-compressed files
// (70,000 images); MB/s counts the decompressed IDX bytes.
func BenchmarkLoadMNIST(b *testing.B) {
	dir := testutil.MNISTDir(b)
	const idxBytes = (16 + 60000*784) + (8 + 60000) + (16 + 10000*784) + (8 + 10000)
	b.SetBytes(idxBytes)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := LoadMNIST(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
}

// BenchmarkReadCSV100k reads a CSV table of 100,000 rows × 16 features.
func BenchmarkReadCSV100k(b *testing.B) {
	var sb strings.Builder
	for j := range 16 {
		fmt.Fprintf(&sb, "f%d,", j)
	}
	sb.WriteString("label\n")
	for i := range 100_000 {
		for j := range 16 {
			fmt.Fprintf(&sb, "%.4f,", float64(i*j%997)/97)
		}
		fmt.Fprintf(&sb, "c%d\n", i%7)
	}
	in := []byte(sb.String())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadCSV(bytes.NewReader(in), CSVOptions{Label: "label"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100_000*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkPartitionDirichlet60000 splits MNIST-sized labels over 100
// clients with alpha 0.5.
func BenchmarkPartitionDirichlet60000(b *testing.B) {
	y := labelsOf(60000, 10)
	for b.Loop() {
		if _, err := PartitionDirichlet(y, 100, 0.5, 1, 10); err != nil {
			b.Fatal(err)
		}
	}
}
