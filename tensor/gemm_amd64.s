//go:build !purego

#include "textflag.h"

// CHECK_ALPHA_ONE jumps to skip when alpha (at alpha+64(FP)) is exactly 1,
// so the accumulators need no scaling.
#define CHECK_ALPHA_ONE(skip) \
	MOVSS   alpha+64(FP), X0; \
	MOVL    $0x3f800000, AX; \
	MOVQ    AX, X3; \
	UCOMISS X3, X0; \
	JNE     3(PC); \
	JPS     2(PC); \
	JMP     skip

// Micro-kernels for gemmKernel.micro (see gemm_blocked.go for the contract).
// Arguments, in elements: A(i,p) = a[i*rsa + p*csa], B(p,j) = b[p*rsb + j],
// C(i,j) = c[i*ldc + j]. Registers common to both kernels:
//   CX  k-steps left      SI  A row 0        R9  A row 3 (R13 row 6, R14 row 9)
//   R8  rsa in bytes      R10 csa in bytes   DI  B row
//   R11 rsb in bytes      DX  C row          R12 ldc in bytes

// One k-step of the 6×16 AVX2 kernel: two 8-wide vectors of B, six
// broadcasts of A, twelve FMAs into Y4..Y15 (row r in Y(4+2r), Y(5+2r)).
#define STEP_6x16 \
	VMOVUPS      (DI), Y0; \
	VMOVUPS      32(DI), Y1; \
	ADDQ         R11, DI; \
	VBROADCASTSS (SI), Y2; \
	VFMADD231PS  Y0, Y2, Y4; \
	VFMADD231PS  Y1, Y2, Y5; \
	VBROADCASTSS (SI)(R8*1), Y3; \
	VFMADD231PS  Y0, Y3, Y6; \
	VFMADD231PS  Y1, Y3, Y7; \
	VBROADCASTSS (SI)(R8*2), Y2; \
	VFMADD231PS  Y0, Y2, Y8; \
	VFMADD231PS  Y1, Y2, Y9; \
	VBROADCASTSS (R9), Y3; \
	VFMADD231PS  Y0, Y3, Y10; \
	VFMADD231PS  Y1, Y3, Y11; \
	VBROADCASTSS (R9)(R8*1), Y2; \
	VFMADD231PS  Y0, Y2, Y12; \
	VFMADD231PS  Y1, Y2, Y13; \
	VBROADCASTSS (R9)(R8*2), Y3; \
	VFMADD231PS  Y0, Y3, Y14; \
	VFMADD231PS  Y1, Y3, Y15; \
	ADDQ         R10, SI; \
	ADDQ         R10, R9

// Row r of the 6×16 tile: C = acc (beta == 0) or C = acc + beta·C, where the
// accumulators already hold alpha·A·B and Y1 holds beta.
#define STORE_6x16(lo, hi) \
	VMOVUPS lo, (DX); \
	VMOVUPS hi, 32(DX); \
	ADDQ    R12, DX

#define STOREBETA_6x16(lo, hi) \
	VFMADD231PS (DX), Y1, lo; \
	VFMADD231PS 32(DX), Y1, hi; \
	VMOVUPS     lo, (DX); \
	VMOVUPS     hi, 32(DX); \
	ADDQ        R12, DX

// func sgemmAVX2(kc int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmAVX2(SB), NOSPLIT, $0-72
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rsa+16(FP), R8
	SHLQ $2, R8
	MOVQ csa+24(FP), R10
	SHLQ $2, R10
	MOVQ b+32(FP), DI
	MOVQ rsb+40(FP), R11
	SHLQ $2, R11
	MOVQ c+48(FP), DX
	MOVQ ldc+56(FP), R12
	SHLQ $2, R12
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

	MOVQ  CX, BX
	SHRQ  $2, BX
	ANDQ  $3, CX
	TESTQ BX, BX
	JZ    avx2tail

avx2loop4:
	STEP_6x16
	STEP_6x16
	STEP_6x16
	STEP_6x16
	DECQ BX
	JNZ  avx2loop4

avx2tail:
	TESTQ CX, CX
	JZ    avx2done

avx2loop1:
	STEP_6x16
	DECQ CX
	JNZ  avx2loop1

