//go:build !purego

package tensor

import "golang.org/x/sys/cpu"

//go:generate go run qgemm_asm_gen.go

// qgemmVNNI12x32 is the 12×32 AVX-512 VNNI micro-kernel of qgemm_amd64.s;
// see qgemmKernel.micro (strides in bytes for a and b, in int32s for c).
//
//go:noescape
func qgemmVNNI12x32(k4 int, a *uint8, lda int, b *int8, bstride int, c *int32, ldc int)

// qgemmVNNI1x32 is the one-row form of qgemmVNNI12x32.
//
//go:noescape
func qgemmVNNI1x32(k4 int, a *uint8, b *int8, bstride int, c *int32)

// qgemmAVX2x2x16 is the 2×16 AVX2 micro-kernel of qgemm_amd64.s.
//
//go:noescape
func qgemmAVX2x2x16(k4 int, a *uint8, lda int, b *int8, bstride int, c *int32, ldc int)

func qmicroVNNI(k4 int, a []uint8, lda int, b []int8, bstride int, c []int32, ldc int) {
	_ = a[11*lda+4*k4-1]
	_ = b[bstride+64*k4-1]
	_ = c[11*ldc+31]
	qgemmVNNI12x32(k4, &a[0], lda, &b[0], bstride, &c[0], ldc)
}

func qrowVNNI(k4 int, a []uint8, b []int8, bstride int, c []int32) {
	_ = a[4*k4-1]
	_ = b[bstride+64*k4-1]
	_ = c[31]
	qgemmVNNI1x32(k4, &a[0], &b[0], bstride, &c[0])
}

func qmicroAVX2(k4 int, a []uint8, lda int, b []int8, bstride int, c []int32, ldc int) {
	_ = a[lda+4*k4-1]
	_ = b[64*k4-1]
	_ = c[ldc+15]
	qgemmAVX2x2x16(k4, &a[0], lda, &b[0], bstride, &c[0], ldc)
}

// vnniQKernel needs AVX-512F, AVX-512BW and AVX-512 VNNI: 24 ZMM
// accumulators, each VPDPBUSD doing 64 multiply-adds.
var vnniQKernel = &qgemmKernel{name: "avx512vnni-12x32", mr: 12, nr: 32, micro: qmicroVNNI, row: qrowVNNI}

// avx2QKernel needs AVX2: bytes widened to 16 bits, VPMADDWD.
var avx2QKernel = &qgemmKernel{name: "avx2-2x16", mr: 2, nr: 16, micro: qmicroAVX2}

// archQKernels lists the int8 kernels this CPU runs, best first; the
// generic kernel is always last.
func archQKernels() []*qgemmKernel {
	var ks []*qgemmKernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI {
		ks = append(ks, vnniQKernel)
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, avx2QKernel)
	}
	return append(ks, genericQKernel)
}

// qdequantAVX2 is the dequantization of qgemm_amd64.s (AVX2 and FMA).
//
//go:noescape
func qdequantAVX2(rows, n8 int, c *int32, ldc int, ozero *int32, scale, bias *float32, y *float32, ldy int)

// quantizeAVX512 is the activation quantization of qgemm_amd64.s.
//
//go:noescape
func quantizeAVX512(n16 int, x *float32, inv, zero float32, dst *uint8)

var (
	hasDequantAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasQuantAVX512 = cpu.X86.HasAVX512F
)

// dequantFast dequantizes the first 8·⌊out/8⌋ columns of rows rows (see
// qlayer.product) with assembly where the CPU allows, and returns how many
// columns it did.
func dequantFast(rows, out int, c []int32, ldc int, ozero []int32, scale, bias, y []float32) int {
	n8 := out / 8
	if !hasDequantAVX2 || n8 == 0 || rows == 0 {
		return 0
	}
	_ = c[(rows-1)*ldc+8*n8-1]
	_ = y[(rows-1)*out+8*n8-1]
	_, _, _ = ozero[8*n8-1], scale[8*n8-1], bias[8*n8-1]
	qdequantAVX2(rows, n8, &c[0], ldc, &ozero[0], &scale[0], &bias[0], &y[0], out)
	return 8 * n8
}

// quantizeFast quantizes the first 16·⌊len(x)/16⌋ values of x (see
// qlayer.quantizeInto) with assembly where the CPU allows, and returns how
// many it did.
func quantizeFast(dst []uint8, x []float32, inv, zero float32) int {
	n16 := len(x) / 16
	if !hasQuantAVX512 || n16 == 0 {
		return 0
	}
	_ = dst[16*n16-1]
	quantizeAVX512(n16, &x[0], inv, zero, &dst[0])
	return 16 * n16
}
