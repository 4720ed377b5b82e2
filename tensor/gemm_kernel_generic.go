package tensor

// genericKernel is the pure-Go micro-kernel: the fallback on CPUs and
// architectures without an assembly kernel, and a reference the tests run
// on every machine.
var genericKernel = &gemmKernel{
	name:     "generic4x4",
	mr:       4,
	nr:       4,
	kc:       256,
	mc:       128,
	nc:       1024,
	micro:    microGeneric4x4,
	copyRows: gemmCopyRows,
	runCost:  costPackShort,
}

// microGeneric4x4 computes a 4×4 tile with its sixteen accumulators in
// registers; see gemmKernel.micro for the contract.
func microGeneric4x4(kc int, a []float32, rsa, csa int, b []float32, rsb int, c []float32, ldc int, alpha, beta float32) {
	var (
		c00, c01, c02, c03 float32
		c10, c11, c12, c13 float32
		c20, c21, c22, c23 float32
		c30, c31, c32, c33 float32
	)
	ia, ib := 0, 0
	for range kc {
		aa := a[ia : ia+3*rsa+1]
		a0, a1, a2, a3 := aa[0], aa[rsa], aa[2*rsa], aa[3*rsa]
		bb := b[ib : ib+4 : ib+4]
		b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
		ia += csa
		ib += rsb
	}
	storeRow4(c[0*ldc:], alpha, beta, c00, c01, c02, c03)
	storeRow4(c[1*ldc:], alpha, beta, c10, c11, c12, c13)
	storeRow4(c[2*ldc:], alpha, beta, c20, c21, c22, c23)
	storeRow4(c[3*ldc:], alpha, beta, c30, c31, c32, c33)
}

// storeRow4 writes alpha·(v0..v3) + beta·row into the first four entries of
// row, not reading row when beta is 0.
func storeRow4(row []float32, alpha, beta, v0, v1, v2, v3 float32) {
	r := row[:4:4]
	if beta == 0 {
		r[0], r[1], r[2], r[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	r[0] = alpha*v0 + beta*r[0]
	r[1] = alpha*v1 + beta*r[1]
	r[2] = alpha*v2 + beta*r[2]
	r[3] = alpha*v3 + beta*r[3]
}
