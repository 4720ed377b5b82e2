package dp

import (
	"errors"
	"math"
	"math/big"
	"testing"
)

// moments draws n samples and returns their mean, variance and the standard
// errors of both estimators (from the sample fourth moment).
func moments(t *testing.T, n int, draw func() float64) (mean, variance, seMean, seVar float64) {
	t.Helper()
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = draw()
		mean += xs[i]
	}
	mean /= float64(n)
	var m2, m4 float64
	for _, x := range xs {
		d := (x - mean) * (x - mean)
		m2 += d
		m4 += d * d
	}
	m2 /= float64(n)
	m4 /= float64(n)
	return mean, m2, math.Sqrt(m2 / float64(n)), math.Sqrt(math.Max(m4-m2*m2, 0) / float64(n))
}

// exactPMF returns P(y) of N_Z(0, s2) for |y| ≤ k.
func exactPMF(s2 float64, k int) []float64 {
	var z float64
	for y := -2000; y <= 2000; y++ {
		z += math.Exp(-float64(y*y) / (2 * s2))
	}
	p := make([]float64, 2*k+1)
	for y := -k; y <= k; y++ {
		p[y+k] = math.Exp(-float64(y*y)/(2*s2)) / z
	}
	return p
}

// chi2Critical approximates the upper 1−p quantile of χ²(df) for p ≈ 3e−6
// (z = 4.5) by the Wilson–Hilferty transform.
func chi2Critical(df int) float64 {
	d := float64(df)
	c := 1 - 2/(9*d) + 4.5*math.Sqrt(2/(9*d))
	return d * c * c * c
}

func TestDiscreteGaussianMoments(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 60_000
	}
	tests := []struct {
		name  string
		sigma float64
	}{
		{"tiny", 0.3}, {"half", 0.5}, {"below1", 0.8}, {"one", 1}, {"small", 2.5},
		{"ten", 10}, {"hundreds", 300}, {"large", 1e5}, {"max", MaxSigma},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := NewSeededSource(uint64(100 + i))
			g, err := NewDiscreteGaussian(tt.sigma)
			if err != nil {
				t.Fatal(err)
			}
			want := g.Variance()
			if tt.sigma >= 1 && math.Abs(want/(tt.sigma*tt.sigma)-1) > 1e-6 {
				t.Errorf("exact variance %v, want σ² = %v for σ ≥ 1", want, tt.sigma*tt.sigma)
			}
			if tt.sigma < 1 && !(want < tt.sigma*tt.sigma) {
				t.Errorf("exact variance %v should be below σ² = %v for σ < 1", want, tt.sigma*tt.sigma)
			}
			mean, v, seM, seV := moments(t, n, func() float64 { return float64(g.Sample(src)) })
			if math.Abs(mean) > 5*seM {
				t.Errorf("mean %v, want 0 ± %v", mean, 5*seM)
			}
			if math.Abs(v-want) > 5*seV {
				t.Errorf("variance %v, want %v ± %v", v, want, 5*seV)
			}
		})
	}
}

func TestDiscreteGaussianPMF(t *testing.T) {
	n := 300_000
	if testing.Short() {
		n = 100_000
	}
	for i, sigma := range []float64{0.3, 0.7, 1.5, 4} {
		src := NewSeededSource(uint64(200 + i))
		g, _ := NewDiscreteGaussian(sigma)
		k := int(math.Ceil(6 * sigma))
		p := exactPMF(sigma*sigma, k)
		counts := make([]float64, 2*k+1)
		var outside float64
		for range n {
			y := g.Sample(src)
			if y < -int64(k) || y > int64(k) {
				outside++
				continue
			}
			counts[int(y)+k]++
		}
		// Pool cells with expected count below 5 into one.
		var chi2, pooledObs, pooledExp float64
		df := -1
		for j, pj := range p {
			e := pj * float64(n)
			if e < 5 {
				pooledObs += counts[j]
				pooledExp += e
				continue
			}
			chi2 += (counts[j] - e) * (counts[j] - e) / e
			df++
		}
		pooledObs += outside
		if pooledExp >= 5 {
			chi2 += (pooledObs - pooledExp) * (pooledObs - pooledExp) / pooledExp
			df++
		} else if pooledObs > pooledExp+10*math.Sqrt(pooledExp+1) {
			t.Errorf("σ=%v: %v samples in cells expecting %v", sigma, pooledObs, pooledExp)
		}
		if df < 1 {
			t.Fatalf("σ=%v: no degrees of freedom", sigma)
		}
		if crit := chi2Critical(df); chi2 > crit {
			t.Errorf("σ=%v: χ² = %.1f with %d df exceeds %.1f", sigma, chi2, df, crit)
		}
	}
}