avx2done:
	CHECK_ALPHA_ONE(avx2store)
	VBROADCASTSS alpha+64(FP), Y0
	VMULPS       Y0, Y4, Y4
	VMULPS       Y0, Y5, Y5
	VMULPS       Y0, Y6, Y6
	VMULPS       Y0, Y7, Y7
	VMULPS       Y0, Y8, Y8
	VMULPS       Y0, Y9, Y9
	VMULPS       Y0, Y10, Y10
	VMULPS       Y0, Y11, Y11
	VMULPS       Y0, Y12, Y12
	VMULPS       Y0, Y13, Y13
	VMULPS       Y0, Y14, Y14
	VMULPS       Y0, Y15, Y15

avx2store:
	MOVSS   beta+68(FP), X1
	VXORPS  X2, X2, X2
	UCOMISS X2, X1
	JNE     avx2beta
	JPS     avx2beta

	STORE_6x16(Y4, Y5)
	STORE_6x16(Y6, Y7)
	STORE_6x16(Y8, Y9)
	STORE_6x16(Y10, Y11)
	STORE_6x16(Y12, Y13)
	STORE_6x16(Y14, Y15)
	VZEROUPPER
	RET

avx2beta:
	VBROADCASTSS beta+68(FP), Y1
	STOREBETA_6x16(Y4, Y5)
	STOREBETA_6x16(Y6, Y7)
	STOREBETA_6x16(Y8, Y9)
	STOREBETA_6x16(Y10, Y11)
	STOREBETA_6x16(Y12, Y13)
	STOREBETA_6x16(Y14, Y15)
	VZEROUPPER
	RET

// One k-step of the 5×16 AVX2 kernel: the 6×16 step without row 5, for
// products whose m is a multiple of 5 (batches of 10 or 50).
#define STEP_5x16 \
	VMOVUPS      (DI), Y0; \
	VMOVUPS      32(DI), Y1; \
	ADDQ         R11, DI; \
	VBROADCASTSS (SI), Y2; \
	VFMADD231PS  Y0, Y2, Y4; \
	VFMADD231PS  Y1, Y2, Y5; \
	VBROADCASTSS (SI)(R8*1), Y3; \
	VFMADD231PS  Y0, Y3, Y6; \
	VFMADD231PS  Y1, Y3, Y7; \
	VBROADCASTSS (SI)(R8*2), Y2; \
	VFMADD231PS  Y0, Y2, Y8; \
	VFMADD231PS  Y1, Y2, Y9; \
	VBROADCASTSS (R9), Y3; \
	VFMADD231PS  Y0, Y3, Y10; \
	VFMADD231PS  Y1, Y3, Y11; \
	VBROADCASTSS (R9)(R8*1), Y2; \
	VFMADD231PS  Y0, Y2, Y12; \
	VFMADD231PS  Y1, Y2, Y13; \
	ADDQ         R10, SI; \
	ADDQ         R10, R9

// func sgemmAVX2x5(kc int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmAVX2x5(SB), NOSPLIT, $0-72
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rsa+16(FP), R8
	SHLQ $2, R8
	MOVQ csa+24(FP), R10
	SHLQ $2, R10
	MOVQ b+32(FP), DI
	MOVQ rsb+40(FP), R11
	SHLQ $2, R11
	MOVQ c+48(FP), DX
	MOVQ ldc+56(FP), R12
	SHLQ $2, R12
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13

	MOVQ  CX, BX
	SHRQ  $2, BX
	ANDQ  $3, CX
	TESTQ BX, BX
	JZ    x5tail

x5loop4:
	STEP_5x16
	STEP_5x16
	STEP_5x16
	STEP_5x16
	DECQ BX
	JNZ  x5loop4

x5tail:
	TESTQ CX, CX
	JZ    x5done

x5loop1:
	STEP_5x16
	DECQ CX
	JNZ  x5loop1

x5done:
	CHECK_ALPHA_ONE(x5store)
	VBROADCASTSS alpha+64(FP), Y0
	VMULPS       Y0, Y4, Y4
	VMULPS       Y0, Y5, Y5
	VMULPS       Y0, Y6, Y6
	VMULPS       Y0, Y7, Y7
	VMULPS       Y0, Y8, Y8
	VMULPS       Y0, Y9, Y9
	VMULPS       Y0, Y10, Y10
	VMULPS       Y0, Y11, Y11
	VMULPS       Y0, Y12, Y12
	VMULPS       Y0, Y13, Y13

