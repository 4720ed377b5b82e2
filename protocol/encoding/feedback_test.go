package encoding

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestErrorFeedbackConservesTheSum: over several rounds, the sum of what was
// sent plus the final residual equals the sum of the updates, for sparse
// and quantized codecs, with and without a base.
func TestErrorFeedbackConservesTheSum(t *testing.T) {
	const n, rounds = 2000, 6
	tests := []Options{
		{Codec: Float32, TopK: 0.01},
		{Codec: Int8, TopK: 0.01, Compressor: Flate},
		{Codec: Float16, TopK: 0.1},
		{Codec: Int8},
	}
	for _, opts := range tests {
		for _, withBase := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(23, 24))
			var base []float32
			if withBase {
				base = gaussian(rng, n, 0.1)
			}
			var e Encoder
			var d Decoder
			var ef ErrorFeedback
			sumIn := make([]float64, n)
			sumSent := make([]float64, n)
			params := make([]float32, n)
			for range rounds {
				u := gaussian(rng, n, 1e-3)
				for i := range u {
					sumIn[i] += float64(u[i])
					params[i] = u[i]
					if base != nil {
						params[i] = base[i] + u[i]
					}
				}
				blob, err := ef.AppendEncode(nil, &e, params, base, opts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := d.Decode(nil, blob, base)
				if err != nil {
					t.Fatal(err)
				}
				for i := range got {
					s := float64(got[i])
					if base != nil {
						s -= float64(base[i])
					}
					sumSent[i] += s
				}
			}
			r := ef.Residual()
			var worst, scale float64
			for i := range sumIn {
				worst = max(worst, math.Abs(sumSent[i]+float64(r[i])-sumIn[i]))
				scale = max(scale, math.Abs(sumIn[i]))
			}
			// Only float32 rounding separates the two sides (the base adds
			// rounding of base + d̂ on the receiver).
			tol := 1e-5 * scale
			if base != nil {
				tol = float64(rounds) * 0x1p-23 * 0.5 // ulp of |base| values near 0.4
			}
			if worst > tol {
				t.Errorf("%v base=%v: |sent + residual − inputs| up to %g (scale %g)", opts, withBase, worst, scale)
			}
			// The residual is not trivially zero for lossy codecs.
			if rel := relErr(r, make([]float32, n)); rel == 0 {
				t.Errorf("%v: residual is zero", opts)
			}
		}
	}
}

// TestErrorFeedbackBeatsPlainTopK: with feedback the accumulated sent update
// tracks the accumulated true update far better than top-k alone.
func TestErrorFeedbackBeatsPlainTopK(t *testing.T) {
	const n, rounds = 5000, 20
	rng := rand.New(rand.NewPCG(25, 26))
	opts := Options{Codec: Int8, TopK: 0.05}
	var e Encoder
	var ef ErrorFeedback
	sumIn := make([]float32, n)
	sumEF := make([]float32, n)
	sumPlain := make([]float32, n)
	for range rounds {
		u := gaussian(rng, n, 1)
		for i := range u {
			u[i] += 0.3 // a persistent signal top-k alone never sends
			sumIn[i] += u[i]
		}
		blob, err := Encode(u, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := Decode(blob, nil)
		if blob, err = ef.AppendEncode(nil, &e, u, nil, opts); err != nil {
			t.Fatal(err)
		}
		sent, _ := Decode(blob, nil)
		for i := range u {
			sumEF[i] += sent[i]
			sumPlain[i] += plain[i]
		}
	}
	efErr, plainErr := relErr(sumIn, sumEF), relErr(sumIn, sumPlain)
	if efErr > plainErr/2 {
		t.Errorf("relative error of the accumulated update: feedback %g, plain %g", efErr, plainErr)
	}
}

func TestErrorFeedbackLengthAndReset(t *testing.T) {
	ef := NewErrorFeedback(4)
	var e Encoder
	if _, err := ef.AppendEncode(nil, &e, make([]float32, 5), nil, Options{}); !errors.Is(err, ErrLength) {
		t.Errorf("err = %v, want ErrLength", err)
	}
	if _, err := ef.AppendEncode(nil, &e, []float32{1, 2, 3, 4}, nil, Options{TopK: 0.25}); err != nil {
		t.Fatal(err)
	}
	if r := ef.Residual(); r[0] != 1 || r[3] != 0 {
		t.Errorf("residual %v, want [1 2 3 0]", r)
	}
	ef.Reset()
	if r := ef.Residual(); r[0] != 0 || r[1] != 0 || r[2] != 0 {
		t.Errorf("after Reset: %v", r)
	}
}
