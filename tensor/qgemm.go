package tensor

import "fmt"

// The int8 GEMM of quantized inference computes C = A·B exactly in int32,
// where A (m×k) holds activations as unsigned 8-bit integers and B (k×n)
// holds weights as signed 8-bit integers. B is packed once, when a model
// is quantized (packQWeights); A is written by the caller in rows of
// qweights.lda() bytes. Micro-kernels: AVX-512 VNNI (VPDPBUSD, 64
// multiply-adds per instruction) where the CPU has it, AVX2 (bytes widened
// to 16 bits, VPMADDWD) otherwise, pure Go elsewhere; the best the CPU
// runs is chosen at start-up, like the float GEMM's.

// qMaxK bounds the inner dimension so that no int32 sum can overflow:
// k·255·128 < 2³¹.
const qMaxK = 1 << 16

// qweights is a k×n int8 matrix packed for the int8 GEMM: panels of 16
// columns, each holding for every group of four k-steps the four weights
// of each column next to each other (what VPDPBUSD multiplies with four
// activation bytes). Byte t of column c in k-group q of panel p is
// W[4q+t][16p+c] at data[p·k4·64 + q·64 + c·4 + t]; rows past k and columns
// past n are zero. The panel count is even, so kernels may work on pairs.
type qweights struct {
	k, n   int
	k4     int     // ceil(k/4): groups of four k-steps
	panels int     // 16-column panels, even
	data   []int8  // panels·k4·64 bytes
	colSum []int32 // Σ_k W[k][j], to remove the activations' zero point
}

// lda is the row stride, in bytes, of the activations multiplied with w.
func (w *qweights) lda() int { return 4 * w.k4 }

// ldc is the row stride, in int32s, of the product (n rounded up to the
// panels).
func (w *qweights) ldc() int { return 16 * w.panels }

// packQWeights packs the k×n row-major int8 matrix w.
func packQWeights(w []int8, k, n int) *qweights {
	if k <= 0 || n <= 0 || k > qMaxK || len(w) < k*n {
		panic(fmt.Sprintf("tensor.packQWeights: %d values for %d×%d (k at most %d)", len(w), k, n, qMaxK))
	}
	q := &qweights{k: k, n: n, k4: (k + 3) / 4, panels: 2 * ((n + 31) / 32), colSum: make([]int32, n)}
	q.data = make([]int8, q.panels*q.k4*64)
	for r := range k {
		for j, v := range w[r*n : (r+1)*n] {
			q.data[(j/16)*q.k4*64+(r/4)*64+(j%16)*4+r%4] = v
			q.colSum[j] += int32(v)
		}
	}
	return q
}

// qgemmKernel is one int8 micro-kernel. micro computes an mr × nr tile
// (nr is 16 or 32: one or two panels) over all k4 groups: c[i·ldc + j] =
// Σ_p a[i·lda + p]·B(p, j), for i < mr and j < nr, where b is the first
// panel of the tile and bstride the bytes from one panel to the next;
// lda and ldc are in elements. row, when set, is the one-row form used
// for the rows after the last full tile; without it those rows run
// through micro with lda = ldc = 0 (every row of the tile is the same
// row, written to the same place).
type qgemmKernel struct {
	name   string
	mr, nr int
	micro  func(k4 int, a []uint8, lda int, b []int8, bstride int, c []int32, ldc int)
	row    func(k4 int, a []uint8, b []int8, bstride int, c []int32)
}

// defaultQKernels lists the int8 micro-kernels this CPU runs, best first.
var defaultQKernels = archQKernels()

// qgemm computes the m × w.ldc() product C = A·W with the first kernel of
// ks: a holds m rows of w.lda() bytes, c m rows of ldc int32s (ldc ≥
// w.ldc()). Columns past w.n come out zero.
func qgemm(ks []*qgemmKernel, m int, a []uint8, w *qweights, c []int32, ldc int) {
	kern := ks[0]
	lda := w.lda()
	if m == 0 {
		return
	}
	if ldc < w.ldc() || len(a) < m*lda || len(c) < (m-1)*ldc+w.ldc() {
		panic(fmt.Sprintf("tensor.qgemm: %d×%d product with len(a)=%d, len(c)=%d, ldc=%d", m, w.ldc(), len(a), len(c), ldc))
	}
	pstride := w.k4 * 64
	full := m / kern.mr * kern.mr
	for p := 0; p < w.panels; p += kern.nr / 16 {
		b := w.data[p*pstride:]
		col := 16 * p
		for i := 0; i < full; i += kern.mr {
			kern.micro(w.k4, a[i*lda:], lda, b, pstride, c[i*ldc+col:], ldc)
		}
		for i := full; i < m; i++ {
			if kern.row != nil {
				kern.row(w.k4, a[i*lda:], b, pstride, c[i*ldc+col:])
			} else {
				kern.micro(w.k4, a[i*lda:], 0, b, pstride, c[i*ldc+col:], 0)
			}
		}
	}
}

// genericQKernel is the pure-Go int8 kernel: one row × one panel.
var genericQKernel = &qgemmKernel{name: "generic-1x16", mr: 1, nr: 16, micro: qmicroGeneric}

// qmicroGeneric is the pure-Go micro-kernel (mr = 1, nr = 16).
func qmicroGeneric(k4 int, a []uint8, _ int, b []int8, _ int, c []int32, _ int) {
	var acc [16]int32
	a = a[:4*k4]
	b = b[:64*k4]
	for q := range k4 {
		a0, a1, a2, a3 := int32(a[4*q]), int32(a[4*q+1]), int32(a[4*q+2]), int32(a[4*q+3])
		g := b[64*q : 64*q+64 : 64*q+64]
		for j := range acc {
			w := g[4*j : 4*j+4 : 4*j+4]
			acc[j] += a0*int32(w[0]) + a1*int32(w[1]) + a2*int32(w[2]) + a3*int32(w[3])
		}
	}
	copy(c[:16], acc[:])
}
