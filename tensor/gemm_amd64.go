//go:build !purego

package tensor

import "golang.org/x/sys/cpu"

// sgemmAVX2 is the 6×16 AVX2+FMA micro-kernel of gemm_amd64.s. Strides are
// in elements; see gemmKernel.micro.
//
//go:noescape
func sgemmAVX2(kc int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32)

// sgemmAVX2x5 is the 5×16 AVX2+FMA micro-kernel of gemm_amd64.s, for m a
// multiple of 5.
//
//go:noescape
func sgemmAVX2x5(kc int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32)

// sgemmAVX512 is the 12×32 AVX-512F micro-kernel of gemm_amd64.s.
//
//go:noescape
func sgemmAVX512(kc int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32)

// transposePanelAVX packs a panel of a transposed B with 8×8 AVX
// transposes: dst[q*nr+j] = src[j*lds+q] for q < 8·kb8 and j < nr, a
// multiple of 8.
//
//go:noescape
func transposePanelAVX(dst *float32, src *float32, lds, nr, kb8 int)

func transposePanel(dst, src []float32, lds, nr, kb8 int) {
	_ = dst[kb8*8*nr-1]
	_ = src[(nr-1)*lds+kb8*8-1]
	transposePanelAVX(&dst[0], &src[0], lds, nr, kb8)
}

// copyRowsAVX2 packs rows into a micro-panel with masked loads:
// dst[q*nr+j] = src[q*lds+j] for j < nw, 0 for nw ≤ j < nr; nr is 6, 12,
// 16 or 32.
//
//go:noescape
func copyRowsAVX2(dst *float32, src *float32, lds, rows, nw, nr int)

func copyRows(dst, src []float32, lds, rows, nw, nr int) {
	if rows == 0 {
		return
	}
	switch nr {
	case 6, 12, 16, 32:
		_ = dst[rows*nr-1]
		_ = src[(rows-1)*lds+nw-1]
		copyRowsAVX2(&dst[0], &src[0], lds, rows, nw, nr)
	default:
		gemmCopyRows(dst, src, lds, rows, nw, nr)
	}
}

func microAVX2(kc int, a []float32, rsa, csa int, b []float32, rsb int, c []float32, ldc int, alpha, beta float32) {
	sgemmAVX2(kc, &a[0], rsa, csa, &b[0], rsb, &c[0], ldc, alpha, beta)
}

func microAVX2x5(kc int, a []float32, rsa, csa int, b []float32, rsb int, c []float32, ldc int, alpha, beta float32) {
	sgemmAVX2x5(kc, &a[0], rsa, csa, &b[0], rsb, &c[0], ldc, alpha, beta)
}

func microAVX512(kc int, a []float32, rsa, csa int, b []float32, rsb int, c []float32, ldc int, alpha, beta float32) {
	sgemmAVX512(kc, &a[0], rsa, csa, &b[0], rsb, &c[0], ldc, alpha, beta)
}

// avx2Kernel needs AVX2 and FMA (x86-64-v3); 12 YMM accumulators.
var avx2Kernel = &gemmKernel{
	name:       "avx2-6x16",
	mr:         6,
	nr:         16,
	kc:         512,
	mc:         120,
	nc:         2048,
	micro:      microAVX2,
	transposeB: transposePanel,
	copyRows:   copyRows,
	runCost:    costPackRuns,
}

// avx2x5Kernel is avx2Kernel with five rows, which tiles batches of 10 and
// 50 exactly.
var avx2x5Kernel = &gemmKernel{
	name:       "avx2-5x16",
	mr:         5,
	nr:         16,
	kc:         512,
	mc:         120,
	nc:         2048,
	micro:      microAVX2x5,
	transposeB: transposePanel,
	copyRows:   copyRows,
	runCost:    costPackRuns,
}

// avx512Kernel needs AVX-512F; 24 ZMM accumulators.
var avx512Kernel = &gemmKernel{
	name:       "avx512-12x32",
	mr:         12,
	nr:         32,
	kc:         512,
	mc:         120,
	nc:         2048,
	micro:      microAVX512,
	transposeB: transposePanel,
	copyRows:   copyRows,
	runCost:    costPackRuns,
}

// archKernels lists the micro-kernels this CPU can run, best first; the
// generic kernel is always last.
func archKernels() []*gemmKernel {
	var ks []*gemmKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel, avx2x5Kernel)
	}
	return append(ks, genericKernel)
}
