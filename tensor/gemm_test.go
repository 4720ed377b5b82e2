package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gemmCase is one product; the strides are the stored widths plus padding.
type gemmCase struct {
	transA, transB bool
	m, n, k        int
	padA, padB     int
	padC           int
	alpha, beta    float32
	nanC           bool // fill C with NaN (only meaningful with beta == 0)
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,m=%d,n=%d,k=%d,pad=%d/%d/%d,alpha=%g,beta=%g,nanC=%v",
		tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.padA, tc.padB, tc.padC, tc.alpha, tc.beta, tc.nanC)
}

// operands builds random A, B and C for the case, with a sentinel in every
// padding slot of C so a write outside the m×n block is caught.
func (tc gemmCase) operands(rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	rowsA, colsA := tc.m, tc.k
	if tc.transA {
		rowsA, colsA = tc.k, tc.m
	}
	rowsB, colsB := tc.k, tc.n
	if tc.transB {
		rowsB, colsB = tc.n, tc.k
	}
	lda, ldb, ldc = max(1, colsA)+tc.padA, max(1, colsB)+tc.padB, max(1, tc.n)+tc.padC
	a = gemmRandSlice(rng, rowsA*lda)
	b = gemmRandSlice(rng, rowsB*ldb)
	c = make([]float32, tc.m*ldc)
	for i := range c {
		switch {
		case i%ldc >= tc.n:
			c[i] = gemmSentinel
		case tc.nanC:
			c[i] = float32(math.NaN())
		default:
			c[i] = rng.Float32()*2 - 1
		}
	}
	return a, lda, b, ldb, c, ldc
}

const gemmSentinel = 12345.5

func gemmRandSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// refGemm is the textbook triple loop in float64. It also returns, for each
// entry, the bound |alpha|·Σ|a||b| + |beta·c| that scales the rounding error.
func refGemm(tc gemmCase, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) (want, bound []float64) {
	want = make([]float64, tc.m*tc.n)
	bound = make([]float64, tc.m*tc.n)
	for i := range tc.m {
		for j := range tc.n {
			var s, abs float64
			for p := range tc.k {
				ia, ib := i*lda+p, p*ldb+j
				if tc.transA {
					ia = p*lda + i
				}
				if tc.transB {
					ib = j*ldb + p
				}
				av, bv := a[ia], b[ib]
				s += float64(av) * float64(bv)
				abs += math.Abs(float64(av) * float64(bv))
			}
			w := float64(tc.alpha) * s
			bd := math.Abs(float64(tc.alpha)) * abs
			if tc.beta != 0 {
				w += float64(tc.beta) * float64(c[i*ldc+j])
				bd += math.Abs(float64(tc.beta) * float64(c[i*ldc+j]))
			}
			want[i*tc.n+j] = w
			bound[i*tc.n+j] = bd
		}
	}
	return want, bound
}

// checkGemm runs the case through gemmWith and compares with refGemm: every
// entry within (k+2)·2⁻²³ of its bound (a worst-case float32 summation
// error), and every padding slot of C untouched.
func checkGemm(t *testing.T, cfg gemmConfig, tc gemmCase, rng *rand.Rand) {
	t.Helper()
	a, lda, b, ldb, c, ldc := tc.operands(rng)
	want, bound := refGemm(tc, a, lda, b, ldb, c, ldc)
	gemmWith(cfg, tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	tol := float64(tc.k+2) * 0x1p-23
	for i := range tc.m {
		for j := range ldc {
			got := c[i*ldc+j]
			if j >= tc.n {
				if got != gemmSentinel {
					t.Fatalf("%v %v: C[%d][%d] in the stride padding changed to %g", cfg, tc, i, j, got)
				}
				continue
			}
			w := want[i*tc.n+j]
			if d := math.Abs(float64(got) - w); !(d <= tol*bound[i*tc.n+j]+1e-30) {
				t.Fatalf("%v %v: C[%d][%d] = %g, want %g (diff %g, tol %g)", cfg, tc, i, j, got, w, d, tol*bound[i*tc.n+j])
			}
		}
	}
}

// String names a configuration in failure messages.
func (cfg gemmConfig) String() string {
	names := ""
	for _, k := range cfg.kernels {
		names += k.name + "+"
	}
	return fmt.Sprintf("kernels=%s workers=%d minFlops=%d orient=%d", names, cfg.maxWorkers, cfg.minFlops, cfg.orient)
}

// gemmConfigs returns every configuration a product can take on this
// machine: each kernel alone in each orientation, and the automatic plan
// over the default kernels, each serial and split over goroutines however
// small the product (minFlops 1).
func gemmConfigs() []gemmConfig {
	var cfgs []gemmConfig
	for _, w := range []int{1, 3} {
		cfgs = append(cfgs, gemmConfig{kernels: defaultKernels, maxWorkers: w, minFlops: 1})
		for _, k := range archKernels() {
			for _, o := range []gemmOrient{gemmNormal, gemmSwapped} {
				cfgs = append(cfgs, gemmConfig{kernels: []*gemmKernel{k}, maxWorkers: w, minFlops: 1, orient: o})
			}
		}
	}
	return cfgs
}

func TestGemmShapes(t *testing.T) {
	dims := []struct{ m, n, k int }{
		{1, 1, 1}, {1, 1, 7}, {1, 9, 1}, {5, 1, 3}, {2, 3, 4},
		{6, 16, 8}, {12, 32, 5}, {7, 17, 9}, {13, 33, 31}, {11, 5, 300},
		{10, 200, 78}, {64, 20, 100}, {25, 10, 64}, {37, 71, 257}, {130, 45, 19},
		{4, 130, 513}, {123, 2, 40},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range dims {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				tc := gemmCase{transA: tA, transB: tB, m: d.m, n: d.n, k: d.k, alpha: 1, beta: 0}
				t.Run(tc.String(), func(t *testing.T) {
					for _, cfg := range gemmConfigs() {
						checkGemm(t, cfg, tc, rng)
					}
				})
			}
		}
	}
}