x5store:
	MOVSS   beta+68(FP), X1
	VXORPS  X2, X2, X2
	UCOMISS X2, X1
	JNE     x5beta
	JPS     x5beta

	STORE_6x16(Y4, Y5)
	STORE_6x16(Y6, Y7)
	STORE_6x16(Y8, Y9)
	STORE_6x16(Y10, Y11)
	STORE_6x16(Y12, Y13)
	VZEROUPPER
	RET

x5beta:
	VBROADCASTSS beta+68(FP), Y1
	STOREBETA_6x16(Y4, Y5)
	STOREBETA_6x16(Y6, Y7)
	STOREBETA_6x16(Y8, Y9)
	STOREBETA_6x16(Y10, Y11)
	STOREBETA_6x16(Y12, Y13)
	VZEROUPPER
	RET

// One k-step of the 12×32 AVX-512 kernel: two 16-wide vectors of B, twelve
// broadcasts of A, 24 FMAs into Z8..Z31 (row r in Z(8+2r), Z(9+2r)).
#define BCAST_FMA(addr, t, lo, hi) \
	VBROADCASTSS addr, t; \
	VFMADD231PS  Z0, t, lo; \
	VFMADD231PS  Z1, t, hi

#define STEP_12x32 \
	VMOVUPS (DI), Z0; \
	VMOVUPS 64(DI), Z1; \
	ADDQ    R11, DI; \
	BCAST_FMA((SI), Z2, Z8, Z9); \
	BCAST_FMA((SI)(R8*1), Z3, Z10, Z11); \
	BCAST_FMA((SI)(R8*2), Z4, Z12, Z13); \
	BCAST_FMA((R9), Z5, Z14, Z15); \
	BCAST_FMA((R9)(R8*1), Z6, Z16, Z17); \
	BCAST_FMA((R9)(R8*2), Z7, Z18, Z19); \
	BCAST_FMA((R13), Z2, Z20, Z21); \
	BCAST_FMA((R13)(R8*1), Z3, Z22, Z23); \
	BCAST_FMA((R13)(R8*2), Z4, Z24, Z25); \
	BCAST_FMA((R14), Z5, Z26, Z27); \
	BCAST_FMA((R14)(R8*1), Z6, Z28, Z29); \
	BCAST_FMA((R14)(R8*2), Z7, Z30, Z31); \
	ADDQ    R10, SI; \
	ADDQ    R10, R9; \
	ADDQ    R10, R13; \
	ADDQ    R10, R14

#define STORE_12x32(lo, hi) \
	VMOVUPS lo, (DX); \
	VMOVUPS hi, 64(DX); \
	ADDQ    R12, DX

#define STOREBETA_12x32(lo, hi) \
	VFMADD231PS (DX), Z1, lo; \
	VFMADD231PS 64(DX), Z1, hi; \
	VMOVUPS     lo, (DX); \
	VMOVUPS     hi, 64(DX); \
	ADDQ        R12, DX

// func sgemmAVX512(kc int, a *float32, rsa, csa int, b *float32, rsb int, c *float32, ldc int, alpha, beta float32)
TEXT ·sgemmAVX512(SB), NOSPLIT, $0-72
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rsa+16(FP), R8
	SHLQ $2, R8
	MOVQ csa+24(FP), R10
	SHLQ $2, R10
	MOVQ b+32(FP), DI
	MOVQ rsb+40(FP), R11
	SHLQ $2, R11
	MOVQ c+48(FP), DX
	MOVQ ldc+56(FP), R12
	SHLQ $2, R12
	LEAQ (SI)(R8*2), R9
	ADDQ R8, R9
	LEAQ (R9)(R8*2), R13
	ADDQ R8, R13
	LEAQ (R13)(R8*2), R14
	ADDQ R8, R14

	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31

	MOVQ  CX, BX
	SHRQ  $2, BX
	ANDQ  $3, CX
	TESTQ BX, BX
	JZ    avx512tail

avx512loop4:
	STEP_12x32
	STEP_12x32
	STEP_12x32
	STEP_12x32
	DECQ BX
	JNZ  avx512loop4

avx512tail:
	TESTQ CX, CX
	JZ    avx512done

avx512loop1:
	STEP_12x32
	DECQ CX
	JNZ  avx512loop1

