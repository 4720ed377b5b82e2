package tensor

import (
	"math/rand/v2"
	"testing"
)

// refQGemm is the definition the int8 kernels must match exactly:
// C[i][j] = Σ_p A[i][p]·W[p][j] over plain row-major matrices.
func refQGemm(m, n, k int, a []uint8, w []int8) []int32 {
	c := make([]int32, m*n)
	for i := range m {
		for j := range n {
			var s int32
			for p := range k {
				s += int32(a[i*k+p]) * int32(w[p*n+j])
			}
			c[i*n+j] = s
		}
	}
	return c
}

// randQ returns an m×k activation and a k×n weight matrix; extreme
// makes every value 255 or -128/127, the sums furthest from zero.
func randQ(rng *rand.Rand, m, n, k int, extreme bool) ([]uint8, []int8) {
	a := make([]uint8, m*k)
	w := make([]int8, k*n)
	for i := range a {
		a[i] = uint8(rng.IntN(256))
		if extreme {
			a[i] = 255
		}
	}
	for i := range w {
		w[i] = int8(rng.IntN(256) - 128)
		if extreme {
			w[i] = int8([]int{-128, 127}[rng.IntN(2)])
		}
	}
	return a, w
}

// runQGemm multiplies with kernel kern through the packed layout, with
// activations in rows of the padded stride the GEMM expects and the
// padding filled with garbage (the packed weights' zero rows must cancel
// it), and returns the m×n result.
func runQGemm(kern *qgemmKernel, m, n, k int, a []uint8, w []int8, rng *rand.Rand) []int32 {
	pw := packQWeights(w, k, n)
	lda := pw.lda()
	pa := make([]uint8, m*lda)
	for i := range m {
		copy(pa[i*lda:], a[i*k:(i+1)*k])
		for p := k; p < lda; p++ {
			pa[i*lda+p] = uint8(rng.IntN(256))
		}
	}
	ldc := pw.ldc() + 3 // a stride wider than the product
	c := make([]int32, m*ldc)
	for i := range c {
		c[i] = -7 // overwritten, never added to
	}
	qgemm([]*qgemmKernel{kern}, m, pa, pw, c, ldc)
	out := make([]int32, m*n)
	for i := range m {
		copy(out[i*n:(i+1)*n], c[i*ldc:i*ldc+n])
		for j := n; j < pw.ldc(); j++ {
			if c[i*ldc+j] != 0 {
				panic("padding column not zero")
			}
		}
	}
	return out
}

// TestQGemmKernelsMatchReference runs every int8 kernel this CPU has on
// random shapes, edge sizes around the tiles (1, mr±1, 16, 31, 33, odd
// k) and extreme values, against refQGemm, exactly.
func TestQGemmKernelsMatchReference(t *testing.T) {
	dims := []struct{ m, n, k int }{
		{1, 1, 1}, {1, 10, 784}, {2, 16, 4}, {3, 17, 5}, {11, 31, 7}, {12, 32, 8},
		{13, 33, 9}, {25, 64, 800}, {24, 200, 784}, {5, 10, 200}, {37, 48, 3},
		{100, 32, 25}, {7, 512, 3136},
	}
	rng := rand.New(rand.NewPCG(17, 18))
	for range 12 {
		dims = append(dims, struct{ m, n, k int }{1 + rng.IntN(40), 1 + rng.IntN(100), 1 + rng.IntN(300)})
	}
	for _, kern := range archQKernels() {
		t.Run(kern.name, func(t *testing.T) {
			for _, d := range dims {
				for _, extreme := range []bool{false, true} {
					a, w := randQ(rng, d.m, d.n, d.k, extreme)
					want := refQGemm(d.m, d.n, d.k, a, w)
					got := runQGemm(kern, d.m, d.n, d.k, a, w, rng)
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%dx%dx%d extreme=%v: C[%d][%d] = %d, want %d", d.m, d.n, d.k, extreme, i/d.n, i%d.n, got[i], want[i])
						}
					}
				}
			}
		})
	}
}

// TestQKernelsForThisCPU checks the dispatch: VNNI is first where the CPU
// has it, AVX2 next, the pure-Go kernel always last.
func TestQKernelsForThisCPU(t *testing.T) {
	ks := archQKernels()
	if ks[len(ks)-1] != genericQKernel {
		t.Fatalf("last kernel %s, want the generic one", ks[len(ks)-1].name)
	}
	if defaultQKernels[0] != ks[0] {
		t.Fatalf("default kernel %s, want %s", defaultQKernels[0].name, ks[0].name)
	}
}
