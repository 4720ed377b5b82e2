package secagg

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestAddSumsOfGroups sums six encoded inputs in two groups and adds the
// group sums: the decoded mean equals the mean of all six, and negative
// coordinates survive the wrap-around of the ring.
func TestAddSumsOfGroups(t *testing.T) {
	q := Quantizer{Clip: 1, Bits: 16, MaxWeight: 8}
	if err := q.Check(6); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := [][]float32{{-0.5, 0.25}, {-0.75, 0.5}, {0.125, -1}, {0, 1}, {-1, -1}, {0.5, 0.5}}
	weights := []uint32{1, 2, 3, 4, 5, 6}
	groups := [][]int{{0, 1, 2}, {3, 4, 5}}
	var sums [][]uint32
	for _, g := range groups {
		sum := make([]uint32, q.EncodedLen(2))
		for _, i := range g {
			x := make([]uint32, q.EncodedLen(2))
			if err := q.Encode(x, inputs[i], weights[i], rng); err != nil {
				t.Fatal(err)
			}
			if err := AddSums(sum, x); err != nil {
				t.Fatal(err)
			}
		}
		sums = append(sums, sum)
	}
	total := make([]uint32, q.EncodedLen(2))
	for _, s := range sums {
		if err := AddSums(total, s); err != nil {
			t.Fatal(err)
		}
	}
	mean := make([]float32, 2)
	w, err := q.DecodeMean(mean, total)
	if err != nil {
		t.Fatal(err)
	}
	if w != 21 {
		t.Fatalf("total weight %d, want 21", w)
	}
	for j := range mean {
		var want float64
		for i, x := range inputs {
			want += float64(weights[i]) * float64(x[j])
		}
		want /= 21
		// Stochastic rounding errs by at most one level per input.
		if tol := 6 * float64(q.Clip) * 8 / 32767 / 21; abs(float64(mean[j])-want) > tol {
			t.Errorf("coordinate %d: mean %v, want %v ± %v", j, mean[j], want, tol)
		}
	}
	if err := AddSums(total, total[:1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("sums of different lengths: %v, want ErrMalformed", err)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
