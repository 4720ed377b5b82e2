package tensor

// How Gemm computes a product (files gemm_*.go):
//
//   - gemm.go validates the arguments and puts the call in stride form
//     (gemmProblem), so transposes are only strides from then on.
//   - gemm_plan.go picks, by a cost model of cycles, the micro-kernel (an
//     AVX-512 12×32 or AVX2 6×16 tile on amd64, a pure-Go 4×4 tile
//     otherwise) and the orientation: C = op(A)·op(B) as asked, or
//     Cᵀ = op(B)ᵀ·op(A)ᵀ when that avoids transposing a big operand.
//   - gemm_parallel.go cuts C into chunks of whole tiles that the caller
//     and parked helper goroutines claim, up to GOMAXPROCS of them.
//   - region (below) runs the Goto/BLIS loop nest over one chunk: blocks
//     of n, k and m sized for L3, L1 and L2; an operand reused often is
//     packed into contiguous panels (gemm_pack.go), one reused little is
//     read in place, since the kernels take strides.
//   - The micro-kernels (gemm_amd64.s, gemm_kernel_generic.go) keep an
//     mr×nr tile of C in registers over a k-block.

import "sync"

// gemmKernel is a micro-kernel together with the cache blocking tuned for it.
type gemmKernel struct {
	name   string
	mr, nr int // the tile of C that one micro call computes
	kc     int // k-block: an nr-wide B micro-panel of kc rows stays in L1
	mc     int // m-block, a multiple of mr: the packed mc×kc A block stays in L2
	nc     int // n-block, a multiple of nr: the packed kc×nc B panel stays in L3

	// micro computes the mr×nr tile C = alpha·Ã·B̃ + beta·C over kc steps,
	// where Ã(i,p) = a[i*rsa+p*csa], B̃(p,j) = b[p*rsb+j] and
	// C(i,j) = c[i*ldc+j]. beta == 0 overwrites C without reading it. The
	// caller guarantees every index it touches is inside the slices: the
	// assembly kernels do not check.
	micro func(kc int, a []float32, rsa, csa int, b []float32, rsb int, c []float32, ldc int, alpha, beta float32)

	// transposeB, if not nil, packs a full panel of a transposed B faster
	// than Go: dst[q*nr+j] = src[j*lds+q] for q < 8·kb8, j < nr.
	transposeB func(dst, src []float32, lds, nr, kb8 int)

	// copyRows packs short rows into a micro-panel: dst[q*w+j] =
	// src[q*lds+j] for q < rows, j < nw ≤ w, zero past nw, where w is mr
	// or nr (a row-major B, a transposed A). runCost is its cost in cycles
	// per element, for the plan.
	copyRows func(dst, src []float32, lds, rows, nw, w int)
	runCost  float64
}

// Products with fewer flops per worker than this (about 25 µs of one core)
// run on fewer goroutines: handing work to a parked thread costs the caller
// a few microseconds and the thread tens of microseconds to wake.
const gemmMinFlopsPerWorker = 1 << 21

// gemmProblem is one validated call of Gemm in stride form: element (i, p)
// of op(A) is a[i*rsA+p*csA], element (p, j) of op(B) is b[p*rsB+j*csB] and
// element (i, j) of C is c[i*rsC+j*csC]. csC is 1 unless plan swapped the
// operands to compute Cᵀ = op(B)ᵀ·op(A)ᵀ.
type gemmProblem struct {
	kern        *gemmKernel
	m, n, k     int
	alpha, beta float32
	a           []float32
	rsA, csA    int
	b           []float32
	rsB, csB    int
	c           []float32
	rsC, csC    int
}

// gemmBuf holds one worker's packing buffers; they come from gemmBufPool so
// a steady stream of products allocates nothing.
type gemmBuf struct {
	a, b         []float32 // packed A block (mc×kc) and B panel (kc×nc)
	aEdge, bEdge []float32 // a zero-padded partial A (mr×kc) or B (kc×nr) micro-panel
	tile         []float32 // mr×nr result of a partial tile before it is merged into C
}

var gemmBufPool = sync.Pool{New: func() any { return new(gemmBuf) }}

// gemmGrow returns s resliced to n elements, reallocating only when its
// capacity is short.
func gemmGrow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func gemmCeilDiv(a, b int) int { return (a + b - 1) / b }

