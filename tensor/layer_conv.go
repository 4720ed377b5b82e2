package tensor

import (
	"math/rand/v2"
	"sync"
)

// Tuning of the convolution: im2col works on chunks of at most
// convColBudget values (rows × patch size), and a batch whose convolution
// costs at least convShardWork multiply-adds is split into up to
// convMaxShards contiguous ranges of examples that run concurrently, each
// with its own column buffers and gradient accumulators. The shard count
// depends only on the batch and layer sizes, never on the machine, so a
// seeded training run gives the same bits everywhere.
const (
	convColBudget = 1 << 18
	convShardWork = 1 << 22
	convMaxShards = 2
)

// conv is a 2-D convolution over channels-last activations: x is n × [H,
// W, C], y is n × [OH, OW, F]. Weights are [K·K·C, F] (patch index
// (kh·K+kw)·C + c), then F biases. A pass builds im2col rows (one per
// output pixel, K·K·C values) a chunk at a time and multiplies them by the
// weights with Gemm.
type conv struct {
	lp                *layerPlan
	c, h, w           int
	f, k, stride, pad int
	oh, ow            int
	kkc               int // patch size K·K·C
	pix               int // output pixels per example, OH·OW
	rows              int // im2col rows per chunk
}

func newConv(p *layerPlan) *conv {
	s := p.spec
	l := &conv{lp: p, c: p.in[0], h: p.in[1], w: p.in[2], f: s.Filters, k: s.Kernel, stride: max(s.Stride, 1), pad: s.Padding}
	l.oh, l.ow = p.out[1], p.out[2]
	l.kkc = l.k * l.k * l.c
	l.pix = l.oh * l.ow
	l.rows = max(1, convColBudget/l.kkc)
	return l
}

func (l *conv) plan() *layerPlan                 { return l.lp }
func (l *conv) elementwise() bool                { return false }
func (l *conv) needsOutput() bool                { return false }
func (l *conv) init(w []float32, rng *rand.Rand) { initUniform(l.lp, w, rng) }

// shards returns how many example ranges a batch of n is split into.
func (l *conv) shards(n int) int {
	work := float64(n) * float64(l.pix) * float64(l.kkc) * float64(l.f)
	if work < convShardWork {
		return 1
	}
	return min(n, convMaxShards)
}

// chunkRows is the im2col chunk height for a batch of n.
func (l *conv) chunkRows(n int) int { return min(l.rows, n*l.pix) }

// scratch: per shard a column buffer, and in training a second one for
// the column gradient plus, for shards after the first, a private copy of
// the parameter gradient.
func (l *conv) scratch(n int, train bool) (int, int, int) {
	s, col := l.shards(n), l.chunkRows(n)*l.kkc
	if !train {
		return s * col, 0, 0
	}
	return s*2*col + (s-1)*l.lp.params, 0, 0
}

// shardRange returns the examples [e0, e1) of shard i out of s.
func shardRange(n, s, i int) (int, int) { return n * i / s, n * (i + 1) / s }

// runShards calls fn(i) for i in [0, s), on up to p.workers() goroutines.
func runShards(p *pass, s int, fn func(i int)) {
	g := min(s, p.workers())
	p.ran(g)
	if g <= 1 {
		for i := range s {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 1; w < g; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < s; i += g {
				fn(i)
			}
		}()
	}
	for i := 0; i < s; i += g {
		fn(i)
	}
	wg.Wait()
}

func (l *conv) forward(p *pass, s *buffers, w, x, y []float32, n int) {
	shards, col := l.shards(n), l.chunkRows(n)*l.kkc
	bias := w[l.lp.weights:]
	runShards(p, shards, func(i int) {
		e0, e1 := shardRange(n, shards, i)
		buf := s.f[i*col : (i+1)*col]
		for r0 := e0 * l.pix; r0 < e1*l.pix; r0 += l.rows {
			r1 := min(r0+l.rows, e1*l.pix)
			l.im2col(buf, x, r0, r1)
			out := y[r0*l.f : r1*l.f]
			fillRows(out, bias, r1-r0)
			p.gemm(false, false, r1-r0, l.f, l.kkc, 1, buf, l.kkc, w, l.f, 1, out, l.f)
		}
	})
}

