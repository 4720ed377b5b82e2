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