func TestGemmScalarsAndStrides(t *testing.T) {
	tests := []struct {
		name string
		tc   gemmCase
	}{
		{"beta0-nanC", gemmCase{m: 19, n: 37, k: 23, alpha: 1, beta: 0, nanC: true}},
		{"beta0-nanC-transposed", gemmCase{transA: true, transB: true, m: 13, n: 50, k: 300, alpha: 0.5, beta: 0, nanC: true}},
		{"beta1", gemmCase{m: 20, n: 40, k: 33, alpha: 1, beta: 1}},
		{"alpha-beta", gemmCase{transA: true, m: 31, n: 29, k: 61, alpha: -1.5, beta: 0.25}},
		{"negative-beta", gemmCase{transB: true, m: 7, n: 70, k: 9, alpha: 2, beta: -3}},
		{"padded-strides", gemmCase{m: 27, n: 35, k: 41, padA: 3, padB: 5, padC: 7, alpha: 1, beta: 0.5}},
		{"padded-transposed", gemmCase{transA: true, transB: true, m: 26, n: 65, k: 14, padA: 9, padB: 1, padC: 2, alpha: 0.75, beta: 1}},
		{"padded-beta0-nan", gemmCase{transB: true, m: 33, n: 17, k: 129, padA: 4, padB: 4, padC: 4, alpha: 1, beta: 0, nanC: true}},
		{"k-spans-blocks", gemmCase{m: 14, n: 34, k: 700, alpha: 1, beta: 0.5}},
		{"n-spans-blocks", gemmCase{transA: true, m: 3, n: 2200, k: 3, alpha: 1, beta: 0, nanC: true}},
		{"m-spans-blocks", gemmCase{transB: true, m: 300, n: 20, k: 17, padC: 3, alpha: 1, beta: 1}},
		{"layer-2nn-bwd-weights", gemmCase{transA: true, m: 78, n: 20, k: 10, alpha: 1, beta: 1}},
		{"packed-transposed-A", gemmCase{transA: true, m: 7, n: 515, k: 515, padA: 3, alpha: 1, beta: 0.5}},
		{"packed-A-and-B", gemmCase{m: 530, n: 545, k: 9, padB: 2, alpha: -1, beta: 0, nanC: true}},
		{"packed-B-partial-panel", gemmCase{m: 530, n: 45, k: 20, alpha: 1, beta: 1}},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cfg := range gemmConfigs() {
				checkGemm(t, cfg, tt.tc, rng)
			}
			checkGemm(t, gemmConfig{kernels: defaultKernels, maxWorkers: 2}, tt.tc, rng)
		})
	}
}