avx512done:
	CHECK_ALPHA_ONE(avx512store)
	VBROADCASTSS alpha+64(FP), Z0
	VMULPS       Z0, Z8, Z8
	VMULPS       Z0, Z9, Z9
	VMULPS       Z0, Z10, Z10
	VMULPS       Z0, Z11, Z11
	VMULPS       Z0, Z12, Z12
	VMULPS       Z0, Z13, Z13
	VMULPS       Z0, Z14, Z14
	VMULPS       Z0, Z15, Z15
	VMULPS       Z0, Z16, Z16
	VMULPS       Z0, Z17, Z17
	VMULPS       Z0, Z18, Z18
	VMULPS       Z0, Z19, Z19
	VMULPS       Z0, Z20, Z20
	VMULPS       Z0, Z21, Z21
	VMULPS       Z0, Z22, Z22
	VMULPS       Z0, Z23, Z23
	VMULPS       Z0, Z24, Z24
	VMULPS       Z0, Z25, Z25
	VMULPS       Z0, Z26, Z26
	VMULPS       Z0, Z27, Z27
	VMULPS       Z0, Z28, Z28
	VMULPS       Z0, Z29, Z29
	VMULPS       Z0, Z30, Z30
	VMULPS       Z0, Z31, Z31

avx512store:
	MOVSS        beta+68(FP), X1
	VXORPS       X2, X2, X2
	UCOMISS      X2, X1
	JNE          avx512beta
	JPS          avx512beta

	STORE_12x32(Z8, Z9)
	STORE_12x32(Z10, Z11)
	STORE_12x32(Z12, Z13)
	STORE_12x32(Z14, Z15)
	STORE_12x32(Z16, Z17)
	STORE_12x32(Z18, Z19)
	STORE_12x32(Z20, Z21)
	STORE_12x32(Z22, Z23)
	STORE_12x32(Z24, Z25)
	STORE_12x32(Z26, Z27)
	STORE_12x32(Z28, Z29)
	STORE_12x32(Z30, Z31)
	VZEROUPPER
	RET

avx512beta:
	VBROADCASTSS beta+68(FP), Z1
	STOREBETA_12x32(Z8, Z9)
	STOREBETA_12x32(Z10, Z11)
	STOREBETA_12x32(Z12, Z13)
	STOREBETA_12x32(Z14, Z15)
	STOREBETA_12x32(Z16, Z17)
	STOREBETA_12x32(Z18, Z19)
	STOREBETA_12x32(Z20, Z21)
	STOREBETA_12x32(Z22, Z23)
	STOREBETA_12x32(Z24, Z25)
	STOREBETA_12x32(Z26, Z27)
	STOREBETA_12x32(Z28, Z29)
	STOREBETA_12x32(Z30, Z31)
	VZEROUPPER
	RET

// func transposePanelAVX(dst *float32, src *float32, lds, nr, kb8 int)
// Packs an nr-column panel of a transposed B: source row j (at src + j*lds
// floats) holds column j of op(B); dst[q*nr + j] = src[j*lds + q] for
// q < 8*kb8, j < nr (a multiple of 8), by 8×8 in-register transposes.
TEXT ·transposePanelAVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $2, R8
	MOVQ nr+24(FP), R11
	MOVQ R11, CX
	SHRQ $3, CX
	SHLQ $2, R11
	MOVQ kb8+32(FP), R10

tpgroup:
	// Rows 0-2 from SI, 3-5 from R12, 6-7 from R13.
	LEAQ (SI)(R8*2), R12
	ADDQ R8, R12
	LEAQ (R12)(R8*2), R13
	ADDQ R8, R13
	MOVQ DI, DX
	MOVQ R10, BX
	MOVQ SI, R9
	TESTQ BX, BX
	JZ    tpnext

