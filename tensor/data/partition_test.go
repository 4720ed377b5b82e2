package data

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

// checkCover fails unless parts are disjoint, sorted and cover 0..n-1.
func checkCover(t *testing.T, parts [][]int, n int) {
	t.Helper()
	seen := make([]bool, n)
	for c, p := range parts {
		if !slices.IsSorted(p) {
			t.Fatalf("part %d not sorted", c)
		}
		for _, i := range p {
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("index %d out of range or dealt twice", i)
			}
			seen[i] = true
		}
	}
	if i := slices.Index(seen, false); i >= 0 {
		t.Fatalf("index %d not dealt", i)
	}
}

// labelsOf returns n pseudo-random labels of the given number of classes,
// with slightly uneven counts to exercise shard boundaries.
func labelsOf(n, classes int) []int32 {
	y := make([]int32, n)
	for i := range y {
		y[i] = int32((uint32(i) * 2654435761 >> 16) % uint32(classes))
	}
	return y
}

func mnistTrainLabels(t testing.TB) []int32 {
	t.Helper()
	dir := testutil.MNISTDir(t)
	f, err := os.Open(filepath.Join(dir, MNISTTrainLabels+".gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := ReadIDXLabels(f)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]int32, len(raw))
	for i, l := range raw {
		y[i] = int32(l)
	}
	return y
}

func TestPartitionIID(t *testing.T) {
	for _, tt := range []struct{ n, clients int }{{100, 7}, {5, 10}, {0, 3}, {60000, 100}} {
		parts := PartitionIID(tt.n, tt.clients, 42)
		if len(parts) != tt.clients {
			t.Fatalf("%d parts, want %d", len(parts), tt.clients)
		}
		checkCover(t, parts, tt.n)
		for _, p := range parts {
			if len(p) < tt.n/tt.clients || len(p) > tt.n/tt.clients+1 {
				t.Fatalf("n=%d clients=%d: part of %d", tt.n, tt.clients, len(p))
			}
		}
	}
	if !reflect.DeepEqual(PartitionIID(1000, 10, 3), PartitionIID(1000, 10, 3)) {
		t.Fatal("same seed, different partitions")
	}
	if reflect.DeepEqual(PartitionIID(1000, 10, 3), PartitionIID(1000, 10, 4)) {
		t.Fatal("different seeds, same partition")
	}
}

func TestPartitionPathologicalMNIST(t *testing.T) {
	y := mnistTrainLabels(t)
	parts, err := PartitionPathological(y, 100, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, parts, len(y))
	atMostTwo, most := 0, 0
	for _, p := range parts {
		if len(p) != 600 {
			t.Fatalf("client of %d examples, want 2 shards of 300", len(p))
		}
		k := distinctLabels(y, p)
		if k <= 2 {
			atMostTwo++
		}
		most = max(most, k)
	}
	t.Logf("clients with <= 2 labels: %d/100, most labels on a client: %d", atMostTwo, most)
	// A 300-example shard spans at most one of the 9 label boundaries.
	if atMostTwo < 80 || most > 4 {
		t.Fatalf("%d clients with <= 2 labels, a client with %d labels", atMostTwo, most)
	}
}

func distinctLabels(y []int32, idx []int) int {
	seen := map[int32]bool{}
	for _, i := range idx {
		seen[y[i]] = true
	}
	return len(seen)
}

func TestPartitionPathological(t *testing.T) {
	y := labelsOf(1003, 10) // 1003 = 20 shards of 50, three of 51
	parts, err := PartitionPathological(y, 10, 2, 9)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, parts, len(y))
	for _, p := range parts {
		if len(p) < 100 || len(p) > 102 {
			t.Fatalf("client of %d examples", len(p))
		}
	}
	again, _ := PartitionPathological(y, 10, 2, 9)
	other, _ := PartitionPathological(y, 10, 2, 10)
	if !reflect.DeepEqual(parts, again) || reflect.DeepEqual(parts, other) {
		t.Fatal("not determined by the seed")
	}
	for _, bad := range []struct{ clients, shards int }{{0, 2}, {10, 0}, {600, 2}} {
		if _, err := PartitionPathological(y, bad.clients, bad.shards, 1); !errors.Is(err, ErrPartition) {
			t.Errorf("clients=%d shards=%d: err = %v", bad.clients, bad.shards, err)
		}
	}
}

// meanLabelEntropy is the average over parts of the entropy of the part's
// label distribution, divided by log(classes): 1 means uniform.
func meanLabelEntropy(y []int32, parts [][]int, classes int) float64 {
	var total float64
	for _, p := range parts {
		count := make([]float64, classes)
		for _, i := range p {
			count[y[i]]++
		}
		var h float64
		for _, c := range count {
			if c > 0 {
				q := c / float64(len(p))
				h -= q * math.Log(q)
			}
		}
		total += h / math.Log(float64(classes))
	}
	return total / float64(len(parts))
}

func TestPartitionDirichlet(t *testing.T) {
	y := labelsOf(10000, 10)
	entropy := map[float64]float64{}
	for _, alpha := range []float64{0.1, 0.5, 100} {
		parts, err := PartitionDirichlet(y, 10, alpha, 5, 10)
		if err != nil {
			t.Fatal(err)
		}
		checkCover(t, parts, len(y))
		for _, p := range parts {
			if len(p) < 10 {
				t.Fatalf("alpha %v: part of %d under minSize", alpha, len(p))
			}
		}
		entropy[alpha] = meanLabelEntropy(y, parts, 10)
	}
	t.Logf("normalized mean label entropy by alpha: %v", entropy)
	if !(entropy[0.1] < 0.5 && entropy[0.1] < entropy[0.5] && entropy[0.5] < entropy[100] && entropy[100] > 0.97) {
		t.Fatalf("entropies %v: want skewed for small alpha, near uniform for large", entropy)
	}
	a, _ := PartitionDirichlet(y, 20, 0.5, 5, 10)
	b, _ := PartitionDirichlet(y, 20, 0.5, 5, 10)
	c, _ := PartitionDirichlet(y, 20, 0.5, 6, 10)
	if !reflect.DeepEqual(a, b) || reflect.DeepEqual(a, c) {
		t.Fatal("not determined by the seed")
	}
	tests := []struct {
		name    string
		clients int
		alpha   float64
		minSize int
	}{
		{"no clients", 0, 1, 0},
		{"zero alpha", 5, 0, 0},
		{"NaN alpha", 5, math.NaN(), 0},
		{"minSize over n/clients", 20, 1, 101},
		{"minSize unreachable by draws", 15, 0.001, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PartitionDirichlet(y[:2000], tt.clients, tt.alpha, 1, tt.minSize); !errors.Is(err, ErrPartition) {
				t.Fatalf("err = %v, want ErrPartition", err)
			}
		})
	}
}