// region computes rows [i0,i1) × columns [j0,j1) of C with the Goto/BLIS
// loop nest: n-blocks, k-blocks (pack B), m-blocks (pack A), then the
// macro-kernel over micro-tiles.
func (p *gemmProblem) region(i0, i1, j0, j1 int) {
	kr := p.kern
	mr, nr := kr.mr, kr.nr
	buf := gemmBufPool.Get().(*gemmBuf)
	defer gemmBufPool.Put(buf)

	packA, packB := p.packing(i1-i0, j1-j0)
	// An operand used in place needs a zero-padded copy of its partial
	// micro-panel only when the whole matrix is narrower than one tile;
	// otherwise macro shifts the partial tile back onto valid rows/columns.
	edgeA, edgeB := !packA && p.m < mr, !packB && p.n < nr
	kcMax := min(kr.kc, p.k)
	if packA {
		buf.a = gemmGrow(buf.a, min(kr.mc, gemmCeilDiv(i1-i0, mr)*mr)*(kcMax+packPadA))
	}
	if edgeA {
		buf.aEdge = gemmGrow(buf.aEdge, mr*(kcMax+packPadA))
	}
	if packB {
		buf.b = gemmGrow(buf.b, min(kr.nc, gemmCeilDiv(j1-j0, nr)*nr)*kcMax)
	}
	if edgeB {
		buf.bEdge = gemmGrow(buf.bEdge, nr*kcMax)
	}
	buf.tile = gemmGrow(buf.tile, mr*nr)

	for jc := j0; jc < j1; jc += kr.nc {
		nb := min(kr.nc, j1-jc)
		for pc := 0; pc < p.k; pc += kr.kc {
			kb := min(kr.kc, p.k-pc)
			beta := p.beta
			if pc > 0 {
				beta = 1
			}
			if packB {
				p.packB(buf.b, pc, kb, jc, nb)
			} else if edgeB {
				p.packB(buf.bEdge, pc, kb, jc, nb)
			}
			for ic := i0; ic < i1; ic += kr.mc {
				mb := min(kr.mc, i1-ic)
				if packA {
					p.packA(buf.a, ic, mb, pc, kb)
				} else if edgeA {
					p.packA(buf.aEdge, ic, mb, pc, kb)
				}
				p.macro(buf, packA, packB, ic, mb, jc, nb, pc, kb, beta)
			}
		}
	}
}

// macro runs the micro-kernel over the mb×nb block of C at (ic, jc) for the
// k-range [pc, pc+kb), taking each micro-panel from the packed buffers or,
// for operands used in place, straight from A and B. A partial tile of
// in-place operands is computed as the full tile ending at the same row and
// column (overlapping its neighbour) into a scratch tile, of which only the
// new part is merged into C.
func (p *gemmProblem) macro(buf *gemmBuf, packA, packB bool, ic, mb, jc, nb, pc, kb int, beta float32) {
	kr := p.kern
	mr, nr := kr.mr, kr.nr
	for jr := 0; jr < nb; jr += nr {
		nw := min(nr, nb-jr)
		var bp []float32
		rsb, offJ := nr, 0
		switch {
		case packB:
			bp = buf.b[jr*kb:]
		case p.n < nr:
			bp = buf.bEdge
		default:
			offJ = nr - nw
			bp = p.b[pc*p.rsB+jc+jr-offJ:]
			rsb = p.rsB
		}
		for ir := 0; ir < mb; ir += mr {
			mh := min(mr, mb-ir)
			var ap []float32
			rsa, csa, offI := 1, mr, 0
			switch {
			case packA:
				ap, rsa, csa = p.packedA(buf.a, ir, kb)
			case p.m < mr:
				ap, rsa, csa = p.packedA(buf.aEdge, 0, kb)
			default:
				offI = mr - mh
				ap = p.a[(ic+ir-offI)*p.rsA+pc*p.csA:]
				rsa, csa = p.rsA, p.csA
			}
			ci := (ic+ir)*p.rsC + (jc+jr)*p.csC
			if mh == mr && nw == nr && p.csC == 1 {
				kr.micro(kb, ap, rsa, csa, bp, rsb, p.c[ci:], p.rsC, p.alpha, beta)
				continue
			}
			kr.micro(kb, ap, rsa, csa, bp, rsb, buf.tile, nr, p.alpha, 0)
			gemmMergeTile(buf.tile[offI*nr+offJ:], nr, mh, nw, beta, p.c[ci:], p.rsC, p.csC)
		}
	}
}

// gemmMergeTile adds the top-left mh×nw of an alpha-scaled tile into C, whose
// element (i, j) is c[i*rsc+j*csc]: C = tile + beta·C, or C = tile when beta
// is 0.
func gemmMergeTile(tile []float32, ldt, mh, nw int, beta float32, c []float32, rsc, csc int) {
	if csc != 1 {
		// C is transposed (rsc is 1 then): column j of the tile is a
		// contiguous run of C.
		for j := range nw {
			col := c[j*csc : j*csc+(mh-1)*rsc+1]
			if rsc == 1 {
				if beta == 0 {
					for i := range col {
						col[i] = tile[i*ldt+j]
					}
					continue
				}
				for i := range col {
					col[i] = tile[i*ldt+j] + beta*col[i]
				}
				continue
			}
			for i := range mh {
				v := tile[i*ldt+j]
				if beta != 0 {
					v += beta * col[i*rsc]
				}
				col[i*rsc] = v
			}
		}
		return
	}
	for i := range mh {
		t := tile[i*ldt : i*ldt+nw]
		row := c[i*rsc : i*rsc+nw]
		if beta == 0 {
			copy(row, t)
			continue
		}
		for j, v := range t {
			row[j] = v + beta*row[j]
		}
	}
}