func (l *conv) backward(p *pass, s *buffers, w, gw, x, _, dy, dx []float32, n int) {
	shards, col := l.shards(n), l.chunkRows(n)*l.kkc
	nw := l.lp.weights
	runShards(p, shards, func(i int) {
		e0, e1 := shardRange(n, shards, i)
		cols := s.f[2*i*col : (2*i+1)*col]
		dcols := s.f[(2*i+1)*col : (2*i+2)*col]
		g := gw
		if i > 0 && gw != nil {
			off := 2*shards*col + (i-1)*l.lp.params
			g = s.f[off : off+l.lp.params]
		}
		if dx != nil {
			clear(dx[e0*l.lp.inSize : e1*l.lp.inSize])
		}
		beta := float32(0)
		for r0 := e0 * l.pix; r0 < e1*l.pix; r0 += l.rows {
			r1 := min(r0+l.rows, e1*l.pix)
			m := r1 - r0
			d := dy[r0*l.f : r1*l.f]
			if g != nil { // nil: only the input gradient is wanted
				l.im2col(cols, x, r0, r1)
				p.gemm(true, false, l.kkc, l.f, m, 1, cols, l.kkc, d, l.f, beta, g[:nw], l.f)
				if beta == 0 {
					sumRows(g[nw:], d, m)
				} else {
					addRowSums(g[nw:], d, m)
				}
			}
			beta = 1
			if dx != nil {
				p.gemm(false, true, m, l.kkc, l.f, 1, d, l.f, w, l.f, 0, dcols, l.kkc)
				l.col2im(dx, dcols, r0, r1)
			}
		}
		if beta == 0 { // an empty shard (n < shards cannot happen, kept for safety)
			clear(g)
		}
	})
	for i := 1; i < shards && gw != nil; i++ {
		off := 2*shards*col + (i-1)*l.lp.params
		addTo(gw[:l.lp.params], s.f[off:off+l.lp.params])
	}
}

// addRowSums adds the column sums of the n rows of dy to db.
func addRowSums(db, dy []float32, n int) {
	m := len(db)
	for r := range n {
		row := dy[r*m : (r+1)*m : (r+1)*m]
		for j := range db {
			db[j] += row[j]
		}
	}
}

// im2col writes the patches of output pixels [r0, r1) of the batch (pixel
// r is pixel r mod OH·OW of example r / OH·OW) as rows of dst.
func (l *conv) im2col(dst, x []float32, r0, r1 int) {
	k, c, kc := l.k, l.c, l.k*l.c
	for r := r0; r < r1; r++ {
		ex, p := r/l.pix, r%l.pix
		oh, ow := p/l.ow, p%l.ow
		row := dst[(r-r0)*l.kkc : (r-r0+1)*l.kkc]
		img := x[ex*l.lp.inSize : (ex+1)*l.lp.inSize]
		ih0, iw0 := oh*l.stride-l.pad, ow*l.stride-l.pad
		// Columns kw in [lo, hi) fall inside the image.
		lo, hi := max(0, -iw0), min(k, l.w-iw0)
		for kh := range k {
			seg := row[kh*kc : (kh+1)*kc]
			ih := ih0 + kh
			if ih < 0 || ih >= l.h || lo >= hi {
				clear(seg)
				continue
			}
			clear(seg[:lo*c])
			src := (ih*l.w + iw0 + lo) * c
			copy(seg[lo*c:hi*c], img[src:src+(hi-lo)*c])
			clear(seg[hi*c:])
		}
	}
}

// col2im adds the patch gradients in rows [r0, r1) of src back onto the
// input positions they were taken from.
func (l *conv) col2im(dx, src []float32, r0, r1 int) {
	k, c, kc := l.k, l.c, l.k*l.c
	for r := r0; r < r1; r++ {
		ex, p := r/l.pix, r%l.pix
		oh, ow := p/l.ow, p%l.ow
		row := src[(r-r0)*l.kkc : (r-r0+1)*l.kkc]
		img := dx[ex*l.lp.inSize : (ex+1)*l.lp.inSize]
		ih0, iw0 := oh*l.stride-l.pad, ow*l.stride-l.pad
		lo, hi := max(0, -iw0), min(k, l.w-iw0)
		if lo >= hi {
			continue
		}
		for kh := range k {
			ih := ih0 + kh
			if ih < 0 || ih >= l.h {
				continue
			}
			seg := row[kh*kc+lo*c : kh*kc+hi*c]
			dst := (ih*l.w + iw0 + lo) * c
			addTo(img[dst:dst+len(seg)], seg)
		}
	}
}

// maxPool takes the maximum of each K×K window (stride S) of every
// channel, on channels-last activations. In training it records the
// winning input position of each output for backward (-1: no gradient).
// When the model fuses a ReLU in front of it (relu set), that ReLU does
// nothing and the pool applies it to its 4x smaller output instead.
type maxPool struct {
	lp        *layerPlan
	c, h, w   int
	k, stride int
	oh, ow    int
	relu      bool
}

func newMaxPool(p *layerPlan) *maxPool {
	s := p.spec
	l := &maxPool{lp: p, c: p.in[0], h: p.in[1], w: p.in[2], k: s.Kernel, stride: s.Stride}
	if l.stride == 0 {
		l.stride = l.k
	}
	l.oh, l.ow = p.out[1], p.out[2]
	return l
}