func TestDiscreteGaussianSymmetry(t *testing.T) {
	src := NewSeededSource(7)
	for _, sigma := range []float64{0.6, 2, 1000} {
		g, _ := NewDiscreteGaussian(sigma)
		var pos, neg, zero float64
		for range 100_000 {
			switch y := g.Sample(src); {
			case y > 0:
				pos++
			case y < 0:
				neg++
			default:
				zero++
			}
		}
		if math.Abs(pos-neg) > 5*math.Sqrt(pos+neg) {
			t.Errorf("σ=%v: %v positive vs %v negative", sigma, pos, neg)
		}
		// P(0) = 1/Σ exp(−y²/2σ²).
		p0 := exactPMF(sigma*sigma, 0)[0]
		if e := p0 * 100_000; math.Abs(zero-e) > 5*math.Sqrt(e) {
			t.Errorf("σ=%v: %v zeros, want %v", sigma, zero, e)
		}
	}
}

// The secure sum of n agents' noise, each N_Z(0, σ²/n), has variance σ².
// Per-agent σ stays ≥ 1 here, where N_Z's variance equals σ² to 1e−8; below
// that each share falls short (see TestDiscreteGaussianMoments).
func TestDiscreteGaussianSumOfAgents(t *testing.T) {
	tests := []struct {
		sigma float64
		n     int
	}{{20, 16}, {20, 64}, {6, 4}, {40, 200}}
	budget := 1_600_000 // samples per case
	if testing.Short() {
		budget /= 4
	}
	for i, tt := range tests {
		src := NewSeededSource(uint64(300 + i))
		per := tt.sigma / math.Sqrt(float64(tt.n))
		g, err := NewDiscreteGaussian(per)
		if err != nil {
			t.Fatal(err)
		}
		trials := min(budget/tt.n, 50_000)
		_, v, _, seV := moments(t, trials, func() float64 {
			var s int64
			for range tt.n {
				s += g.Sample(src)
			}
			return float64(s)
		})
		want := tt.sigma * tt.sigma
		if math.Abs(v-want) > 5*seV {
			t.Errorf("σ=%v n=%d: sum variance %v, want %v ± %v", tt.sigma, tt.n, v, want, 5*seV)
		}
	}
}

func TestDiscreteGaussianParameterRoundsUp(t *testing.T) {
	for _, sigma := range []float64{1e-30, 1e-3, 0.1, 0.5, 1, math.Pi, 1e3 / 7, 12345.678, 1e7, MaxSigma} {
		g, err := NewDiscreteGaussian(sigma)
		if err != nil {
			t.Fatal(err)
		}
		exact := new(big.Float).SetPrec(200).SetFloat64(sigma)
		exact.Mul(exact, exact)
		got := new(big.Float).SetPrec(200).SetUint64(g.num)
		got.SetMantExp(got, -int(g.dShift))
		if got.Cmp(exact) < 0 {
			t.Errorf("σ=%v: σ̃² = %v below σ²", sigma, got)
		}
		rel, _ := new(big.Float).Quo(new(big.Float).Sub(got, exact), exact).Float64()
		if rel > 0x1p-31 {
			t.Errorf("σ=%v: σ̃² exceeds σ² by %v relative", sigma, rel)
		}
		if want := math.Floor(sigma) + 1; float64(g.t) != want {
			t.Errorf("σ=%v: t = %d, want %v", sigma, g.t, want)
		}
	}
}