// TestGemmRandom draws random shapes, transposes, strides and scalars.
func TestGemmRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	n := 150
	if testing.Short() {
		n = 40
	}
	scalars := []float32{0, 1, -1, 0.5, 2.5}
	cfgs := gemmConfigs()
	for _, cfg := range cfgs {
		for range n / 4 {
			tc := gemmCase{
				transA: rng.IntN(2) == 0,
				transB: rng.IntN(2) == 0,
				m:      1 + rng.IntN(90),
				n:      1 + rng.IntN(90),
				k:      1 + rng.IntN(300),
				padA:   rng.IntN(3) * rng.IntN(9),
				padB:   rng.IntN(3) * rng.IntN(9),
				padC:   rng.IntN(3) * rng.IntN(9),
				alpha:  scalars[1+rng.IntN(len(scalars)-1)],
				beta:   scalars[rng.IntN(len(scalars))],
			}
			tc.nanC = tc.beta == 0 && rng.IntN(2) == 0
			checkGemm(t, cfg, tc, rng)
		}
	}
}

// TestGemmDegenerate covers k == 0 and alpha == 0, where C is only scaled.
func TestGemmDegenerate(t *testing.T) {
	tests := []struct {
		name        string
		k           int
		alpha, beta float32
		c, want     []float32
	}{
		{"k0-beta0-clears-nan", 0, 1, 0, []float32{float32(math.NaN()), 2, 3, 4}, []float32{0, 0, 3, 4}},
		{"k0-beta2", 0, 1, 2, []float32{1, 2, 3, 4}, []float32{2, 4, 3, 4}},
		{"alpha0-beta1", 3, 0, 1, []float32{1, 2, 3, 4}, []float32{1, 2, 3, 4}},
		{"alpha0-beta-half", 3, 0, 0.5, []float32{1, 2, 3, 4}, []float32{0.5, 1, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := []float32{1, 2, 3}
			b := []float32{1, 1, 1, 1, 1, 1}
			// m=1, n=2, ldc=4: the last two entries are padding.
			Gemm(false, false, 1, 2, tt.k, tt.alpha, a, max(1, tt.k), b, 2, tt.beta, tt.c, 4)
			for i := range tt.want {
				if tt.c[i] != tt.want[i] {
					t.Fatalf("C = %v, want %v", tt.c, tt.want)
				}
			}
		})
	}
}

func TestGemmPanics(t *testing.T) {
	buf := make([]float32, 100)
	tests := []struct {
		name string
		call func()
	}{
		{"negative m", func() { Gemm(false, false, -1, 2, 2, 1, buf, 2, buf, 2, 0, buf, 2) }},
		{"lda too small", func() { Gemm(false, false, 3, 3, 4, 1, buf, 3, buf, 3, 0, buf, 3) }},
		{"transposed lda too small", func() { Gemm(true, false, 5, 3, 2, 1, buf, 4, buf, 3, 0, buf, 3) }},
		{"ldc too small", func() { Gemm(false, false, 3, 3, 3, 1, buf, 3, buf, 3, 0, buf, 2) }},
		{"short A", func() { Gemm(false, false, 20, 3, 10, 1, buf, 10, buf, 3, 0, buf, 3) }},
		{"short B", func() { Gemm(false, true, 2, 30, 4, 1, buf, 4, buf, 4, 0, buf, 30) }},
		{"short C", func() { Gemm(false, false, 11, 10, 1, 1, buf, 1, buf, 10, 0, buf, 10) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tt.call()
		})
	}
}

// TestGemmNoAllocs checks that a steady stream of products, serial and
// split over goroutines, allocates nothing once the buffer pool is warm.
func TestGemmNoAllocs(t *testing.T) {
	if gemmRaceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	tests := []struct {
		name    string
		workers int
		m, n, k int
		tA, tB  bool
	}{
		{"small", 1, 10, 200, 78, false, false},
		{"serial", 1, 64, 200, 300, false, true},
		{"parallel", 2, 128, 256, 300, true, false},
		{"swapped", 2, 20, 300, 200, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := gemmRandSlice(rng, tt.m*tt.k)
			b := gemmRandSlice(rng, tt.k*tt.n)
			c := make([]float32, tt.m*tt.n)
			lda, ldb := tt.k, tt.n
			if tt.tA {
				lda = tt.m
			}
			if tt.tB {
				ldb = tt.k
			}
			run := func() {
				gemmWith(gemmConfig{kernels: defaultKernels, maxWorkers: tt.workers, minFlops: 1}, tt.tA, tt.tB, tt.m, tt.n, tt.k, 1, a, lda, b, ldb, 0, c, tt.n)
			}
			run()
			if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
				t.Fatalf("%v allocations per product, want 0", allocs)
			}
		})
	}
}
