package safetensors

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// benchLayout is a layout of about n parameters in tensors of up to 4M
// values, like a large network's.
func benchLayout(n int) []tensor.ExternalTensor {
	var l []tensor.ExternalTensor
	for i := 0; n > 0; i++ {
		k := min(n, 1<<22)
		l = append(l, tensor.ExternalTensor{Name: fmt.Sprintf("layer%d.weight", i), Shape: []int{k}})
		n -= k
	}
	return l
}

// benchHandoff writes n parameters to a file and reads them back into a
// flat vector: the weight hand-off to and from a trainer, through the page
// cache.
func benchHandoff(b *testing.B, n int) {
	layout := benchLayout(n)
	params := make([]float32, n)
	for i := range params {
		params[i] = float32(i)
	}
	dst := make([]float32, n)
	path := filepath.Join(b.TempDir(), "w.safetensors")
	b.Run("write", func(b *testing.B) {
		b.SetBytes(int64(4 * n))
		for b.Loop() {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			bw := bufio.NewWriterSize(f, 1<<20)
			if _, err := Write(bw, layout, params, nil); err != nil {
				b.Fatal(err)
			}
			if err := bw.Flush(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(int64(4 * n))
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ReadInto(bufio.NewReaderSize(f, 1<<20), 1<<40, layout, dst); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// BenchmarkHandoff1_6M is the FedAvg CNN's size (1,663,370 parameters).
func BenchmarkHandoff1_6M(b *testing.B) { benchHandoff(b, 1_663_370) }

// BenchmarkHandoff100M is a 100M-parameter model (400 MB).
func BenchmarkHandoff100M(b *testing.B) { benchHandoff(b, 100_000_000) }
