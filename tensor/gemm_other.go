//go:build !amd64 || purego

package tensor

// archKernels lists the micro-kernels this build can run: without assembly
// only the pure-Go one.
func archKernels() []*gemmKernel {
	return []*gemmKernel{genericKernel}
}
