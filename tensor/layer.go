package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
)

// pass carries what one forward/backward pass shares across layers.
type pass struct {
	train bool
	// record makes an evaluation pass keep what backward reads (the
	// max-pool winners), for gradients with respect to the input.
	record bool
	rng    *rand.Rand // dropout masks; nil in evaluation
	adj    *CSR       // graph passes only
	// threads caps the goroutines of the pass's matrix products and
	// shard fan-outs (TrainConfig.Threads); 0 means GOMAXPROCS.
	threads int
	// peak is the most goroutines one product or fan-out ran on.
	peak atomic.Int32
}

// workers returns how many goroutines a product or fan-out of the pass
// may use.
func (p *pass) workers() int {
	g := runtime.GOMAXPROCS(0)
	if p != nil && p.threads > 0 {
		g = min(g, p.threads)
	}
	return g
}

// ran records that a product or fan-out of the pass used w goroutines.
func (p *pass) ran(w int) {
	if p == nil {
		return
	}
	for {
		old := p.peak.Load()
		if int32(w) <= old || p.peak.CompareAndSwap(old, int32(w)) {
			return
		}
	}
}

// gemm is Gemm for a layer of the pass: on at most p.workers() goroutines.
func (p *pass) gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	cfg := gemmConfig{kernels: defaultKernels, maxWorkers: p.workers()}
	p.ran(gemmWith(cfg, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
}

// buffers is one layer's scratch memory inside a workspace.
type buffers struct {
	f []float32
	i []int32
	u []uint64
}

// layer is one step of a model. Layers hold no parameters and no mutable
// state: weights, gradients and scratch arrive as arguments, so one model
// serves many concurrent forward passes (each with its own workspace).
//
// Batches are row-major: x holds n examples of inSize values, y n of
// outSize. forward overwrites y. backward overwrites gw (the gradient of
// this layer's parameters) from dy unless gw is nil, and writes dx unless
// dx is nil; for an
// elementwise layer dx and dy may be the same slice. x and y hold what
// forward left in them.
type layer interface {
	plan() *layerPlan
	// elementwise layers may compute y in place over x and dx over dy.
	elementwise() bool
	// needsOutput reports whether backward reads y (so a later layer may
	// not overwrite it in place).
	needsOutput() bool
	// scratch returns how many float32, int32 and uint64 scratch values a
	// pass over at most n examples needs (train: backward runs too).
	scratch(n int, train bool) (f, i, u int)
	init(w []float32, rng *rand.Rand)
	forward(p *pass, s *buffers, w, x, y []float32, n int)
	backward(p *pass, s *buffers, w, gw, x, y, dy, dx []float32, n int)
}

// newLayer builds the layer a validated plan describes.
func newLayer(p *layerPlan) layer {
	switch p.spec.Type {
	case LayerDense:
		return &dense{lp: p}
	case LayerConv2D:
		return newConv(p)
	case LayerMaxPool:
		return newMaxPool(p)
	case LayerReLU:
		return &relu{lp: p}
	case LayerFlatten:
		return &flatten{lp: p}
	case LayerDropout:
		return &dropout{lp: p, rate: float32(p.spec.Rate)}
	case LayerGCNConv:
		return &gcnConv{lp: p}
	case LayerStandardize:
		return newStandardize(p)
	case LayerEmbeddingBag:
		return &embeddingBag{lp: p, vocab: p.spec.Vocab}
	}
	// plan() rejects unknown types, so this is a programming error.
	panic(fmt.Sprintf("tensor: no layer for validated type %q", p.spec.Type))
}

// initUniform fills w with the He or Glorot uniform distribution the plan
// asks for; biases (the rest of the layer's parameters) are zero.
func initUniform(p *layerPlan, w []float32, rng *rand.Rand) {
	bound := glorotBound(p.fanIn, p.fanOut)
	if p.he {
		bound = heBound(p.fanIn)
	}
	for i := range p.weights {
		w[i] = float32((2*rng.Float64() - 1) * bound)
	}
	clear(w[p.weights:])
}

// fillRows sets each of the n rows of y (width len(b)) to b.
func fillRows(y []float32, b []float32, n int) {
	m := len(b)
	for r := range n {
		copy(y[r*m:(r+1)*m], b)
	}
}

// sumRows overwrites db with the column sums of the n rows of dy.
func sumRows(db, dy []float32, n int) {
	m := len(db)
	clear(db)
	for r := range n {
		row := dy[r*m : (r+1)*m : (r+1)*m]
		for j := range db {
			db[j] += row[j]
		}
	}
}

// sameSlice reports whether a and b start at the same element.
func sameSlice(a, b []float32) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

// addTo adds src to dst elementwise.
func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// dense is a fully connected layer: y = x·W + b, W of shape [in, out].
type dense struct{ lp *layerPlan }

func (l *dense) plan() *layerPlan                          { return l.lp }
func (l *dense) elementwise() bool                         { return false }
func (l *dense) needsOutput() bool                         { return false }
func (l *dense) scratch(n int, train bool) (int, int, int) { return 0, 0, 0 }
func (l *dense) init(w []float32, rng *rand.Rand)          { initUniform(l.lp, w, rng) }

func (l *dense) forward(p *pass, _ *buffers, w, x, y []float32, n int) {
	in, out := l.lp.inSize, l.lp.outSize
	fillRows(y, w[in*out:], n)
	p.gemm(false, false, n, out, in, 1, x, in, w, out, 1, y, out)
}

func (l *dense) backward(p *pass, _ *buffers, w, gw, x, _, dy, dx []float32, n int) {
	in, out := l.lp.inSize, l.lp.outSize
	if gw != nil {
		p.gemm(true, false, in, out, n, 1, x, in, dy, out, 0, gw, out)
		sumRows(gw[in*out:], dy, n)
	}
	if dx != nil {
		p.gemm(false, true, n, in, out, 1, dy, out, w, out, 0, dx, in)
	}
}

// relu is max(x, 0). Backward reads the output's sign, so it works in
// place.
type relu struct{ lp *layerPlan }

func (l *relu) plan() *layerPlan                          { return l.lp }
func (l *relu) elementwise() bool                         { return true }
func (l *relu) needsOutput() bool                         { return true }
func (l *relu) scratch(n int, train bool) (int, int, int) { return 0, 0, 0 }
func (l *relu) init([]float32, *rand.Rand)                {}

func (l *relu) forward(_ *pass, _ *buffers, _, x, y []float32, n int) {
	m := n * l.lp.inSize
	x, y = x[:m], y[:m]
	for i, v := range x {
		y[i] = max(v, 0)
	}
}

func (l *relu) backward(_ *pass, _ *buffers, _, _, _, y, dy, dx []float32, n int) {
	if dx == nil {
		return
	}
	m := n * l.lp.inSize
	y, dy, dx = y[:m], dy[:m], dx[:m]
	for i, v := range y {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// flatten only reinterprets the shape; values keep their order.
type flatten struct{ lp *layerPlan }

func (l *flatten) plan() *layerPlan                          { return l.lp }
func (l *flatten) elementwise() bool                         { return true }
func (l *flatten) needsOutput() bool                         { return false }
func (l *flatten) scratch(n int, train bool) (int, int, int) { return 0, 0, 0 }
func (l *flatten) init([]float32, *rand.Rand)                {}

func (l *flatten) forward(_ *pass, _ *buffers, _, x, y []float32, n int) {
	m := n * l.lp.inSize
	if !sameSlice(x, y) {
		copy(y[:m], x[:m])
	}
}

func (l *flatten) backward(_ *pass, _ *buffers, _, _, _, _, dy, dx []float32, n int) {
	m := n * l.lp.inSize
	if dx != nil && !sameSlice(dx, dy) {
		copy(dx[:m], dy[:m])
	}
}

// dropout zeroes each value with probability rate in training and scales
// the survivors by 1/(1-rate) ("inverted dropout"), so evaluation is the
// identity. The mask is one bit per value, drawn from the pass's RNG in
// 16-bit pieces (four values per 64-bit draw): the rate is applied in
// steps of 1/65536 and the scale matches the keep probability actually
// used, so the expected output is exactly the input.
type dropout struct {
	lp   *layerPlan
	rate float32
}

func (l *dropout) plan() *layerPlan  { return l.lp }
func (l *dropout) elementwise() bool { return true }
func (l *dropout) needsOutput() bool { return false }
func (l *dropout) scratch(n int, train bool) (int, int, int) {
	if !train {
		return 0, 0, 0
	}
	return 0, 0, (n*l.lp.inSize + 63) / 64
}
func (l *dropout) init([]float32, *rand.Rand) {}

// threshold returns the 16-bit draw below which a value is dropped, and
// the scale of the values kept.
func (l *dropout) threshold() (uint64, float32) {
	thr := uint64(math.Round(float64(l.rate) * 65536))
	thr = min(thr, 65535) // rate < 1: keep something
	return thr, float32(65536 / float64(65536-thr))
}

func (l *dropout) forward(p *pass, s *buffers, _, x, y []float32, n int) {
	m := n * l.lp.inSize
	x, y = x[:m], y[:m]
	if !p.train || l.rate == 0 {
		if !sameSlice(x, y) {
			copy(y, x)
		}
		return
	}
	thr, scale := l.threshold()
	mask := s.u[:(m+63)/64]
	for w := range mask {
		var bits uint64
		for q := range 16 { // 16 draws of four 16-bit pieces: 64 bits
			r := p.rng.Uint64()
			bits |= uint64(b2i(r&0xffff >= thr)) << (4 * q)
			bits |= uint64(b2i(r>>16&0xffff >= thr)) << (4*q + 1)
			bits |= uint64(b2i(r>>32&0xffff >= thr)) << (4*q + 2)
			bits |= uint64(b2i(r>>48 >= thr)) << (4*q + 3)
		}
		mask[w] = bits
	}
	applyMask(y, x, mask, scale)
}

func (l *dropout) backward(p *pass, s *buffers, _, _, _, _, dy, dx []float32, n int) {
	if dx == nil {
		return
	}
	m := n * l.lp.inSize
	dy, dx = dy[:m], dx[:m]
	if !p.train || l.rate == 0 { // evaluation: the identity
		if !sameSlice(dx, dy) {
			copy(dx, dy)
		}
		return
	}
	_, scale := l.threshold()
	applyMask(dx, dy, s.u, scale)
}

// applyMask sets dst[i] = src[i]·scale where bit i of mask is set, else 0,
// without a branch per value. dst and src may be the same slice.
func applyMask(dst, src []float32, mask []uint64, scale float32) {
	sc := [2]float32{0, scale}
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = src[i] * sc[mask[i>>6]>>(i&63)&1]
	}
}
