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
