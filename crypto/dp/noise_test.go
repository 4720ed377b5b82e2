package dp

import (
	"errors"
	"math"
	"testing"
)

func TestAddNoiseFixedPoint(t *testing.T) {
	const n = 100_000
	const sigma = 37.5
	dst := make([]uint32, n)
	orig := make([]uint32, n)
	for i := range dst {
		// Values at both ends of the ring, so that noise wraps both ways.
		switch i % 3 {
		case 0:
			orig[i] = 0
		case 1:
			orig[i] = math.MaxUint32 - uint32(i%50)
		default:
			orig[i] = uint32(i) * 2654435761
		}
	}
	copy(dst, orig)
	if err := AddNoiseFixedPoint(dst, sigma, NewSeededSource(31)); err != nil {
		t.Fatal(err)
	}
	i := 0
	mean, v, seM, seV := moments(t, n, func() float64 {
		d := int32(dst[i] - orig[i]) // the noise, recovered modulo 2^32
		i++
		return float64(d)
	})
	if math.Abs(mean) > 5*seM || math.Abs(v-sigma*sigma) > 5*seV {
		t.Errorf("noise mean %v var %v, want 0 and %v", mean, v, sigma*sigma)
	}
	// The same seed gives the same noise: the source is the only randomness.
	again := append([]uint32(nil), orig...)
	_ = AddNoiseFixedPoint(again, sigma, NewSeededSource(31))
	for j := range again {
		if again[j] != dst[j] {
			t.Fatalf("element %d differs between runs with one seed", j)
		}
	}
	// Zero noise leaves dst alone; a bad sigma is refused without writing.
	keep := append([]uint32(nil), orig...)
	if err := AddNoiseFixedPoint(keep, 0, NewSeededSource(1)); err != nil {
		t.Fatal(err)
	}
	if err := AddNoiseFixedPoint(keep, -1, NewSeededSource(1)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("sigma −1: %v", err)
	}
	for j := range keep {
		if keep[j] != orig[j] {
			t.Fatalf("element %d changed", j)
		}
	}
}

// Modular sum of several agents' noised vectors = sum of values + summed
// noise, with the variance of the total σ².
func TestAddNoiseFixedPointAgentsSum(t *testing.T) {
	const agents, d, target = 25, 20_000, 50.0
	per, err := AgentSigmaUnits(target, 1, 1, agents)
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]uint32, d)
	for a := range agents {
		v := make([]uint32, d)
		for i := range v {
			v[i] = uint32(int32(a - 12)) // each agent's value, negative for some
		}
		if err := AddNoiseFixedPoint(v, per, NewSeededSource(uint64(600+a))); err != nil {
			t.Fatal(err)
		}
		for i := range sum {
			sum[i] += v[i]
		}
	}
	i := 0
	mean, v, seM, seV := moments(t, d, func() float64 {
		x := float64(int32(sum[i])) // true sum of values is Σ(a−12) = 0
		i++
		return x
	})
	if math.Abs(mean) > 5*seM || math.Abs(v-target*target) > 5*seV {
		t.Errorf("sum of %d agents: mean %v var %v, want 0 and %v", agents, mean, v, target*target)
	}
}

func TestAgentSigmaUnits(t *testing.T) {
	got, err := AgentSigmaUnits(1.1, 2, 1<<16, 100)
	if want := 1.1 * 2 * 65536 / 10; err != nil || math.Abs(got-want) > 1e-9 {
		t.Errorf("AgentSigmaUnits = %v, %v; want %v", got, err, want)
	}
	bad := []struct {
		z, c, s float64
		n       int
	}{{-1, 1, 1, 1}, {1, -1, 1, 1}, {1, 1, 0, 1}, {1, 1, 1, 0}, {math.NaN(), 1, 1, 1}, {1, 1, math.Inf(1), 1}, {1e6, 1e6, 1e6, 1}}
	for _, b := range bad {
		if _, err := AgentSigmaUnits(b.z, b.c, b.s, b.n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v", b, err)
		}
	}
}

