package protocol

import (
	"errors"
	"math"
	"testing"
)

func TestUpdateMetricsRoundTrip(t *testing.T) {
	v := AppendUpdateMetrics([]float32{0.5, -0.25}, 2, 1.5, 0.9)
	d, loss, acc := SplitUpdateMetrics(v, 2)
	if len(d) != 2 || d[1] != -0.25 || math.Abs(loss-1.5) > 1e-6 || math.Abs(acc-0.9) > 1e-6 {
		t.Fatalf("got %v %v %v", d, loss, acc)
	}
	// A loss beyond the scale is capped, never out of the clip range.
	v = AppendUpdateMetrics(nil, 1, 1e9, 1)
	if v[0] > 1 {
		t.Fatalf("loss coordinate %v exceeds clip", v[0])
	}
}

func TestPlainUpdate(t *testing.T) {
	b := EncodePlainUpdate([]float32{1, 2, 3}, 600)
	v, w, err := DecodePlainUpdate(b, 3)
	if err != nil || w != 600 || v[2] != 3 {
		t.Fatalf("%v %v %v", v, w, err)
	}
	if _, _, err := DecodePlainUpdate(b, 4); !errors.Is(err, ErrBadUpdate) {
		t.Fatalf("wrong dim: %v", err)
	}
	bad := EncodePlainUpdate([]float32{float32(math.NaN())}, 1)
	if _, _, err := DecodePlainUpdate(bad, 1); !errors.Is(err, ErrBadUpdate) {
		t.Fatalf("NaN: %v", err)
	}
	if _, _, err := DecodePlainUpdate([]byte{1}, 0); !errors.Is(err, ErrBadUpdate) {
		t.Fatalf("short: %v", err)
	}
}

func TestEvalVector(t *testing.T) {
	c := EvalSums{Correct: 95, Total: 100, LossSum: 12.3456}
	b := EvalSums{Correct: 90, Total: 100, LossSum: 20}
	v := EncodeEval(c, b)
	// Two agents' vectors summed in the ring decode to the sums.
	sum := make([]uint32, EvalDim)
	for i := range sum {
		sum[i] = v[i] * 2
	}
	gc, gb, err := DecodeEval(sum)
	if err != nil || gc.Correct != 190 || gb.Total != 200 || math.Abs(gc.LossSum-24.692) > 1e-9 {
		t.Fatalf("%+v %+v %v", gc, gb, err)
	}
	if _, _, err := DecodeEval(sum[:3]); !errors.Is(err, ErrBadUpdate) {
		t.Fatalf("short: %v", err)
	}
	if EncodeEval(EvalSums{LossSum: math.NaN()}, b)[2] != 0 {
		t.Fatal("NaN loss not zeroed")
	}
}

// TestFixedSum sums EncodeFixed vectors in the ring, as secure aggregation
// does, and checks the decoded totals against float64 sums: exact where
// the values are dyadic, within the fixed-point resolution otherwise.
func TestFixedSum(t *testing.T) {
	agents := [][]float64{
		{3000, 1234.5, 2.5e6, -7.25, 0},
		{2, -1234.5, 1e12, 7.25, 1e-9},
		{1, 0.1, 3.3e17, -1e15, -1e-9},
	}
	sum := make([]uint32, FixedLen(5))
	want := make([]float64, 5)
	for _, v := range agents {
		x, err := EncodeFixed(v)
		if err != nil {
			t.Fatal(err)
		}
		for i := range sum {
			sum[i] += x[i]
		}
		for i, f := range v {
			want[i] += f
		}
	}
	got, err := DecodeFixed(sum)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		tol := 3 * math.Ldexp(1, -FixedFrac)
		if rel := math.Abs(want[i]) * 1e-15; rel > tol {
			tol = rel
		}
		if math.Abs(got[i]-want[i]) > tol {
			t.Errorf("total %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if got[0] != 3003 || got[3] != -1e15 {
		t.Errorf("exact totals: %v", got)
	}
}

// TestFixedSumManyAgents checks the no-wrap bound: FixedMaxSummands agents
// each at the largest digits still decode exactly.
func TestFixedSumManyAgents(t *testing.T) {
	v := []float64{-(FixedMaxValue / 2), 65535.99999}
	x, err := EncodeFixed(v)
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]uint32, len(x))
	for range FixedMaxSummands {
		for i := range sum {
			sum[i] += x[i]
		}
	}
	got, err := DecodeFixed(sum)
	if err != nil {
		t.Fatal(err)
	}
	if want := -(FixedMaxValue / 2) * FixedMaxSummands; got[0] != want {
		t.Errorf("got %v, want %v", got[0], want)
	}
	if want := 65535.99999 * FixedMaxSummands; math.Abs(got[1]-want) > 1e-4 {
		t.Errorf("got %v, want %v", got[1], want)
	}
}

func TestFixedBad(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), FixedMaxValue, -FixedMaxValue} {
		if _, err := EncodeFixed([]float64{1, v}); !errors.Is(err, ErrBadUpdate) {
			t.Errorf("EncodeFixed(%v): %v", v, err)
		}
	}
	if _, err := DecodeFixed(make([]uint32, FixedLimbs+1)); !errors.Is(err, ErrBadUpdate) {
		t.Errorf("DecodeFixed of a ragged vector: %v", err)
	}
}
