package encoding

import (
	"compress/flate"
	"fmt"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor/data"
)

// BenchmarkLosslessLevel is what LosslessFlateLevel was chosen on: the
// Float32XOR delta between two real consecutive versions of each model
// (realRound: trained on MNIST, then one local round) at each DEFLATE level.
// Encode reports the blob size ("bytes", "%raw") and MB/s of float32 input;
// decode reports MB/s of float32 output.
// go test -run '^$' -bench BenchmarkLosslessLevel ./protocol/encoding
func BenchmarkLosslessLevel(b *testing.B) {
	dir := testutil.MNISTDir(b)
	mnist, _, err := data.LoadMNIST(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range benchModels {
		base, next := realRound(b, m.name, mnist)
		for _, level := range []int{flate.HuffmanOnly, flate.BestSpeed, 2, 4, LosslessFlateLevel, flate.BestCompression} {
			opts := Options{Codec: Float32XOR, Compressor: Flate, Level: level}
			var e Encoder
			blob, err := e.AppendEncode(nil, next, base, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/level%d/encode", m.name, level), func(b *testing.B) {
				loop(b, 4*len(next), func() { blob, _ = e.AppendEncode(blob[:0], next, base, opts) })
				b.ReportMetric(float64(len(blob)), "bytes")
				b.ReportMetric(100*float64(len(blob))/float64(4*len(next)), "%raw")
			})
			b.Run(fmt.Sprintf("%s/level%d/decode", m.name, level), func(b *testing.B) {
				var d Decoder
				out, err := d.Decode(nil, blob, base)
				if err != nil {
					b.Fatal(err)
				}
				loop(b, 4*len(next), func() {
					if out, err = d.Decode(out, blob, base); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}
