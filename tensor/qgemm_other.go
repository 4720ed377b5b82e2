//go:build !amd64 || purego

package tensor

// archQKernels lists the int8 kernels this build runs: without assembly
// only the pure-Go one.
func archQKernels() []*qgemmKernel {
	return []*qgemmKernel{genericQKernel}
}
