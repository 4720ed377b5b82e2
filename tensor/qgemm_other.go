//go:build !amd64 || purego

package tensor

// archQKernels lists the int8 kernels this build runs: without assembly
// only the pure-Go one.
func archQKernels() []*qgemmKernel {
	return []*qgemmKernel{genericQKernel}
}

// dequantFast does nothing without assembly: qlayer.product dequantizes
// every column in Go.
func dequantFast(rows, out int, c []int32, ldc int, ozero []int32, scale, bias, y []float32) int {
	return 0
}

// quantizeFast does nothing without assembly.
func quantizeFast(dst []uint8, x []float32, inv, zero float32) int { return 0 }
