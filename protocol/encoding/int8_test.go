package encoding

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func gaussian(rng *rand.Rand, n int, sigma float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * sigma)
	}
	return x
}

// TestInt8WithinHalfScale: every decoded value is within scale/2 of the
// input (plus float32 rounding of the product), for several block sizes,
// ragged last blocks, zero blocks and widely different block magnitudes.
func TestInt8WithinHalfScale(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		name string
		x    []float32
		bs   int
	}{
		{"gaussian 256", gaussian(rng, 4096, 0.05), 256},
		{"ragged 100", gaussian(rng, 1001, 1), 100},
		{"block of one", gaussian(rng, 17, 3), 1},
		{"one big block", gaussian(rng, 777, 1e-3), 1 << 20},
		{"zeros", make([]float32, 300), 64},
		{"mixed magnitudes", func() []float32 {
			x := gaussian(rng, 1024, 1)
			for i := range 256 {
				x[i] *= 1e-6
				x[512+i] *= 1e6
			}
			return x
		}(), 256},
		{"extremes", []float32{math.MaxFloat32, -math.MaxFloat32, 1, 0}, 4},
		{"tiny scale", []float32{1e-40, -3e-41, 0, 1e-45}, 4},
		{"empty", nil, 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendInt8(nil, tt.x, tt.bs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := valuesLen(Int8, uint64(len(tt.x)), uint64(tt.bs)); uint64(len(b)) != want {
				t.Fatalf("%d bytes, want %d", len(b), want)
			}
			got := make([]float32, len(tt.x))
			decodeInt8(got, b, tt.bs)
			for blo := 0; blo < len(tt.x); blo += tt.bs {
				bhi := min(blo+tt.bs, len(tt.x))
				var m float64
				for _, v := range tt.x[blo:bhi] {
					m = max(m, math.Abs(float64(v)))
				}
				scale := m / 127
				for i := blo; i < bhi; i++ {
					err := math.Abs(float64(got[i]) - float64(tt.x[i]))
					tol := scale/2*(1+1e-5) + 1e-45
					if scale < 0x1p-126 { // subnormal scales lose precision
						tol = m
					}
					if err > tol {
						t.Fatalf("x[%d]=%g decoded %g: error %g > scale/2 = %g", i, tt.x[i], got[i], err, scale/2)
					}
				}
			}
		})
	}
}

func TestInt8RejectsNonFinite(t *testing.T) {
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		x := []float32{1, 2, v, 3}
		if _, err := appendInt8(nil, x, 2, nil); !errors.Is(err, ErrNonFinite) {
			t.Errorf("%v: err = %v, want ErrNonFinite", v, err)
		}
	}
}

// TestInt8StochasticUnbiased: stochastic rounding stays within one scale
// step and is unbiased: over many seeds the mean decoded value converges to
// the input far closer than round-to-nearest's fixed error.
func TestInt8StochasticUnbiased(t *testing.T) {
	// 127 and -127 pin the scale at 1, so 0.3 sits 0.3 steps above 0.
	x := []float32{127, 0.3, -0.7, 12.25, -127}
	sum := make([]float64, len(x))
	got := make([]float32, len(x))
	const trials = 4000
	var rng rand.PCG
	for s := range uint64(trials) {
		rng.Seed(s, 1)
		b, err := appendInt8(nil, x, len(x), &rng)
		if err != nil {
			t.Fatal(err)
		}
		decodeInt8(got, b, len(x))
		for i := range x {
			if d := math.Abs(float64(got[i] - x[i])); d >= 1 {
				t.Fatalf("x[%d]=%g decoded %g: more than one step away", i, x[i], got[i])
			}
			sum[i] += float64(got[i])
		}
	}
	for i := range x {
		mean := sum[i] / trials
		// Standard error <= 0.5/sqrt(trials) ~ 0.008; allow 4 sigma.
		if math.Abs(mean-float64(x[i])) > 0.032 {
			t.Errorf("x[%d]=%g: mean decoded %g, biased", i, x[i], mean)
		}
	}
}
