//go:build amd64 && !purego

package secagg

import (
	"encoding/binary"
	"math/bits"

	"golang.org/x/sys/cpu"
)

// hasVAES reports whether the fused AVX-512 VAES mask kernel can run. It is
// a fact of the CPU, read once.
var hasVAES = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VAES

// ctrMaskVAES adds (or, with neg, subtracts) nblocks blocks of the AES-128
// CTR keystream into dst, read as little-endian uint32 words: block i is
// AES(rk, BE(hi) ‖ BE(lo+i)), where ctr holds (hi, lo+j) for j = 0..7 as
// little-endian uint64 pairs. nblocks is a multiple of 8 and lo+nblocks
// must not wrap. The keystream never touches memory.
//
//go:noescape
func ctrMaskVAES(rk *[176]byte, ctr *[128]byte, dst *uint32, nblocks int, neg bool)

// maskFused applies PRG(seed) from 16-byte block `block` on to dst with
// the VAES kernel and returns how many words it covered (a multiple of 32);
// the caller does the rest with the portable stream. It covers nothing when
// the CPU lacks VAES or the counter would wrap its low half.
func maskFused(dst []uint32, seed *[32]byte, block uint64, neg bool) int {
	if !hasVAES {
		return 0
	}
	nb := (len(dst) / 4) &^ 7
	if nb == 0 {
		return 0
	}
	hi := binary.BigEndian.Uint64(seed[16:24])
	lo := binary.BigEndian.Uint64(seed[24:32])
	lo2, carry := bits.Add64(lo, block, 0)
	hi += carry
	if lo2+uint64(nb) < lo2 {
		return 0 // the low counter half wraps inside the range: rare, portable path
	}
	var rk [176]byte
	expandKey128(&rk, seed[:16])
	var ctr [128]byte
	for j := 0; j < 8; j++ {
		binary.LittleEndian.PutUint64(ctr[16*j:], hi)
		binary.LittleEndian.PutUint64(ctr[16*j+8:], lo2+uint64(j))
	}
	ctrMaskVAES(&rk, &ctr, &dst[0], nb, neg)
	return 4 * nb
}
