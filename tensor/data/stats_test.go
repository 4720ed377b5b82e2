package data

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedge/fedge/tensor"
)

func smallDataset() *tensor.Dataset {
	// Feature 0: 1 2 3 4; feature 1: constant 7; feature 2: one NaN.
	nan := float32(math.NaN())
	return &tensor.Dataset{
		X:       []float32{1, 7, 2, 2, 7, nan, 3, 7, 4, 4, 7, 6},
		Y:       []int32{0, 1, 0, 1},
		Shape:   []int{3},
		Classes: 2,
	}
}

func TestComputeStats(t *testing.T) {
	s := ComputeStats(smallDataset())
	want := &Stats{
		Count: []float64{4, 4, 3},
		Sum:   []float64{10, 28, 12},
		SumSq: []float64{30, 196, 56},
		Min:   []float64{1, 7, 2},
		Max:   []float64{4, 7, 6},
	}
	for name, p := range map[string][2][]float64{
		"count": {s.Count, want.Count}, "sum": {s.Sum, want.Sum}, "sumsq": {s.SumSq, want.SumSq},
		"min": {s.Min, want.Min}, "max": {s.Max, want.Max},
	} {
		if !slices.Equal(p[0], p[1]) {
			t.Errorf("%s = %v, want %v", name, p[0], p[1])
		}
	}
	if m, v := s.Mean(0), s.Var(0); m != 2.5 || v != 1.25 {
		t.Errorf("feature 0 mean %v var %v, want 2.5 1.25", m, v)
	}
}

// randomDataset returns n examples of f features with distinct scales and
// offsets per feature, plus one constant feature.
func randomDataset(n, f int, seed uint64) *tensor.Dataset {
	rng := rand.New(rand.NewPCG(seed, 1))
	ds := &tensor.Dataset{X: make([]float32, n*f), Y: make([]int32, n), Shape: []int{f}, Classes: 2}
	for i := range n {
		for j := range f {
			v := float32(100*float64(j) + float64(j+1)*rng.NormFloat64())
			if j == f-1 {
				v = 1234.5
			}
			ds.X[i*f+j] = v
		}
		ds.Y[i] = int32(i % 2)
	}
	return ds
}

func TestFederatedStandardizer(t *testing.T) {
	const n, f = 3000, 5
	all := randomDataset(n, f, 7)
	parts := PartitionIID(n, 3, 1)
	central := NewStandardizer(ComputeStats(all))

	for _, width := range []string{"float64", "float32"} {
		t.Run(width, func(t *testing.T) {
			// Each client exports its vector; the aggregator only sums them.
			var sum64 []float64
			var sum32 []float32
			for _, p := range parts {
				s := ComputeStats(all.Subset(p))
				if width == "float64" {
					sum64 = addVec(sum64, s.Vector())
				} else {
					sum32 = addVec(sum32, s.Vector32())
				}
			}
			var global *Stats
			var err error
			if width == "float64" {
				global, err = StatsFromVector(sum64)
			} else {
				global, err = StatsFromVector32(sum32)
			}
			if err != nil {
				t.Fatal(err)
			}
			if global.HasBounds() {
				t.Fatal("stats from a summed vector claim bounds")
			}
			fed := NewStandardizer(global)
			for j := range f {
				if d := math.Abs(float64(fed.Mean[j] - central.Mean[j])); d > 1e-4*(1+math.Abs(float64(central.Mean[j]))) {
					t.Errorf("feature %d mean %v vs central %v", j, fed.Mean[j], central.Mean[j])
				}
				if d := math.Abs(float64(fed.InvStd[j]/central.InvStd[j] - 1)); d > 1e-3 {
					t.Errorf("feature %d inv std %v vs central %v", j, fed.InvStd[j], central.InvStd[j])
				}
			}
			// Each client standardizes its own data with the global scaler;
			// the union then has mean 0 and variance 1 per feature.
			total := NewStats(f)
			for _, p := range parts {
				local := all.Subset(p)
				if err := fed.Transform(local); err != nil {
					t.Fatal(err)
				}
				if err := total.Add(ComputeStats(local)); err != nil {
					t.Fatal(err)
				}
			}
			for j := range f - 1 {
				if m, v := total.Mean(j), total.Var(j); math.Abs(m) > 1e-3 || math.Abs(v-1) > 1e-3 {
					t.Errorf("standardized feature %d: mean %v var %v", j, m, v)
				}
			}
			// The constant feature becomes exactly 0, not NaN or Inf.
			if c := f - 1; fed.InvStd[c] != 1 || total.Max[c] != 0 || total.Min[c] != 0 {
				t.Errorf("constant feature: inv std %v, range [%v,%v]", fed.InvStd[c], total.Min[c], total.Max[c])
			}
		})
	}
}

func addVec[T float32 | float64](dst, v []T) []T {
	if dst == nil {
		dst = make([]T, len(v))
	}
	for i := range v {
		dst[i] += v[i]
	}
	return dst
}

