package tensor

// packPadA pads the rows of an A block packed row by row, so that the mr
// rows a micro-kernel reads do not all map to the same L1 sets when kb is
// a multiple of 256.
const packPadA = 4

// packA copies rows [i0, i0+mb) and columns [p0, p0+kb) of op(A) into dst
// as ceil(mb/mr) micro-panels of mr rows; rows past mb are zero so partial
// panels can run through the full micro-kernel. The layout follows A's:
//   - A row-major (csA == 1): panel r holds its rows one after another with
//     stride kb+packPadA, op(A)(i0+r·mr+i, p0+q) at
//     dst[r·mr·(kb+packPadA) + i·(kb+packPadA) + q]; a plain copy of rows.
//   - A transposed (rsA == 1): panel r holds, per k-step, its mr values
//     contiguously: dst[r·mr·kb + q·mr + i].
func (p *gemmProblem) packA(dst []float32, i0, mb, p0, kb int) {
	mr := p.kern.mr
	if p.csA == 1 {
		ld := kb + packPadA
		rows := gemmCeilDiv(mb, mr) * mr
		for i := range rows {
			d := dst[i*ld : i*ld+kb]
			if i >= mb {
				clear(d)
				continue
			}
			copy(d, p.a[(i0+i)*p.rsA+p0:])
		}
		return
	}
	for r := 0; r < mb; r += mr {
		mh := min(mr, mb-r)
		p.kern.copyRows(dst[r*kb:(r+mr)*kb], p.a[p0*p.csA+i0+r:], p.csA, kb, mh, mr)
	}
}

// packedA returns the micro-panel of a block packed by packA that starts at
// row ir (a multiple of mr), with its row and k strides.
func (p *gemmProblem) packedA(block []float32, ir, kb int) (panel []float32, rsa, csa int) {
	if p.csA == 1 {
		return block[ir*(kb+packPadA):], kb + packPadA, 1
	}
	return block[ir*kb:], 1, p.kern.mr
}

// packB copies rows [p0, p0+kb) and columns [j0, j0+nb) of op(B) into dst as
// ceil(nb/nr) micro-panels of nr columns. Panel q holds, for each k-step p,
// the nr values op(B)(p0+p, j0+q·nr+j) at dst[q·nr·kb + p·nr + j]; columns
// past nb are zero.
func (p *gemmProblem) packB(dst []float32, p0, kb, j0, nb int) {
	nr := p.kern.nr
	for c := 0; c < nb; c += nr {
		nw := min(nr, nb-c)
		d := dst[c*kb : (c+nr)*kb]
		if p.csB == 1 {
			// Rows of B are contiguous: copy nw values per k-step.
			p.kern.copyRows(d, p.b[p0*p.rsB+j0+c:], p.rsB, kb, nw, nr)
			continue
		}
		// B is stored transposed: each column of op(B) is a contiguous row.
		q0 := 0
		if tr := p.kern.transposeB; tr != nil && nw == nr && nr%8 == 0 && kb >= 8 {
			tr(d, p.b[(j0+c)*p.csB+p0:], p.csB, nr, kb/8)
			q0 = kb / 8 * 8
		}
		for j := range nw {
			src := p.b[(j0+c+j)*p.csB+p0:]
			src = src[q0:kb]
			for q, v := range src {
				d[(q0+q)*nr+j] = v
			}
		}
		for j := nw; j < nr; j++ {
			for q := range kb {
				d[q*nr+j] = 0
			}
		}
	}
}

// gemmCopyRows is the pure-Go copyRows of gemmKernel: dst[q*w+j] =
// src[q*lds+j] for q < rows and j < nw, and zero for nw ≤ j < w.
func gemmCopyRows(dst, src []float32, lds, rows, nw, w int) {
	for q := range rows {
		row := dst[q*w : q*w+w]
		for j, v := range src[q*lds : q*lds+nw] {
			row[j] = v
		}
		for j := nw; j < w; j++ {
			row[j] = 0
		}
	}
}