tpblock:
	VMOVUPS (R9), Y0
	VMOVUPS (R9)(R8*1), Y1
	VMOVUPS (R9)(R8*2), Y2
	VMOVUPS (R12), Y3
	VMOVUPS (R12)(R8*1), Y4
	VMOVUPS (R12)(R8*2), Y5
	VMOVUPS (R13), Y6
	VMOVUPS (R13)(R8*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	// Column t of the block goes to dst row t: DX + t*R11.
	LEAQ    (DX)(R11*2), R14
	ADDQ    R11, R14
	LEAQ    (R14)(R11*2), AX
	ADDQ    R11, AX
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, (DX)(R11*1)
	VMOVUPS Y10, (DX)(R11*2)
	VMOVUPS Y11, (R14)
	VMOVUPS Y12, (R14)(R11*1)
	VMOVUPS Y13, (R14)(R11*2)
	VMOVUPS Y14, (AX)
	VMOVUPS Y15, (AX)(R11*1)
	LEAQ    (AX)(R11*2), DX

	ADDQ $32, R9
	ADDQ $32, R12
	ADDQ $32, R13
	DECQ BX
	JNZ  tpblock

tpnext:
	// Next group of 8 source rows and 8 destination columns.
	LEAQ (SI)(R8*8), SI
	ADDQ $32, DI
	DECQ CX
	JNZ  tpgroup
	VZEROUPPER
	RET

DATA gemmIota<>+0(SB)/4, $0
DATA gemmIota<>+4(SB)/4, $1
DATA gemmIota<>+8(SB)/4, $2
DATA gemmIota<>+12(SB)/4, $3
DATA gemmIota<>+16(SB)/4, $4
DATA gemmIota<>+20(SB)/4, $5
DATA gemmIota<>+24(SB)/4, $6
DATA gemmIota<>+28(SB)/4, $7
GLOBL gemmIota<>(SB), RODATA|NOPTR, $32

// func copyRowsAVX2(dst *float32, src *float32, lds, rows, nw, nr int)
// Packs rows into a micro-panel: for each of rows rows, copies nw ≤ nr
// floats from src (rows lds floats apart) to nr contiguous floats of dst,
// zero-filling the rest; nr is 6, 12, 16 or 32. Masked loads read nothing
// past the nw floats of a row, so a last row ending a slice is safe.
TEXT ·copyRowsAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	SHLQ $2, R8
	MOVQ rows+24(FP), CX
	MOVQ nw+32(FP), AX
	MOVQ nr+40(FP), R9
	TESTQ CX, CX
	JZ    crdone

	// Y4..Y7: lane masks of the four 8-float chunks, lane j of chunk c
	// set when 8c+j < nw.
	VMOVDQU      gemmIota<>(SB), Y15
	MOVQ         AX, X0
	VPBROADCASTD X0, Y0
	MOVL         $8, BX
	MOVQ         BX, X1
	VPBROADCASTD X1, Y1
	VPCMPGTD     Y15, Y0, Y4
	VPSUBD       Y1, Y0, Y0
	VPCMPGTD     Y15, Y0, Y5
	VPSUBD       Y1, Y0, Y0
	VPCMPGTD     Y15, Y0, Y6
	VPSUBD       Y1, Y0, Y0
	VPCMPGTD     Y15, Y0, Y7

	CMPQ R9, $32
	JEQ  cr32
	CMPQ R9, $16
	JEQ  cr16
	CMPQ R9, $12
	JEQ  cr12

	// nr = 6: floats 0-3 under the low half of Y4, 4-5 under its high half.
	VEXTRACTI128 $1, Y4, X6

cr6:
	VMASKMOVPS (SI), X4, X8
	VMASKMOVPS 16(SI), X6, X9
	VMOVUPS    X8, (DI)
	MOVQ       X9, 16(DI)
	ADDQ       R8, SI
	ADDQ       $24, DI
	DECQ       CX
	JNZ        cr6
	VZEROUPPER
	RET

cr12:
	VMASKMOVPS (SI), Y4, Y8
	VMASKMOVPS 32(SI), X5, X9
	VMOVUPS    Y8, (DI)
	VMOVUPS    X9, 32(DI)
	ADDQ       R8, SI
	ADDQ       $48, DI
	DECQ       CX
	JNZ        cr12
	VZEROUPPER
	RET

cr16:
	VMASKMOVPS (SI), Y4, Y8
	VMASKMOVPS 32(SI), Y5, Y9
	VMOVUPS    Y8, (DI)
	VMOVUPS    Y9, 32(DI)
	ADDQ       R8, SI
	ADDQ       $64, DI
	DECQ       CX
	JNZ        cr16
	VZEROUPPER
	RET

cr32:
	VMASKMOVPS (SI), Y4, Y8
	VMASKMOVPS 32(SI), Y5, Y9
	VMASKMOVPS 64(SI), Y6, Y10
	VMASKMOVPS 96(SI), Y7, Y11
	VMOVUPS    Y8, (DI)
	VMOVUPS    Y9, 32(DI)
	VMOVUPS    Y10, 64(DI)
	VMOVUPS    Y11, 96(DI)
	ADDQ       R8, SI
	ADDQ       $128, DI
	DECQ       CX
	JNZ        cr32
	VZEROUPPER

crdone:
	RET
