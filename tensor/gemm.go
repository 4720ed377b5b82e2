package tensor

import (
	"fmt"
	"runtime"
)

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices, where
// op(X) is X or Xᵀ as transA/transB say, op(A) is m×k, op(B) is k×n and C is
// m×n. lda, ldb and ldc are the row strides of A, B and C as stored (A is
// k×m when transA is set, B is n×k when transB is set).
//
// When beta is 0, C is overwritten without being read, so it may hold NaN or
// Inf. Gemm panics, like a BLAS routine, when a dimension is negative, a
// stride is smaller than the stored width, or a slice is too short.
//
// It is the single entry point for matrix products in fedge: every layer
// calls it. The implementation is a packed, cache-blocked GEMM whose inner
// micro-kernel is Go assembly (AVX-512 or AVX2+FMA, chosen at start-up from
// the CPU's features) on amd64 and pure Go elsewhere; products big enough to
// pay for it are split over runtime.GOMAXPROCS(0) goroutines.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	cfg := gemmConfig{kernels: defaultKernels, maxWorkers: runtime.GOMAXPROCS(0)}
	gemmWith(cfg, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmConfig holds what Gemm decides from the environment; tests set it to
// run the pure-Go fallback, the serial path and both orientations on any
// machine.
type gemmConfig struct {
	kernels    []*gemmKernel // candidate micro-kernels; the plan picks the cheapest
	maxWorkers int           // goroutines the product may use
	minFlops   int           // flops per extra goroutine; 0 means gemmMinFlopsPerWorker
	orient     gemmOrient    // forced orientation, or gemmAuto
}

// gemmWith is Gemm with its configuration made explicit; it returns the
// goroutines the product ran on.
func gemmWith(cfg gemmConfig, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) int {
	checkGemmArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return 1
	}
	if k == 0 || alpha == 0 {
		gemmScaleC(m, n, beta, c, ldc)
		return 1
	}
	job := gemmJobPool.Get().(*gemmJob)
	defer gemmJobPool.Put(job)
	// Element (i, p) of op(A) is a[i*rsA + p*csA]; element (p, j) of op(B)
	// is b[p*rsB + j*csB]; element (i, j) of C is c[i*ldc + j].
	job.p = gemmProblem{
		m:     m,
		n:     n,
		k:     k,
		alpha: alpha,
		beta:  beta,
		a:     a,
		rsA:   lda,
		csA:   1,
		b:     b,
		rsB:   ldb,
		csB:   1,
		c:     c,
		rsC:   ldc,
		csC:   1,
	}
	p := &job.p
	if transA {
		p.rsA, p.csA = 1, lda
	}
	if transB {
		p.rsB, p.csB = 1, ldb
	}
	p.plan(cfg.kernels, cfg.orient)
	w := job.run(cfg.maxWorkers, cfg.minFlops)
	job.p = gemmProblem{} // drop the caller's slices before pooling
	return w
}

// checkGemmArgs panics with a message naming the faulty argument when the
// dimensions, strides or slice lengths cannot describe the product.
func checkGemmArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("tensor.Gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	checkGemmOperand("A", rowsA, colsA, a, lda)
	checkGemmOperand("B", rowsB, colsB, b, ldb)
	checkGemmOperand("C", m, n, c, ldc)
}

func checkGemmOperand(name string, rows, cols int, x []float32, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("tensor.Gemm: ld%s=%d smaller than the %d columns of %s", name, ld, cols, name))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("tensor.Gemm: len(%s)=%d, need %d for %d×%d with stride %d", name, len(x), need, rows, cols, ld))
	}
}

// gemmScaleC sets C = beta·C, writing zeros (not 0·C, which keeps NaN) when beta
// is 0.
func gemmScaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
