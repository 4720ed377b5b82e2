package encoding

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refTopK selects by a full sort: magnitude descending, index ascending.
func refTopK(x []float32, k int) []uint32 {
	order := make([]uint32, len(x))
	for i := range order {
		order[i] = uint32(i)
	}
	abs := func(i uint32) uint32 { return math.Float32bits(x[i]) & 0x7fffffff }
	slices.SortFunc(order, func(a, b uint32) int {
		if c := cmp.Compare(abs(b), abs(a)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := order[:min(k, len(x))]
	slices.Sort(out)
	return out
}

func TestSelectTopK(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ties := make([]float32, 1000)
	for i := range ties {
		ties[i] = float32(rng.IntN(5) - 2) // many equal magnitudes
	}
	close := make([]float32, 5000)
	for i := range close {
		close[i] = 1 + float32(rng.IntN(3))*0x1p-23 // same high 16 bits
	}
	tests := []struct {
		name string
		x    []float32
		k    int
	}{
		{"gaussian 1%", gaussian(rng, 10000, 1), 100},
		{"gaussian k=1", gaussian(rng, 999, 1), 1},
		{"all", gaussian(rng, 50, 1), 50},
		{"more than all", gaussian(rng, 50, 1), 80},
		{"none", gaussian(rng, 50, 1), 0},
		{"ties", ties, 333},
		{"same high bits", close, 2500},
		{"zeros", make([]float32, 100), 10},
		{"negative and special", []float32{-5, 3, float32(math.Inf(-1)), 0, float32(math.NaN()), -0.0, 7}, 3},
	}
	hist := make([]uint32, histSize)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := selectTopK(nil, tt.x, tt.k, hist)
			want := refTopK(tt.x, tt.k)
			if !slices.Equal(got, want) {
				t.Fatalf("selectTopK = %v\nwant %v", got[:min(20, len(got))], want[:min(20, len(want))])
			}
		})
	}
}

func TestKeepCount(t *testing.T) {
	tests := []struct {
		frac float64
		n    int
		want int
	}{
		{0.01, 199210, 1993},
		{0.01, 100, 1},
		{0.001, 10, 1},
		{1, 7, 7},
		{0.5, 0, 0},
	}
	for _, tt := range tests {
		if got := keepCount(tt.frac, tt.n); got != tt.want {
			t.Errorf("keepCount(%g, %d) = %d, want %d", tt.frac, tt.n, got, tt.want)
		}
	}
}

func TestIndicesRoundTrip(t *testing.T) {
	idx := []uint32{0, 1, 2, 130, 131, 20000, 1<<31 + 5}
	b := appendIndices(nil, idx)
	got := make([]uint32, len(idx))
	n, err := decodeIndices(got, b, 1<<31+6)
	if err != nil || n != len(b) || !slices.Equal(got, idx) {
		t.Fatalf("decodeIndices = %v, %d, %v; want %v, %d", got, n, err, idx, len(b))
	}
	// An index at or past n is rejected, and so is truncated input.
	if _, err := decodeIndices(got, b, 1<<31+5); err == nil {
		t.Error("index past n accepted")
	}
	if _, err := decodeIndices(got, b[:len(b)-1], 1<<31+6); err == nil {
		t.Error("truncated indices accepted")
	}
}