func (l *maxPool) plan() *layerPlan           { return l.lp }
func (l *maxPool) elementwise() bool          { return false }
func (l *maxPool) needsOutput() bool          { return false }
func (l *maxPool) init([]float32, *rand.Rand) {}
func (l *maxPool) scratch(n int, train bool) (int, int, int) {
	if !train {
		return 0, 0, 0
	}
	return 0, n * l.lp.outSize, 0
}

// poolShards splits big pooling passes over two goroutines.
func (l *maxPool) shards(n int) int {
	if n*l.lp.inSize < 1<<16 {
		return 1
	}
	return min(n, 2)
}

func (l *maxPool) forward(p *pass, s *buffers, _, x, y []float32, n int) {
	shards := l.shards(n)
	runShards(p, shards, func(i int) {
		e0, e1 := shardRange(n, shards, i)
		for e := e0; e < e1; e++ {
			var arg []int32
			if p.train || p.record {
				arg = s.i[e*l.lp.outSize : (e+1)*l.lp.outSize]
			}
			l.forwardOne(x[e*l.lp.inSize:(e+1)*l.lp.inSize], y[e*l.lp.outSize:(e+1)*l.lp.outSize], arg)
		}
	})
}

func (l *maxPool) forwardOne(x, y []float32, arg []int32) {
	if l.k == 2 && l.stride == 2 {
		l.forward2x2(x, y, arg)
		return
	}
	c := l.c
	for oh := range l.oh {
		for ow := range l.ow {
			o := (oh*l.ow + ow) * c
			out := y[o : o+c : o+c]
			base := (oh*l.stride*l.w + ow*l.stride) * c
			copy(out, x[base:base+c])
			var a []int32
			if arg != nil {
				a = arg[o : o+c : o+c]
				for j := range a {
					a[j] = int32(base + j)
				}
			}
			for kh := range l.k {
				for kw := range l.k {
					if kh == 0 && kw == 0 {
						continue
					}
					b := ((oh*l.stride+kh)*l.w + ow*l.stride + kw) * c
					in := x[b : b+c : b+c]
					if a == nil {
						for j, v := range in {
							if v > out[j] {
								out[j] = v
							}
						}
						continue
					}
					for j, v := range in {
						if v > out[j] {
							out[j] = v
							a[j] = int32(b + j)
						}
					}
				}
			}
			if !l.relu {
				continue
			}
			// A ReLU fused in front: max(relu(x)) = relu(max(x)), and no
			// gradient flows where the maximum is not positive.
			for j, v := range out {
				if !(v > 0) {
					out[j] = 0
					if a != nil {
						a[j] = -1
					}
				}
			}
		}
	}
}

// forward2x2 is forwardOne for the common 2×2 window with stride 2: one
// pass over the four input rows of each output, and no data-dependent
// branches (the builtin max and integer selects instead), since the winner
// of a window is as unpredictable as a coin toss.
func (l *maxPool) forward2x2(x, y []float32, arg []int32) {
	c := l.c
	row := l.w * c
	for oh := range l.oh {
		for ow := range l.ow {
			o := (oh*l.ow + ow) * c
			out := y[o : o+c : o+c]
			b0 := (2*oh*l.w + 2*ow) * c
			p0 := x[b0 : b0+c : b0+c]
			p1 := x[b0+c : b0+2*c : b0+2*c]
			p2 := x[b0+row : b0+row+c : b0+row+c]
			p3 := x[b0+row+c : b0+row+2*c : b0+row+2*c]
			if arg == nil {
				for j, m := range p0 {
					m = max(m, p1[j], p2[j], p3[j])
					if l.relu {
						m = max(m, 0)
					}
					out[j] = m
				}
				continue
			}
			a := arg[o : o+c : o+c]
			for j, m := range p0 {
				at := b0
				v := p1[j]
				at += b2i(v > m) * (b0 + c - at)
				m = max(m, v)
				v = p2[j]
				at += b2i(v > m) * (b0 + row - at)
				m = max(m, v)
				v = p3[j]
				at += b2i(v > m) * (b0 + row + c - at)
				m = max(m, v)
				at += j
				if l.relu {
					// No gradient where the fused ReLU clipped the maximum.
					at = b2i(m > 0)*(at+1) - 1
					m = max(m, 0)
				}
				out[j], a[j] = m, int32(at)
			}
		}
	}
}

// b2i is 1 for true and 0 for false; the compiler turns it into a SETcc.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (l *maxPool) backward(_ *pass, s *buffers, _, _, _, _, dy, dx []float32, n int) {
	if dx == nil {
		return
	}
	clear(dx[:n*l.lp.inSize])
	in, out := l.lp.inSize, l.lp.outSize
	for e := range n {
		d := dx[e*in : (e+1)*in]
		g := dy[e*out : (e+1)*out]
		for j, a := range s.i[e*out : (e+1)*out] {
			if a >= 0 {
				d[a] += g[j]
			}
		}
	}
}
