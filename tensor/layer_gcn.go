package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// gcnConv is Kipf and Welling's graph convolution over all N nodes of a
// graph at once: y = Â·(x·W) + b, with Â the pass's normalized adjacency
// (CSR), x N × in, W [in, out]. The dense product goes through Gemm; the
// sparse one is a hand-written CSR loop.
type gcnConv struct{ lp *layerPlan }

func (l *gcnConv) plan() *layerPlan                 { return l.lp }
func (l *gcnConv) elementwise() bool                { return false }
func (l *gcnConv) needsOutput() bool                { return false }
func (l *gcnConv) init(w []float32, rng *rand.Rand) { initUniform(l.lp, w, rng) }

// scratch holds x·W and, in training, its gradient.
func (l *gcnConv) scratch(n int, train bool) (int, int, int) {
	if train {
		return 2 * n * l.lp.outSize, 0, 0
	}
	return n * l.lp.outSize, 0, 0
}

func (l *gcnConv) forward(p *pass, s *buffers, w, x, y []float32, n int) {
	in, out := l.lp.inSize, l.lp.outSize
	xw := s.f[:n*out]
	p.gemm(false, false, n, out, in, 1, x, in, w, out, 0, xw, out)
	fillRows(y, w[in*out:], n)
	spmmAdd(p.adj, xw, y, out)
}

func (l *gcnConv) backward(p *pass, s *buffers, w, gw, x, _, dy, dx []float32, n int) {
	in, out := l.lp.inSize, l.lp.outSize
	dxw := s.f[n*out : 2*n*out]
	spmmTransposed(p.adj, dy, dxw, out)
	if gw != nil {
		p.gemm(true, false, in, out, n, 1, x, in, dxw, out, 0, gw, out)
		sumRows(gw[in*out:], dy, n)
	}
	if dx != nil {
		p.gemm(false, true, n, in, out, 1, dxw, out, w, out, 0, dx, in)
	}
}

// spmmAdd adds a·b to c, where a is CSR and b, c are row-major with m
// columns.
func spmmAdd(a *CSR, b, c []float32, m int) {
	for i := range a.Rows {
		dst := c[i*m : (i+1)*m : (i+1)*m]
		for k := a.RowPtr[i]; k < a.RowPtr[i+1]; k++ {
			j, v := int(a.ColIdx[k]), a.Val[k]
			src := b[j*m : (j+1)*m : (j+1)*m]
			for t := range dst {
				dst[t] += v * src[t]
			}
		}
	}
}

// spmmTransposed overwrites c with aᵀ·b, scattering each row of b along
// the non-zeros of the matching row of a. It does not assume a symmetric.
func spmmTransposed(a *CSR, b, c []float32, m int) {
	clear(c[:a.Cols*m])
	for i := range a.Rows {
		src := b[i*m : (i+1)*m : (i+1)*m]
		for k := a.RowPtr[i]; k < a.RowPtr[i+1]; k++ {
			j, v := int(a.ColIdx[k]), a.Val[k]
			dst := c[j*m : (j+1)*m : (j+1)*m]
			for t := range dst {
				dst[t] += v * src[t]
			}
		}
	}
}

// checkCSR reports whether a is a well-formed n×n sparse matrix, so the
// loops above cannot index out of range.
func checkCSR(a *CSR, n int) error {
	if a == nil {
		return fmt.Errorf("nil adjacency: %w", ErrShape)
	}
	if a.Rows != n || a.Cols != n {
		return fmt.Errorf("adjacency is %dx%d, graph has %d nodes: %w", a.Rows, a.Cols, n, ErrShape)
	}
	if len(a.RowPtr) != n+1 || a.RowPtr[0] != 0 {
		return fmt.Errorf("adjacency has %d row pointers for %d rows: %w", len(a.RowPtr), n, ErrShape)
	}
	nnz := int(a.RowPtr[n])
	if nnz < 0 || nnz > len(a.ColIdx) || nnz > len(a.Val) {
		return fmt.Errorf("adjacency claims %d non-zeros, holds %d columns and %d values: %w", nnz, len(a.ColIdx), len(a.Val), ErrShape)
	}
	for i := range n {
		if a.RowPtr[i+1] < a.RowPtr[i] {
			return fmt.Errorf("adjacency row pointers decrease at row %d: %w", i, ErrShape)
		}
	}
	for k, j := range a.ColIdx[:nnz] {
		if j < 0 || int(j) >= n {
			return fmt.Errorf("adjacency non-zero %d in column %d outside %d nodes: %w", k, j, n, ErrShape)
		}
	}
	return nil
}

// softmaxXent is the fused, numerically stable softmax cross-entropy on n
// rows of c logits with labels y. When rows is non-nil only those rows
// count (graph training masks). It writes the gradient of the loss divided
// by scale into grad (zero for rows that do not count) unless grad is nil,
// and returns the summed loss and the number of rows whose largest logit
// is the label.
func softmaxXent(logits []float32, c int, y []int32, rows []int, n int, grad []float32, scale float32) (float64, int) {
	var loss float64
	correct := 0
	one := func(i int) {
		z := logits[i*c : (i+1)*c : (i+1)*c]
		mx, arg := z[0], 0
		for j, v := range z {
			if v > mx {
				mx, arg = v, j
			}
		}
		var sum float64
		for _, v := range z {
			sum += math.Exp(float64(v - mx))
		}
		label := int(y[i])
		loss += math.Log(sum) - float64(z[label]-mx)
		if arg == label {
			correct++
		}
		if grad == nil {
			return
		}
		g := grad[i*c : (i+1)*c : (i+1)*c]
		inv := 1 / sum
		for j, v := range z {
			g[j] = float32(math.Exp(float64(v-mx))*inv) / scale
		}
		g[label] -= 1 / scale
	}
	if rows == nil {
		for i := range n {
			one(i)
		}
		return loss, correct
	}
	if grad != nil {
		clear(grad[:n*c])
	}
	for _, i := range rows {
		one(i)
	}
	return loss, correct
}

// softmaxRows overwrites each of the n rows of c values in z with its
// softmax. It subtracts the row's largest value first, so no exponential
// overflows; logits that overflowed to +Inf (huge inputs) share the
// probability among themselves, and a row of -Inf is uniform. Only a row
// holding NaN becomes all NaN: callers check for it.
func softmaxRows(z []float32, n, c int) {
	for i := range n {
		row := z[i*c : (i+1)*c : (i+1)*c]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v) // NaN if any is NaN
		}
		switch {
		case math.IsNaN(float64(mx)):
			nan := float32(math.NaN())
			for j := range row {
				row[j] = nan
			}
			continue
		case math.IsInf(float64(mx), 0):
			// Every value is -Inf (uniform), or some are +Inf (they
			// split the mass; the finite ones get none).
			k := 0
			for _, v := range row {
				if v == mx {
					k++
				}
			}
			for j, v := range row {
				row[j] = 0
				if v == mx {
					row[j] = 1 / float32(k)
				}
			}
			continue
		}
		var sum float64
		for j, v := range row {
			e := math.Exp(float64(v) - float64(mx))
			row[j] = float32(e)
			sum += e
		}
		inv := float32(1 / sum)
		for j := range row {
			row[j] *= inv
		}
	}
}
