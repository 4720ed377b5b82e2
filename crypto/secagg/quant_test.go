package secagg

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestQuantizerCheck(t *testing.T) {
	tests := []struct {
		q    Quantizer
		n    int
		want error
	}{
		{Quantizer{Clip: 1, Bits: 16}, 1000, nil},
		{Quantizer{Clip: 1, Bits: 22}, 1000, nil},         // 1000 * (2^21-1) < 2^31
		{Quantizer{Clip: 1, Bits: 23}, 1000, ErrOverflow}, // 1000 * (2^22-1) > 2^31
		{Quantizer{Clip: 1, Bits: 31}, 1, nil},
		{Quantizer{Clip: 1, Bits: 31}, 2, nil},
		{Quantizer{Clip: 1, Bits: 31}, 3, ErrOverflow},
		{Quantizer{Clip: 1, Bits: 8, MaxWeight: 4_294_967}, 1000, nil},
		{Quantizer{Clip: 1, Bits: 8, MaxWeight: 4_294_968}, 1000, ErrOverflow},
		{Quantizer{Clip: 0, Bits: 8}, 10, ErrInvalidConfig},
		{Quantizer{Clip: float32(math.Inf(1)), Bits: 8}, 10, ErrInvalidConfig},
		{Quantizer{Clip: float32(math.NaN()), Bits: 8}, 10, ErrInvalidConfig},
		{Quantizer{Clip: 1, Bits: 1}, 10, ErrInvalidConfig},
		{Quantizer{Clip: 1, Bits: 32}, 10, ErrInvalidConfig},
	}
	for _, tt := range tests {
		err := tt.q.Check(tt.n)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%+v.Check(%d) = %v, want %v", tt.q, tt.n, err, tt.want)
		}
	}
}

// TestQuantizerSum: the decoded ring sum of n encodings is the weighted sum
// of the clipped inputs within the rounding error, the extreme sums do not
// wrap around, and the weighted mean comes out right.
func TestQuantizerSum(t *testing.T) {
	const n, d = 200, 64
	q := Quantizer{Clip: 2, Bits: 24, MaxWeight: 1000}
	if err := q.Check(n); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sum := make([]uint32, q.EncodedLen(d))
	want := make([]float64, d)
	var wsum float64
	enc := make([]uint32, q.EncodedLen(d))
	for u := range n {
		x := make([]float32, d)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 1.5)
		}
		if u < 3 {
			for i := range x {
				x[i] = 100 // clipped to 2 at full weight: the extreme
			}
		}
		w := uint32(1 + rng.IntN(1000))
		if u < 3 {
			w = 1000
		}
		if err := q.Encode(enc, x, w, rng); err != nil {
			t.Fatal(err)
		}
		for i := range sum {
			sum[i] += enc[i]
		}
		for i, v := range x {
			want[i] += float64(w) * math.Max(-2, math.Min(2, float64(v)))
		}
		wsum += float64(w)
	}
	got := make([]float32, d)
	w, err := q.DecodeSum(got, sum)
	if err != nil || float64(w) != wsum {
		t.Fatalf("DecodeSum weight %d, want %v (%v)", w, wsum, err)
	}
	step := float64(q.Clip) * float64(q.MaxWeight) / float64(1<<23-1)
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > float64(n)*step {
			t.Fatalf("coord %d: decoded %v, want %v", i, got[i], want[i])
		}
	}
	mean := make([]float32, d)
	if _, err := q.DecodeMean(mean, sum); err != nil {
		t.Fatal(err)
	}
	for i := range mean {
		if math.Abs(float64(mean[i])-want[i]/wsum) > float64(n)*step/wsum+1e-6 {
			t.Fatalf("coord %d: mean %v, want %v", i, mean[i], want[i]/wsum)
		}
	}
}

// TestStochasticRoundingUnbiased: the mean of many encodings of one value
// converges to the value, not to the nearest level.
func TestStochasticRoundingUnbiased(t *testing.T) {
	q := Quantizer{Clip: 1, Bits: 3} // levels -3..3: step 1/3
	rng := rand.New(rand.NewPCG(3, 4))
	const trials = 100000
	for _, v := range []float32{0.1, -0.45, 0.9, 1} {
		var acc int64
		enc := make([]uint32, 2)
		for range trials {
			if err := q.Encode(enc, []float32{v}, 1, rng); err != nil {
				t.Fatal(err)
			}
			acc += int64(int32(enc[0]))
		}
		mean := float64(acc) / trials / 3 // back to value units
		if math.Abs(mean-float64(v)) > 0.005 {
			t.Fatalf("E[decode(encode(%v))] = %v", v, mean)
		}
	}
}

func TestQuantizerErrors(t *testing.T) {
	q := Quantizer{Clip: 1, Bits: 8}
	rng := rand.New(rand.NewPCG(1, 1))
	if err := q.Encode(make([]uint32, 3), []float32{1, 2, 3}, 1, rng); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short dst: %v", err)
	}
	if err := q.Encode(make([]uint32, 2), []float32{1}, 2, rng); !errors.Is(err, ErrOverflow) {
		t.Fatalf("weight above MaxWeight: %v", err)
	}
	if _, err := q.DecodeMean(make([]float32, 1), []uint32{5, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero total weight: %v", err)
	}
	enc := make([]uint32, 3)
	if err := q.Encode(enc, []float32{float32(math.NaN()), float32(math.Inf(-1))}, 1, rng); err != nil || enc[0] != 0 || int32(enc[1]) != -127 {
		t.Fatalf("NaN/-Inf encode to %v (%v)", enc, err)
	}
}