// TestGammaMoments checks the Gamma(alpha) sampler's mean and variance
// (both alpha) and the Dirichlet components' mean 1/K.
func TestGammaMoments(t *testing.T) {
	rng := newRand(11)
	const n = 200_000
	for _, alpha := range []float64{0.05, 0.3, 1, 2.5, 30} {
		var s, s2 float64
		for range n {
			g := math.Exp(logGamma(rng, alpha))
			s += g
			s2 += g * g
		}
		mean := s / n
		v := s2/n - mean*mean
		// Standard error of the mean is sqrt(alpha/n).
		if math.Abs(mean-alpha) > 5*math.Sqrt(alpha/n) || math.Abs(v/alpha-1) > 0.1 {
			t.Errorf("Gamma(%v): mean %v var %v, want %v and %v", alpha, mean, v, alpha, alpha)
		}
	}
	p := make([]float64, 4)
	sum := make([]float64, 4)
	for range 20000 {
		dirichlet(rng, 0.01, p)
		var tot float64
		for i, v := range p {
			if v < 0 || math.IsNaN(v) {
				t.Fatalf("component %v", p)
			}
			sum[i] += v
			tot += v
		}
		if math.Abs(tot-1) > 1e-9 {
			t.Fatalf("draw sums to %v", tot)
		}
	}
	for i := range sum {
		if m := sum[i] / 20000; math.Abs(m-0.25) > 0.02 {
			t.Errorf("Dir(0.01) component %d mean %v, want 0.25", i, m)
		}
	}
}

func TestHoldOut(t *testing.T) {
	const n = 101
	ds := &tensor.Dataset{X: make([]float32, 2*n), Y: make([]int32, n), Shape: []int{2}, Classes: 3}
	for i := range n {
		ds.X[2*i], ds.X[2*i+1] = float32(i), -float32(i)
		ds.Y[i] = int32(i % 3)
	}
	train, held := HoldOut(ds, 0.2, 4)
	if train.Len() != 81 || held.Len() != 20 {
		t.Fatalf("sizes %d + %d, want 81 + 20", train.Len(), held.Len())
	}
	seen := map[float32]bool{}
	for _, part := range []*tensor.Dataset{train, held} {
		if err := part.Validate(); err != nil {
			t.Fatal(err)
		}
		prev := float32(-1)
		for i := range part.Len() {
			id := part.X[2*i]
			if seen[id] || id <= prev || part.X[2*i+1] != -id || part.Y[i] != int32(id)%3 {
				t.Fatalf("example %v duplicated, out of order or torn", id)
			}
			seen[id], prev = true, id
		}
	}
	if len(seen) != n {
		t.Fatalf("%d examples survive, want %d", len(seen), n)
	}
	again, _ := HoldOut(ds, 0.2, 4)
	other, _ := HoldOut(ds, 0.2, 5)
	if !slices.Equal(again.X, train.X) || slices.Equal(other.X, train.X) {
		t.Fatal("not determined by the seed")
	}
	if tr, h := HoldOut(ds, 0, 1); tr.Len() != n || h.Len() != 0 {
		t.Fatal("fraction 0")
	}
	if tr, h := HoldOut(ds, 1, 1); tr.Len() != 0 || h.Len() != n {
		t.Fatal("fraction 1")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("fraction 1.5 did not panic")
		}
	}()
	HoldOut(ds, 1.5, 1)
}
