package dp

import (
	"fmt"
	"testing"
)

func BenchmarkDiscreteGaussian(b *testing.B) {
	for _, sigma := range []float64{0.5, 4, 1000, 1e6} {
		b.Run(fmt.Sprintf("sigma=%g", sigma), func(b *testing.B) {
			g, err := NewDiscreteGaussian(sigma)
			if err != nil {
				b.Fatal(err)
			}
			src := NewSeededSource(1)
			var sink int64
			for b.Loop() {
				sink += g.Sample(src)
			}
			_ = sink
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkAddNoise_D100k noises a 100k-coordinate fixed-point update with a
// cryptographic source, at a per-agent σ typical of a 2^16 scale.
func BenchmarkAddNoise_D100k(b *testing.B) {
	const d = 100_000
	dst := make([]uint32, d)
	src, err := NewCryptoSource()
	if err != nil {
		b.Fatal(err)
	}
	sigma, err := AgentSigmaUnits(1.0, 1.0, 1<<16, 100)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * d)
	for b.Loop() {
		if err := AddNoiseFixedPoint(dst, sigma, src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClipL2_D100k(b *testing.B) {
	const d = 100_000
	v := make([]float32, d)
	for i := range v {
		v[i] = float32(i%17) - 8
	}
	b.SetBytes(4 * d)
	for b.Loop() {
		ClipL2(v, 1e9) // norm only: nothing to scale
	}
}

func BenchmarkAccountantEpsilon(b *testing.B) {
	a, err := NewAccountant(nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Step(0.01, 1.1, 1000); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		a.Epsilon(1e-5)
	}
}

// BenchmarkAccountantStep is one round's RDP over the default orders, the
// cost the coordinator pays per new sampling rate.
func BenchmarkAccountantStep(b *testing.B) {
	a, err := NewAccountant(nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := a.Step(0.01, 1.1, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNoiseForBudget(b *testing.B) {
	p := Params{Epsilon: 3, Delta: 1e-5, Rounds: 1000, SampleRate: 0.01}
	for b.Loop() {
		if _, err := NoiseForBudget(p); err != nil {
			b.Fatal(err)
		}
	}
}