func TestDiscreteGaussianInvalid(t *testing.T) {
	for _, s := range []float64{math.NaN(), -1, -1e-300, MaxSigma * 2, math.Inf(1)} {
		if _, err := NewDiscreteGaussian(s); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("sigma %v: err %v, want ErrInvalidArgument", s, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("SampleDiscreteGaussian(-1) did not panic")
		}
	}()
	SampleDiscreteGaussian(NewSeededSource(1), -1)
}

func TestDiscreteGaussianZeroAndTiny(t *testing.T) {
	src := NewSeededSource(9)
	for _, s := range []float64{0, 0x1p-40, 1e-200} {
		for range 2000 {
			if y := SampleDiscreteGaussian(src, s); y != 0 {
				t.Fatalf("σ=%v drew %d", s, y)
			}
		}
	}
}

func TestBernoulliExpRatio(t *testing.T) {
	const n = 200_000
	for i, gamma := range [][2]uint64{{7, 10}, {23, 10}, {1, 3}, {5, 1}} {
		r := bitSource{src: NewSeededSource(uint64(400 + i))}
		num, den := gamma[0], gamma[1]
		var small, bigHits float64
		for range n {
			if r.bernoulliExpRatio128(u128{lo: num}, u128{lo: den}) {
				small++
			}
			if r.bernoulliExpRatioBig(new(big.Int).SetUint64(num), new(big.Int).SetUint64(den)) {
				bigHits++
			}
		}
		p := math.Exp(-float64(num) / float64(den))
		tol := 5 * math.Sqrt(p*(1-p)*n)
		if math.Abs(small-p*n) > tol || math.Abs(bigHits-p*n) > tol {
			t.Errorf("exp(−%d/%d) = %.4f: 128-bit %.4f, big %.4f", num, den, p, small/n, bigHits/n)
		}
		if num < den {
			var frac float64
			for range n {
				if r.bernoulliExpFrac(num, den) {
					frac++
				}
			}
			if math.Abs(frac-p*n) > tol {
				t.Errorf("bernoulliExpFrac(%d, %d) = %.4f, want %.4f", num, den, frac/n, p)
			}
		}
	}
}

func TestBernoulliRatio(t *testing.T) {
	const n = 200_000
	top := uint64(1) << 63
	cases := []struct{ num, den u128 }{
		{u128{lo: 1}, u128{lo: 3}},
		{u128{lo: 2}, u128{lo: 3}},
		{u128{lo: 1}, u128{lo: 2}},
		{u128{lo: 3}, u128{lo: 4}},                            // the expansion ends: 0.11
		{u128{lo: 1}, u128{lo: 1000}},                         // rare
		{u128{lo: top + 1}, u128{lo: top + 3}},                // den just above 2^63
		{u128{lo: 1 << 62}, u128{lo: math.MaxUint64}},         // about ¼
		{u128{hi: top, lo: 5}, u128{hi: top + 1<<62}},         // den of 128 bits, about ⅔
		{u128{hi: 1, lo: 0}, u128{hi: 3, lo: math.MaxUint64}}, // about ¼
	}
	for i, c := range cases {
		r := bitSource{src: NewSeededSource(uint64(500 + i))}
		p := (float64(c.num.hi)*0x1p64 + float64(c.num.lo)) / (float64(c.den.hi)*0x1p64 + float64(c.den.lo))
		var hits float64
		for range n {
			if r.bernoulliRatio128(c.num, c.den) {
				hits++
			}
		}
		if tol := 5*math.Sqrt(p*(1-p)*n) + 1; math.Abs(hits-p*n) > tol {
			t.Errorf("bernoulliRatio128(%v/%v): %.5f, want %.5f", c.num, c.den, hits/n, p)
		}
	}
	r := bitSource{src: NewSeededSource(1)}
	for range 1000 {
		if r.bernoulliRatio128(u128{}, u128{lo: 7}) {
			t.Fatal("probability 0 drawn true")
		}
	}
}

