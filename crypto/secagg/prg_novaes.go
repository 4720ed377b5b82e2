//go:build !amd64 || purego

package secagg

// maskFused covers nothing where the VAES kernel does not exist; the
// portable AES-CTR stream does all the work.
func maskFused(dst []uint32, seed *[32]byte, block uint64, neg bool) int { return 0 }

// hasVAES is false where the kernel does not exist.
const hasVAES = false
