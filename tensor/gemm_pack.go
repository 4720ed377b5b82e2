package tensor

// packA copies rows [i0, i0+mb) and columns [p0, p0+kb) of op(A) into dst as
// ceil(mb/mr) micro-panels of mr rows. Panel r holds, for each k-step p, the
// mr values op(A)(i0+r·mr+i, p0+p) at dst[r·mr·kb + p·mr + i]; rows past mb
// are zero so partial panels can run through the full micro-kernel.
func (p *gemmProblem) packA(dst []float32, i0, mb, p0, kb int) {
	mr := p.kern.mr
	for r := 0; r < mb; r += mr {
		mh := min(mr, mb-r)
		d := dst[r*kb : (r+mr)*kb]
		if p.csA == 1 {
			// Rows of A are contiguous: gather each into a strided column
			// of the panel.
			for i := range mh {
				src := p.a[(i0+r+i)*p.rsA+p0:]
				src = src[:kb]
				for q, v := range src {
					d[q*mr+i] = v
				}
			}
			for i := mh; i < mr; i++ {
				for q := range kb {
					d[q*mr+i] = 0
				}
			}
			continue
		}
		// A is stored transposed: each k-step is a contiguous run of rows.
		for q := range kb {
			src := p.a[(p0+q)*p.csA+i0+r:]
			row := d[q*mr : q*mr+mr]
			copy(row, src[:mh])
			clear(row[mh:])
		}
	}
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
			for q := range kb {
				src := p.b[(p0+q)*p.rsB+j0+c:]
				row := d[q*nr : q*nr+nr]
				copy(row, src[:nw])
				clear(row[nw:])
			}
			continue
		}
		// B is stored transposed: each column of op(B) is a contiguous row.
		for j := range nw {
			src := p.b[(j0+c+j)*p.csB+p0:]
			src = src[:kb]
			for q, v := range src {
				d[q*nr+j] = v
			}
		}
		for j := nw; j < nr; j++ {
			for q := range kb {
				d[q*nr+j] = 0
			}
		}
	}
}