func TestStatsAdd(t *testing.T) {
	a := ComputeStats(smallDataset())
	b := ComputeStats(smallDataset())
	b.Min[0], b.Max[0] = -5, 50
	if err := a.Add(b); err != nil {
		t.Fatal(err)
	}
	if a.Count[0] != 8 || a.Sum[1] != 56 || a.Min[0] != -5 || a.Max[0] != 50 || a.Min[2] != 2 {
		t.Fatalf("merged %+v", a)
	}
	noBounds, _ := StatsFromVector(b.Vector())
	if err := a.Add(noBounds); err != nil || a.HasBounds() || a.Count[0] != 12 {
		t.Fatalf("add boundless: err %v bounds %v count %v", err, a.HasBounds(), a.Count[0])
	}
	if err := a.Add(NewStats(2)); !errors.Is(err, ErrMismatch) {
		t.Fatalf("width mismatch: err = %v", err)
	}
}

func TestStatsFromVectorBad(t *testing.T) {
	tests := []struct {
		name string
		v    []float64
	}{
		{"empty", nil},
		{"not multiple of 3", []float64{1, 2}},
		{"negative count", []float64{-1, 0, 0}},
		{"NaN", []float64{1, math.NaN(), 0}},
		{"Inf", []float64{1, 0, math.Inf(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := StatsFromVector(tt.v); !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
	s, err := StatsFromVector32([]float32{2, 0, 4, 0, 10, 0})
	if err != nil || s.Mean(0) != 2 || s.Var(0) != 1 || s.Mean(1) != 0 || s.Var(1) != 0 {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestMinMaxScaler(t *testing.T) {
	ds := smallDataset()
	m, err := NewMinMaxScaler(ComputeStats(ds))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Transform(ds); err != nil {
		t.Fatal(err)
	}
	// Feature 0 [1,4] → 0,1/3,2/3,1; constant → 0; feature 2 [2,6], NaN kept.
	want := []float32{0, 0, 0, 1.0 / 3, 0, float32(math.NaN()), 2.0 / 3, 0, 0.5, 1, 0, 1}
	for i := range want {
		if g := ds.X[i]; !(g == want[i] || math.Abs(float64(g-want[i])) < 1e-6 || (g != g && want[i] != want[i])) {
			t.Fatalf("X = %v, want %v", ds.X, want)
		}
	}

	vec, _ := StatsFromVector(ComputeStats(smallDataset()).Vector())
	if _, err := NewMinMaxScaler(vec); !errors.Is(err, ErrNoBounds) {
		t.Fatalf("boundless stats: err = %v", err)
	}

	// Agreed bounds clip values outside them.
	b, err := NewMinMaxScalerBounds([]float32{0, -1}, []float32{10, 1})
	if err != nil {
		t.Fatal(err)
	}
	row := []float32{15, 0}
	b.TransformRow(row)
	if row[0] != 1 || row[1] != 0.5 {
		t.Fatalf("row %v, want [1 0.5]", row)
	}
	for _, bad := range [][2][]float32{
		{{1}, {0}},
		{{0, 0}, {1}},
		{{float32(math.NaN())}, {1}},
		{{0}, {float32(math.Inf(1))}},
	} {
		if _, err := NewMinMaxScalerBounds(bad[0], bad[1]); err == nil {
			t.Errorf("bounds %v accepted", bad)
		}
	}

	lo, hi := MomentBounds(vec, 2)
	if lo[0] != float32(2.5-2*math.Sqrt(1.25)) || hi[0] != float32(2.5+2*math.Sqrt(1.25)) || lo[1] != 7 || hi[1] != 7 {
		t.Fatalf("moment bounds %v %v", lo, hi)
	}
}

func TestTransformMismatch(t *testing.T) {
	st := NewStandardizer(NewStats(2))
	if err := st.Transform(smallDataset()); !errors.Is(err, ErrMismatch) {
		t.Fatalf("standardizer: err = %v", err)
	}
	m, _ := NewMinMaxScalerBounds([]float32{0}, []float32{1})
	if err := m.Transform(smallDataset()); !errors.Is(err, ErrMismatch) {
		t.Fatalf("min-max: err = %v", err)
	}
}

// TestStandardizerLargeOffset checks that a feature with a large mean and a
// small spread keeps its variance, and a large constant counts as constant.
func TestStandardizerLargeOffset(t *testing.T) {
	ds := &tensor.Dataset{X: []float32{1e4, 5e4, 1e4 + 1, 5e4, 1e4 + 2, 5e4}, Y: []int32{0, 0, 0}, Shape: []int{2}, Classes: 1}
	st := NewStandardizer(ComputeStats(ds))
	if got, want := st.InvStd[0], float32(1/math.Sqrt(2.0/3)); math.Abs(float64(got-want)) > 1e-3 {
		t.Errorf("inv std %v, want %v", got, want)
	}
	if st.InvStd[1] != 1 {
		t.Errorf("constant 5e4: inv std %v, want 1", st.InvStd[1])
	}
}