func TestUniformN(t *testing.T) {
	r := bitSource{src: NewSeededSource(11)}
	const n = 70_000
	for _, k := range []uint64{2, 3, 7, 1<<63 + 5, math.MaxUint64} {
		// Small k: one cell per value. Large k: 8 cells of width 2^61 (the
		// last one is a sliver whose expected count is computed exactly).
		cells, width := k, uint64(1)
		if k > 1<<40 {
			cells, width = (k-1)>>61+1, 1<<61
		}
		counts := make([]float64, cells)
		for range n {
			v := r.uniformN(k)
			if v >= k {
				t.Fatalf("uniformN(%d) = %d", k, v)
			}
			counts[v/width]++
		}
		var chi2 float64
		df := -1
		for i, c := range counts {
			w := float64(min(width, k-uint64(i)*width)) / float64(k)
			e := w * n
			if e < 5 {
				if c > 5 {
					t.Errorf("uniformN(%d): %v draws in a cell expecting %v", k, c, e)
				}
				continue
			}
			chi2 += (c - e) * (c - e) / e
			df++
		}
		if crit := chi2Critical(df); chi2 > crit {
			t.Errorf("uniformN(%d): χ² = %.1f > %.1f", k, chi2, crit)
		}
	}
}

func TestU128(t *testing.T) {
	r := NewSeededSource(12)
	toBig := func(x u128) *big.Int {
		b := new(big.Int).SetUint64(x.hi)
		return b.Lsh(b, 64).Or(b, new(big.Int).SetUint64(x.lo))
	}
	for range 2000 {
		x := u128{r.Uint64() >> (r.Uint64() % 64), r.Uint64()}
		y := u128{r.Uint64() >> (r.Uint64() % 64), r.Uint64()}
		if got, want := x.cmp(y), toBig(x).Cmp(toBig(y)); got != want {
			t.Fatalf("cmp(%v, %v) = %d, want %d", x, y, got, want)
		}
		if x.cmp(y) < 0 {
			x, y = y, x
		}
		if got, want := toBig(x.sub(y)), new(big.Int).Sub(toBig(x), toBig(y)); got.Cmp(want) != 0 {
			t.Fatalf("sub(%v, %v) = %v, want %v", x, y, got, want)
		}
		if int(x.bitLen()) != toBig(x).BitLen() {
			t.Fatalf("bitLen(%v) = %d", x, x.bitLen())
		}
		s := uint(r.Uint64() % 130)
		got, ok := x.shl(s)
		want := new(big.Int).Lsh(toBig(x), s)
		if ok != (want.BitLen() <= 128) || (ok && toBig(got).Cmp(want) != 0) {
			t.Fatalf("shl(%v, %d) = %v, %v; want %v", x, s, got, ok, want)
		}
		a, b := r.Uint64(), r.Uint64()
		if got, want := toBig(mul64(a, b)), new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(b)); got.Cmp(want) != 0 {
			t.Fatalf("mul64(%d, %d) = %v", a, b, got)
		}
	}
	for _, x := range []uint64{0, 1, 3, 4, 15, 16, 1<<62 - 1, 1 << 62, math.MaxUint64} {
		r := isqrt(x)
		if r > math.MaxUint32 || r*r > x || (r+1 <= math.MaxUint32 && (r+1)*(r+1) <= x) {
			t.Errorf("isqrt(%d) = %d", x, r)
		}
	}
}
