//go:build amd64 && !purego

#include "textflag.h"

// Byte reversal within each 64-bit half of every 128-bit lane: turns the
// little-endian counter halves (hi, lo) into the big-endian block hi‖lo.
DATA bswapMask<>+0(SB)/8, $0x0001020304050607
DATA bswapMask<>+8(SB)/8, $0x08090a0b0c0d0e0f
GLOBL bswapMask<>(SB), RODATA|NOPTR, $16

#define ROUND(k) \
	VAESENC k, Z0, Z0; \
	VAESENC k, Z1, Z1

// func ctrMaskVAES(rk *[176]byte, ctr *[128]byte, dst *uint32, nblocks int, neg bool)
//
// ctr holds eight counters as little-endian (hi, lo) uint64 pairs, blocks
// 0..7 of the range; each iteration adds 8 to every lo.
TEXT ·ctrMaskVAES(SB), NOSPLIT, $0-33
	MOVQ rk+0(FP), AX
	VBROADCASTI32X4 0(AX), Z16
	VBROADCASTI32X4 16(AX), Z17
	VBROADCASTI32X4 32(AX), Z18
	VBROADCASTI32X4 48(AX), Z19
	VBROADCASTI32X4 64(AX), Z20
	VBROADCASTI32X4 80(AX), Z21
	VBROADCASTI32X4 96(AX), Z22
	VBROADCASTI32X4 112(AX), Z23
	VBROADCASTI32X4 128(AX), Z24
	VBROADCASTI32X4 144(AX), Z25
	VBROADCASTI32X4 160(AX), Z26
	VBROADCASTI32X4 bswapMask<>(SB), Z27
	MOVQ ctr+8(FP), BX
	VMOVDQU64 0(BX), Z28
	VMOVDQU64 64(BX), Z29
	// Z30 = (0, 8) in every lane: the step of each counter per iteration.
	MOVQ $8, R9
	VPBROADCASTQ R9, Z30
	MOVQ $0xaa, R9
	KMOVB R9, K1
	VPXORQ Z31, Z31, Z31
	VMOVDQA64 Z30, K1, Z31
	MOVQ dst+16(FP), DI
	MOVQ nblocks+24(FP), SI
	MOVBLZX neg+32(FP), R8

loop:
	CMPQ SI, $8
	JLT done
	VPSHUFB Z27, Z28, Z0
	VPSHUFB Z27, Z29, Z1
	VPADDQ Z31, Z28, Z28
	VPADDQ Z31, Z29, Z29
	VPXORQ Z16, Z0, Z0
	VPXORQ Z16, Z1, Z1
	ROUND(Z17)
	ROUND(Z18)
	ROUND(Z19)
	ROUND(Z20)
	ROUND(Z21)
	ROUND(Z22)
	ROUND(Z23)
	ROUND(Z24)
	ROUND(Z25)
	VAESENCLAST Z26, Z0, Z0
	VAESENCLAST Z26, Z1, Z1
	VMOVDQU32 0(DI), Z2
	VMOVDQU32 64(DI), Z3
	TESTQ R8, R8
	JNZ sub
	VPADDD Z0, Z2, Z2
	VPADDD Z1, Z3, Z3
	JMP store

sub:
	VPSUBD Z0, Z2, Z2
	VPSUBD Z1, Z3, Z3

store:
	VMOVDQU32 Z2, 0(DI)
	VMOVDQU32 Z3, 64(DI)
	ADDQ $128, DI
	SUBQ $8, SI
	JMP loop

done:
	VZEROUPPER
	RET
