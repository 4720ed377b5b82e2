//go:build !(386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm)

package tensor

// leBytes reports that native memory is not little-endian: callers convert.
func leBytes(p []float32) (b []byte, ok bool) { return nil, false }
