//go:build amd64 && !purego

#include "textflag.h"

// Vector kernels over uint32 words, SSE2 only (the amd64 baseline, so no
// CPU feature check is needed): 16 words per iteration, then a scalar tail.
// All three take (dst slice, src slice); src must hold len(dst) words.

#define KERNEL(VOP, SOP) \
	MOVQ dst_base+0(FP), DI \
	MOVQ dst_len+8(FP), CX \
	MOVQ src_base+24(FP), SI \
	MOVQ CX, BX \
	SHRQ $4, BX \
	JZ   tail \
loop16: \
	MOVOU 0(DI), X0 \
	MOVOU 16(DI), X1 \
	MOVOU 32(DI), X2 \
	MOVOU 48(DI), X3 \
	MOVOU 0(SI), X4 \
	MOVOU 16(SI), X5 \
	MOVOU 32(SI), X6 \
	MOVOU 48(SI), X7 \
	VOP X4, X0 \
	VOP X5, X1 \
	VOP X6, X2 \
	VOP X7, X3 \
	MOVOU X0, 0(DI) \
	MOVOU X1, 16(DI) \
	MOVOU X2, 32(DI) \
	MOVOU X3, 48(DI) \
	ADDQ $64, DI \
	ADDQ $64, SI \
	DECQ BX \
	JNZ  loop16 \
tail: \
	ANDQ $15, CX \
	JZ   done \
loop1: \
	MOVL (SI), AX \
	SOP  AX, (DI) \
	ADDQ $4, SI \
	ADDQ $4, DI \
	DECQ CX \
	JNZ  loop1 \
done: \
	RET

// func addKeystream(dst []uint32, ks []byte)
TEXT ·addKeystream(SB), NOSPLIT, $0-48
#define src_base ks_base
	KERNEL(PADDL, ADDL)
#undef src_base

// func subKeystream(dst []uint32, ks []byte)
TEXT ·subKeystream(SB), NOSPLIT, $0-48
#define src_base ks_base
	KERNEL(PSUBL, SUBL)
#undef src_base

// func addVec(dst, src []uint32)
TEXT ·addVec(SB), NOSPLIT, $0-48
	KERNEL(PADDL, ADDL)
