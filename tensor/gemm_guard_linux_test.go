//go:build linux

package tensor

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// guardedFloats returns a slice of n float32s that ends exactly where an
// inaccessible page begins, so a kernel reading one element past the end
// of its operand crashes the test instead of reading a neighbour.
func guardedFloats(t *testing.T, n int) []float32 {
	t.Helper()
	page := syscall.Getpagesize()
	size := (n*4 + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, size+page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size:], syscall.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	start := size - n*4
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[start])), n)
}

// TestGemmReadsNothingPastOperands runs products whose A, B and C end at a
// guard page, with no stride padding after their last row: the in-place
// kernels, the shifted edge tiles and the assembly packers must stay
// inside the last row.
func TestGemmReadsNothingPastOperands(t *testing.T) {
	dims := []struct{ m, n, k int }{
		{1, 1, 1}, {3, 5, 7}, {10, 10, 200}, {13, 37, 29}, {50, 10, 77},
		{7, 33, 600}, {64, 200, 9}, {530, 20, 17}, {29, 600, 40},
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, d := range dims {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				rowsA, colsA := d.m, d.k
				if tA {
					rowsA, colsA = d.k, d.m
				}
				rowsB, colsB := d.k, d.n
				if tB {
					rowsB, colsB = d.n, d.k
				}
				// Strides wider than the rows, except the last row.
				lda, ldb, ldc := colsA+3, colsB+1, d.n+2
				a := guardedFloats(t, (rowsA-1)*lda+colsA)
				b := guardedFloats(t, (rowsB-1)*ldb+colsB)
				for i := range a {
					a[i] = rng.Float32()
				}
				for i := range b {
					b[i] = rng.Float32()
				}
				tc := gemmCase{transA: tA, transB: tB, m: d.m, n: d.n, k: d.k, alpha: 1, beta: 1}
				for _, cfg := range gemmConfigs() {
					c := guardedFloats(t, (d.m-1)*ldc+d.n)
					want, bound := refGemm(tc, a, lda, b, ldb, c, ldc)
					gemmWith(cfg, tA, tB, d.m, d.n, d.k, 1, a, lda, b, ldb, 1, c, ldc)
					tol := float64(d.k+2) * 0x1p-23
					for i := range d.m {
						for j := range d.n {
							got, w := float64(c[i*ldc+j]), want[i*d.n+j]
							if diff := got - w; diff > tol*bound[i*d.n+j] || -diff > tol*bound[i*d.n+j] {
								t.Fatalf("%v %v: C[%d][%d] = %g, want %g", cfg, tc, i, j, got, w)
							}
						}
					}
				}
			}
		}
	}
}