// Stochastic rounding of a norm-c vector stays within RoundedNormBound with
// probability ≥ 1 − β, and within the hard bound always.
func TestRoundedNormBound(t *testing.T) {
	src := NewSeededSource(41)
	const d, trials, beta = 500, 2000, 0.01
	for _, c := range []float64{3, 30, 300} {
		bound, err := RoundedNormBound(c, d, beta)
		if err != nil {
			t.Fatal(err)
		}
		hard, _ := RoundedNormBound(c, d, 0)
		if !(bound <= hard) || hard != c+math.Sqrt(d) {
			t.Fatalf("bound %v hard %v", bound, hard)
		}
		x := make([]float64, d)
		var over int
		for range trials {
			var n2 float64
			for i := range x {
				x[i] = float64(src.Uint64()>>11)/(1<<53) - 0.5
				n2 += x[i] * x[i]
			}
			var r2 float64
			for i := range x {
				v := x[i] * c / math.Sqrt(n2)
				fl := math.Floor(v)
				if float64(src.Uint64()>>11)/(1<<53) < v-fl {
					fl++
				}
				r2 += fl * fl
			}
			if math.Sqrt(r2) > hard {
				t.Fatalf("rounded norm %v above the hard bound %v", math.Sqrt(r2), hard)
			}
			if math.Sqrt(r2) > bound {
				over++
			}
		}
		if float64(over) > beta*trials {
			t.Errorf("c=%v: %d of %d rounded norms above %v", c, over, trials, bound)
		}
	}
	for _, a := range [][3]float64{{-1, 1, 0.1}, {1, -1, 0.1}, {1, 1, 1}, {1, 1, -0.5}, {math.NaN(), 1, 0.1}} {
		if _, err := RoundedNormBound(a[0], int(a[1]), a[2]); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%v: %v", a, err)
		}
	}
}

func TestDistributedTau(t *testing.T) {
	if DistributedTau(1, 1) != 0 {
		t.Error("one agent: τ should be 0")
	}
	// Direct sum for small n.
	for _, n := range []int{2, 10, 100} {
		var want float64
		for k := 1; k < n; k++ {
			want += math.Exp(-2 * math.Pi * math.Pi * float64(k) / float64(k+1))
		}
		want *= 10
		if got := DistributedTau(1, n); math.Abs(got-want) > 1e-12*want {
			t.Errorf("τ(1, %d) = %v, want %v", n, got, want)
		}
	}
	// Decreasing in σ, increasing in n, and the tail bound above the sum.
	if !(DistributedTau(3, 100) < DistributedTau(2, 100) && DistributedTau(1, 1000) > DistributedTau(1, 100)) {
		t.Error("τ not monotone")
	}
	huge := DistributedTau(1, 1<<20)
	exact := 0.0
	for k := 1; k < 1<<20; k++ {
		exact += math.Exp(-2 * math.Pi * math.Pi * float64(k) / float64(k+1))
	}
	if huge < 10*exact || huge > 10*exact*(1+1e-3) {
		t.Errorf("τ(1, 2^20) = %v, exact %v", huge, 10*exact)
	}
	if tau := DistributedTau(2.7, 1000); tau > 1e-27 {
		t.Errorf("τ(2.7, 1000) = %v, documented as ~6e−31·999", tau)
	}
}

func TestNoiseTailBound(t *testing.T) {
	const sigma, n, tail = 3.0, 40, 1e-3
	b, err := NoiseTailBound(sigma, n, tail)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewDiscreteGaussian(sigma)
	src := NewSeededSource(88)
	const trials = 20_000
	var over int
	for range trials {
		var s int64
		for range n {
			s += g.Sample(src)
		}
		if math.Abs(float64(s)) > b {
			over++
		}
	}
	// The bound is a Chernoff bound: the real tail is far smaller.
	if float64(over) > tail*trials {
		t.Errorf("%d of %d sums beyond %v", over, trials, b)
	}
	// It is not vacuous either: a third of it is exceeded often.
	third := 0
	for range 2000 {
		var s int64
		for range n {
			s += g.Sample(src)
		}
		if math.Abs(float64(s)) > b/3 {
			third++
		}
	}
	if third < 20 {
		t.Errorf("only %d of 2000 sums beyond a third of the bound %v", third, b)
	}
	for _, a := range [][3]float64{{-1, 1, 0.1}, {1, -1, 0.1}, {1, 1, 0}, {1, 1, 1}, {math.NaN(), 1, 0.1}} {
		if _, err := NoiseTailBound(a[0], int(a[1]), a[2]); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%v: %v", a, err)
		}
	}
}
