package tensor

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// gemmShape is one product C(m×n) = op(A)·op(B) with inner size k.
type gemmShape struct {
	name    string
	tA, tB  bool
	m, n, k int
}

// gemmLayerShapes are the products the FedAvg models run: the 2nn MLP
// (784-200-200-10) at batch 10 and 64, where Dense computes Y = X·W,
// dW = Xᵀ·dY and dX = dY·Wᵀ; and the cnn at batch 50, whose convolutions
// are im2col products (rows = batch·pixels, k = 5·5·channels, n = filters).
// Conv2Chunk is the 327-row im2col chunk the conv layer actually passes.
var gemmLayerShapes = []gemmShape{
	{"2NN_B10_Fwd", false, false, 10, 200, 784},
	{"2NN_B10_Hidden", false, false, 10, 200, 200},
	{"2NN_B10_Out", false, false, 10, 10, 200},
	{"2NN_B10_BwdW", true, false, 784, 200, 10},
	{"2NN_B10_BwdX", false, true, 10, 200, 200},
	{"2NN_B64_Fwd", false, false, 64, 200, 784},
	{"2NN_B64_Hidden", false, false, 64, 200, 200},
	{"2NN_B64_Out", false, false, 64, 10, 200},
	{"2NN_B64_BwdW", true, false, 784, 200, 64},
	{"2NN_B64_BwdX", false, true, 64, 200, 200},
	{"CNN_Conv1_Fwd", false, false, 50 * 28 * 28, 32, 25},
	{"CNN_Conv1_BwdW", true, false, 25, 32, 50 * 28 * 28},
	{"CNN_Conv2_Fwd", false, false, 50 * 14 * 14, 64, 800},
	{"CNN_Conv2_BwdW", true, false, 800, 64, 50 * 14 * 14},
	{"CNN_Conv2_BwdX", false, true, 50 * 14 * 14, 800, 64},
	{"CNN_Conv2Chunk_Fwd", false, false, 327, 64, 800},
	{"CNN_Conv2Chunk_BwdW", true, false, 800, 64, 327},
	{"CNN_Conv2Chunk_BwdX", false, true, 327, 800, 64},
	{"CNN_FC1_Fwd", false, false, 50, 512, 3136},
	{"CNN_FC1_BwdW", true, false, 3136, 512, 50},
	{"CNN_FC1_BwdX", false, true, 50, 3136, 512},
	{"CNN_FC2_Fwd", false, false, 50, 10, 512},
}

type gemmFunc func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

func gonumGemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// genericGemm is Gemm forced onto the pure-Go micro-kernel.
func genericGemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemmWith(gemmConfig{kernels: []*gemmKernel{genericKernel}, maxWorkers: runtime.GOMAXPROCS(0)}, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// benchGemm times one shape and reports GFLOP/s (2·m·n·k per product) by
// the wall clock and per CPU-second.
func benchGemm(b *testing.B, s gemmShape, f gemmFunc) {
	rng := rand.New(rand.NewPCG(1, 1))
	lda, ldb := s.k, s.n
	if s.tA {
		lda = s.m
	}
	if s.tB {
		ldb = s.k
	}
	a := gemmRandSlice(rng, s.m*s.k)
	bm := gemmRandSlice(rng, s.k*s.n)
	c := make([]float32, s.m*s.n)
	f(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
	b.ResetTimer()
	cpu0 := processCPUSeconds()
	for b.Loop() {
		f(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
	}
	cpu := processCPUSeconds() - cpu0
	gflop := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N) / 1e9
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(gflop/sec, "GFLOP/s")
	}
	if cpu > 0 {
		// Work per CPU-second of all threads: the per-core efficiency,
		// which other processes on a shared machine disturb far less
		// than the wall clock.
		b.ReportMetric(gflop/cpu, "GFLOP/cpu-s")
	}
}

func gemmSquare(n int) gemmShape { return gemmShape{m: n, n: n, k: n} }

func BenchmarkGemm64(b *testing.B)   { benchGemm(b, gemmSquare(64), Gemm) }
func BenchmarkGemm256(b *testing.B)  { benchGemm(b, gemmSquare(256), Gemm) }
func BenchmarkGemm1024(b *testing.B) { benchGemm(b, gemmSquare(1024), Gemm) }
func BenchmarkGemmTT1024(b *testing.B) {
	benchGemm(b, gemmShape{tA: true, tB: true, m: 1024, n: 1024, k: 1024}, Gemm)
}

func BenchmarkGemmGonum64(b *testing.B)   { benchGemm(b, gemmSquare(64), gonumGemm) }
func BenchmarkGemmGonum256(b *testing.B)  { benchGemm(b, gemmSquare(256), gonumGemm) }
func BenchmarkGemmGonum1024(b *testing.B) { benchGemm(b, gemmSquare(1024), gonumGemm) }

func BenchmarkGemmGeneric256(b *testing.B)  { benchGemm(b, gemmSquare(256), genericGemm) }
func BenchmarkGemmGeneric1024(b *testing.B) { benchGemm(b, gemmSquare(1024), genericGemm) }

// BenchmarkGemmLayer runs the model shapes through Gemm.
func BenchmarkGemmLayer(b *testing.B) {
	for _, s := range gemmLayerShapes {
		b.Run(s.name, func(b *testing.B) { benchGemm(b, s, Gemm) })
	}
}

// BenchmarkGemmGonumLayer runs the model shapes through gonum's Sgemm, the
// baseline Gemm replaced.
func BenchmarkGemmGonumLayer(b *testing.B) {
	for _, s := range gemmLayerShapes {
		b.Run(s.name, func(b *testing.B) { benchGemm(b, s, gonumGemm) })
	}
}
