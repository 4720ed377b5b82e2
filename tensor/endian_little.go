//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package tensor

import "unsafe"

// leBytes returns the little-endian bytes of p without copying, on machines
// whose native order is little-endian (ok is true there).
func leBytes(p []float32) (b []byte, ok bool) {
	if len(p) == 0 {
		return nil, true
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), 4*len(p)), true
}
