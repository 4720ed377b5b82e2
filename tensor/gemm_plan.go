package tensor

// gemmOrient says whether a product is computed as asked or transposed.
type gemmOrient uint8

const (
	gemmAuto    gemmOrient = iota // the plan's cost model decides
	gemmNormal                    // C = op(A)·op(B)
	gemmSwapped                   // Cᵀ = op(B)ᵀ·op(A)ᵀ, written into C transposed
)

// defaultKernels are the micro-kernels Gemm chooses among: the assembly
// ones when the CPU has any, else the pure-Go one. Fixed at start-up.
var defaultKernels = func() []*gemmKernel {
	ks := archKernels()
	if len(ks) > 1 {
		ks = ks[:len(ks)-1]
	}
	return ks
}()

// Cost-model constants, in cycles of one core (measured on Zen 4).
const (
	costFMALanes  = 16  // float32 multiply-adds per cycle at the kernels' peak
	costCall      = 70  // entering and leaving one micro-kernel call
	costPackRows  = 0.4 // per element of a row-major A block packed by rows
	costPackShort = 3   // per element when Go packs runs of mr or nr
	costPackRuns  = 0.6 // per element when assembly packs runs of mr or nr
	costPackT     = 0.7 // per element of a transposed B packed by assembly
	costPackTMem  = 1.5 // the same when B is larger than L2 and comes from memory
	costPackTGo   = 4.4 // per element of a transposed B packed in Go
	costMergeT    = 6   // per element merged into a transposed C
)

// gemmL2Floats is the float32 capacity of a core's L2 cache (1 MiB on
// Zen 4, 1-2 MiB on recent Intel cores).
const gemmL2Floats = 1 << 18

// plan picks the micro-kernel and the orientation with the lowest estimated
// cost. Computing Cᵀ = op(B)ᵀ·op(A)ᵀ pays off mainly for A·Bᵀ with few rows
// of A: B, stored n×k, is then read in place as the left operand instead of
// being transposed into packed panels, and only the small A is packed.
func (p *gemmProblem) plan(kernels []*gemmKernel, orient gemmOrient) {
	best := -1.0
	var bestKern *gemmKernel
	bestSwap := false
	for _, swap := range [2]bool{false, true} {
		if (orient == gemmNormal && swap) || (orient == gemmSwapped && !swap) {
			continue
		}
		q := *p
		if swap {
			q.swap()
		}
		for _, kr := range kernels {
			q.kern = kr
			if c := q.cost(); best < 0 || c < best {
				best, bestKern, bestSwap = c, kr, swap
			}
		}
	}
	if bestSwap {
		p.swap()
	}
	p.kern = bestKern
}

// swap turns the problem into its transpose: Cᵀ (n×m) = op(B)ᵀ·op(A)ᵀ.
func (p *gemmProblem) swap() {
	p.m, p.n = p.n, p.m
	p.a, p.b = p.b, p.a
	p.rsA, p.csA, p.rsB, p.csB = p.csB, p.rsB, p.csA, p.rsA
	p.rsC, p.csC = p.csC, p.rsC
}

// packing decides, for a rows×cols region of C, which operands are packed.
// The kernels take strides, so packing is optional except for a B whose
// rows are not contiguous (the kernels load rows of B as vectors). Packing
// an element in Go costs as much as 20-70 multiply-adds, so it pays only
// when the packed copy is reused often: a packed A block is reused once per
// nr columns of C, a B panel once per mr rows. Measured on Zen 4, operands
// read in place are served well enough by L2 and the prefetchers even with
// 4 KiB strides, up to that reuse.
func (p *gemmProblem) packing(rows, cols int) (packA, packB bool) {
	packA = cols >= packMinReuse
	packB = p.csB != 1 || rows >= packMinReuse
	return packA, packB
}

// packMinReuse is the reuse (rows or columns of C sharing a packed operand)
// from which packing is cheaper than reading in place.
const packMinReuse = 512

// cost estimates the cycles one core needs for the product with p.kern:
// the padded multiply-adds, per-call overhead, packing and merging.
func (p *gemmProblem) cost() float64 {
	kr := p.kern
	mp, np := gemmCeilDiv(p.m, kr.mr)*kr.mr, gemmCeilDiv(p.n, kr.nr)*kr.nr
	kBlocks := float64(gemmCeilDiv(p.k, kr.kc))
	tiles := float64(mp/kr.mr) * float64(np/kr.nr) * kBlocks
	c := float64(mp) * float64(np) * float64(p.k) / costFMALanes
	c += tiles * (costCall + float64(kr.mr*kr.nr)/8)
	packA, packB := p.packing(p.m, p.n)
	short := kr.runCost
	if packA {
		per := short
		if p.csA == 1 {
			per = costPackRows
		}
		c += float64(p.m) * float64(p.k) * per * float64(gemmCeilDiv(p.n, kr.nc))
	}
	if packB {
		per := short
		switch {
		case p.csB != 1 && kr.transposeB != nil && p.n*p.k > gemmL2Floats:
			per = costPackTMem
		case p.csB != 1 && kr.transposeB != nil:
			per = costPackT
		case p.csB != 1:
			per = costPackTGo
		}
		c += float64(p.n) * float64(p.k) * per
	}
	if p.csC != 1 {
		c += float64(p.m) * float64(p.n) * kBlocks * costMergeT
	}
	return c
}
