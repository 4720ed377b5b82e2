package tensor

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// QuantizeInt8 is the Spec.Quantize value of a model served in int8.
const QuantizeInt8 = "int8"

// ErrNotQuantizable reports a model Quantize cannot quantize: an external
// or graph model, or one whose inner dimension is too large for exact
// int32 sums.
var ErrNotQuantizable = errors.New("tensor: model cannot be quantized")

// QuantizedModel is a model prepared for int8 inference (post-training
// quantization): the weights of every dense and conv2d layer are int8
// with one scale per output channel (max |w| / 127), and the activations
// entering those layers are quantized per tensor with a scale calibrated
// on example data: unsigned 8 bits when the calibration never saw a
// negative value there (after a ReLU, or pixels in [0, 1]), else 8 bits
// around a zero point of 128. Products run on the int8 GEMM (AVX-512
// VNNI, AVX2 or pure Go) with exact int32 sums; biases, the
// dequantization and the other layers (ReLU, pooling, standardize) stay
// float32.
//
// It answers the same calls as Model: Predict, PredictInto, Features,
// Classes, and EvaluateQuantized for Evaluate. It is safe for concurrent
// use and independent of the model it was built from.
type QuantizedModel struct {
	m      *Model    // the float model: spec, layers, biases
	layers []*qlayer // per layer of m; nil where it runs in float32
	pool   sync.Pool // *qworkspace
}

// qlayer is one quantized dense or conv2d layer.
type qlayer struct {
	w      *qweights
	inv    float32   // 1 / activation scale
	zero   uint8     // activation zero point: 0 or 128
	oscale []float32 // per output: activation scale × weight scale
	ozero  []int32   // per output: zero × Σ_k W[k][j], removed from the sums
	bias   []float32
	conv   *conv // nil for a dense layer
}

// qworkspace is the memory of one quantized pass over up to predictCap
// examples: the float model's activations plus byte and int32 buffers.
type qworkspace struct {
	ws *workspace
	xq []uint8 // a layer's quantized input
	a  []uint8 // activation rows for the GEMM (im2col rows of a conv)
	c  []int32 // the GEMM's product
}

// qChunkRows is how many GEMM rows a quantized layer handles at a time: a
// multiple of the VNNI kernel's 12 rows whose bytes stay in L2.
const qChunkRows = 96

// Quantize returns m quantized to int8, with activation scales calibrated
// on the n examples of calib (n × Features() values in the model's input
// layout; the agent's held-out data, or a calibration set). The
// calibration only sets the scales: examples should look like what the
// model will serve, and a few hundred are enough.
func Quantize(m *Model, calib []float32, n int) (*QuantizedModel, error) {
	if m.Spec.IsExternal() || m.Spec.IsGraph() {
		return nil, fmt.Errorf("tensor.Quantize: model %q: %w (external and graph models run in float32 only)", m.Spec.Name, ErrNotQuantizable)
	}
	if err := m.checkInputs(calib, n); err != nil {
		return nil, fmt.Errorf("tensor.Quantize: calibration data: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("tensor.Quantize: no calibration examples: %w", ErrShape)
	}
	lo, hi := m.activationRanges(calib, n)
	q := &QuantizedModel{m: m.Clone(), layers: make([]*qlayer, len(m.layers))}
	for i, l := range q.m.layers {
		p := &q.m.plans[i]
		var k, out int
		var cv *conv
		switch t := l.(type) {
		case *dense:
			k, out = p.inSize, p.outSize
		case *conv:
			k, out, cv = t.kkc, t.f, t
		default:
			continue
		}
		if k > qMaxK {
			return nil, fmt.Errorf("tensor.Quantize: layer %d: %d inputs per output, at most %d: %w", i, k, qMaxK, ErrNotQuantizable)
		}
		w, b := q.m.LayerParams(i)
		q.layers[i] = newQLayer(w, b, k, out, lo[i], hi[i])
		q.layers[i].conv = cv
	}
	return q, nil
}

// newQLayer quantizes the k×out weights w (per output column) and sets
// the activation scale for inputs seen in [lo, hi].
func newQLayer(w, bias []float32, k, out int, lo, hi float32) *qlayer {
	ql := &qlayer{oscale: make([]float32, out), ozero: make([]int32, out), bias: append([]float32(nil), bias...)}
	// Activations: [0, hi] onto 0..255, or [-a, a] onto 1..255 around 128.
	scale := hi / 255
	if lo < 0 {
		scale = max(-lo, hi) / 127
		ql.zero = 128
	}
	if !(scale > 0) || math.IsInf(float64(scale), 0) { // all zero: any scale
		scale = 1
	}
	ql.inv = 1 / scale
	wmax := make([]float32, out)
	for r := range k {
		for j, v := range w[r*out : (r+1)*out] {
			wmax[j] = max(wmax[j], float32(math.Abs(float64(v))))
		}
	}
	qw := make([]int8, k*out)
	for r := range k {
		for j, v := range w[r*out : (r+1)*out] {
			if wmax[j] > 0 {
				qw[r*out+j] = int8(math.Round(float64(v * 127 / wmax[j])))
			}
		}
	}
	ql.w = packQWeights(qw, k, out)
	for j := range out {
		ql.oscale[j] = scale * wmax[j] / 127
		ql.ozero[j] = int32(ql.zero) * ql.w.colSum[j]
	}
	return ql
}

// activationRanges runs the float model over the n examples x and returns,
// per layer, the least and greatest value of its input.
func (m *Model) activationRanges(x []float32, n int) (lo, hi []float32) {
	lo, hi = make([]float32, len(m.layers)), make([]float32, len(m.layers))
	ws := m.getInference()
	defer m.pool.Put(ws)
	ps := &pass{}
	f := m.Features()
	for e0 := 0; e0 < n; e0 += m.predictCap {
		e1 := min(n, e0+m.predictCap)
		k := e1 - e0
		ws.acts[0] = m.input(ws, x[e0*f:e1*f], k)
		for i, l := range m.layers {
			if ws.alias[i] {
				ws.acts[i+1] = ws.acts[i]
			}
			if m.fused[i] {
				continue
			}
			p := &m.plans[i]
			if p.params > 0 {
				for _, v := range ws.acts[i][:k*p.inSize] {
					lo[i], hi[i] = min(lo[i], v), max(hi[i], v)
				}
			}
			l.forward(ps, &ws.scr[i], m.Params[p.offset:p.offset+p.params], ws.acts[i], ws.acts[i+1], k)
		}
	}
	return lo, hi
}

// Spec returns the architecture of the model quantized.
func (q *QuantizedModel) Spec() Spec { return q.m.Spec }

// ActivationScales returns, per quantized layer in order, the scale of
// the activations entering it (one step of the 8-bit code), as the
// calibration data set it.
func (q *QuantizedModel) ActivationScales() []float32 {
	var out []float32
	for _, ql := range q.layers {
		if ql != nil {
			out = append(out, 1/ql.inv)
		}
	}
	return out
}

// Features returns the number of input values of one example.
func (q *QuantizedModel) Features() int { return q.m.Features() }

// Classes returns the number of class probabilities per example.
func (q *QuantizedModel) Classes() int { return q.m.Classes() }

// Bytes returns the memory the quantized parameters take: one byte per
// quantized weight, float32 biases, scales and the parameters of layers
// left in float32. Compare with 4 × Model.NumParams().
func (q *QuantizedModel) Bytes() int {
	total := 0
	for i := range q.m.plans {
		p := &q.m.plans[i]
		if ql := q.layers[i]; ql != nil {
			total += p.weights + 4*len(ql.bias) + 4*len(ql.oscale) + 4
			continue
		}
		total += 4 * p.params
	}
	return total
}

// Kernel names the int8 micro-kernel the products run on.
func (q *QuantizedModel) Kernel() string { return defaultQKernels[0].name }

// Predict returns the class probabilities of the n examples in x, like
// Model.Predict.
func (q *QuantizedModel) Predict(x []float32, n int) ([]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("tensor.QuantizedModel.Predict: negative count %d: %w", n, ErrShape)
	}
	dst := make([]float32, n*q.Classes())
	if err := q.PredictInto(dst, x, n); err != nil {
		return nil, err
	}
	return dst, nil
}

// PredictInto is Predict writing into dst, which must hold n × Classes()
// values.
func (q *QuantizedModel) PredictInto(dst, x []float32, n int) error {
	if err := q.m.checkInputs(x, n); err != nil {
		return fmt.Errorf("tensor.QuantizedModel.PredictInto: %w", err)
	}
	c, f := q.Classes(), q.Features()
	if len(dst) < n*c {
		return fmt.Errorf("tensor.QuantizedModel.PredictInto: dst holds %d values, need %d: %w", len(dst), n*c, ErrShape)
	}
	q.chunked(n, func(qw *qworkspace, e0, e1 int) {
		logits := q.forward(qw, q.m.input(qw.ws, x[e0*f:e1*f], e1-e0), e1-e0)
		out := dst[e0*c : e1*c]
		copy(out, logits)
		softmaxRows(out, e1-e0, c)
	})
	return nil
}

// EvaluateQuantized returns the accuracy and loss sums of q over ds, like
// Evaluate.
func EvaluateQuantized(q *QuantizedModel, ds *Dataset) (Metrics, error) {
	if err := q.m.checkDataset(ds); err != nil {
		return Metrics{}, fmt.Errorf("tensor.EvaluateQuantized: %w", err)
	}
	n, f, c := ds.Len(), q.Features(), q.Classes()
	pc := q.m.predictCap
	parts := make([]Metrics, (n+pc-1)/pc)
	q.chunked(n, func(qw *qworkspace, e0, e1 int) {
		logits := q.forward(qw, q.m.input(qw.ws, ds.X[e0*f:e1*f], e1-e0), e1-e0)
		loss, correct := softmaxXent(logits, c, ds.Y[e0:e1], nil, e1-e0, nil, 1)
		parts[e0/pc] = Metrics{Correct: correct, Total: e1 - e0, LossSum: loss}
	})
	var sum Metrics
	for _, p := range parts {
		sum = sum.Add(p)
	}
	return sum, nil
}

// chunked is Model.chunked with quantized workspaces.
func (q *QuantizedModel) chunked(n int, fn func(qw *qworkspace, e0, e1 int)) {
	fanOut(n, q.m.predictCap, func(next func() (int, int, bool)) {
		qw := q.workspace()
		for e0, e1, ok := next(); ok; e0, e1, ok = next() {
			fn(qw, e0, e1)
		}
		q.pool.Put(qw)
	})
}

// workspace returns a pooled quantized workspace.
func (q *QuantizedModel) workspace() *qworkspace {
	if qw, ok := q.pool.Get().(*qworkspace); ok {
		return qw
	}
	pc := q.m.predictCap
	qw := &qworkspace{ws: q.m.newWorkspace(pc, modeInfer)}
	var xq, a, c int
	for i, ql := range q.layers {
		if ql == nil {
			continue
		}
		p := &q.m.plans[i]
		xq = max(xq, pc*p.inSize)
		a = max(a, qChunkRows*ql.w.lda())
		c = max(c, qChunkRows*ql.w.ldc())
	}
	qw.xq, qw.a, qw.c = make([]uint8, xq), make([]uint8, a), make([]int32, c)
	return qw
}

// forward runs the layers over n examples x (in layer layout), quantized
// where q has a quantized layer, and returns the logits.
func (q *QuantizedModel) forward(qw *qworkspace, x []float32, n int) []float32 {
	m, ws := q.m, qw.ws
	ps := &pass{}
	ws.acts[0] = x
	for i, l := range m.layers {
		if ws.alias[i] {
			ws.acts[i+1] = ws.acts[i]
		}
		if m.fused[i] {
			continue
		}
		p := &m.plans[i]
		if ql := q.layers[i]; ql != nil {
			ql.forward(qw, p, ws.acts[i], ws.acts[i+1], n)
			continue
		}
		l.forward(ps, &ws.scr[i], m.Params[p.offset:p.offset+p.params], ws.acts[i], ws.acts[i+1], n)
	}
	return ws.acts[len(m.layers)][:n*m.Classes()]
}

// quantizeInto writes round(x/scale) + zero, clamped to 0..255, into dst.
func (ql *qlayer) quantizeInto(dst []uint8, x []float32) {
	dst = dst[:len(x)]
	inv, z := ql.inv, float32(ql.zero)+0.5
	done := quantizeFast(dst, x, inv, z)
	dst, x = dst[done:], x[done:]
	for i, v := range x {
		v = v*inv + z
		v = min(max(v, 0), 255) // NaN stays NaN and converts to 0 below
		dst[i] = uint8(int32(v))
	}
}

// forward computes y from x (n examples) through the int8 GEMM.
func (ql *qlayer) forward(qw *qworkspace, p *layerPlan, x, y []float32, n int) {
	lda, ldc := ql.w.lda(), ql.w.ldc()
	out := ql.w.n
	if ql.conv == nil {
		k := p.inSize
		for r0 := 0; r0 < n; r0 += qChunkRows {
			r1 := min(n, r0+qChunkRows)
			for r := r0; r < r1; r++ {
				row := qw.a[(r-r0)*lda : (r-r0+1)*lda]
				ql.quantizeInto(row, x[r*k:(r+1)*k])
				clear(row[k:])
			}
			ql.product(qw, r1-r0, y[r0*out:r1*out], ldc)
		}
		return
	}
	l := ql.conv
	xq := qw.xq[:n*p.inSize]
	ql.quantizeInto(xq, x[:n*p.inSize])
	for r0 := 0; r0 < n*l.pix; r0 += qChunkRows {
		r1 := min(n*l.pix, r0+qChunkRows)
		ql.im2col(qw.a, lda, xq, r0, r1)
		ql.product(qw, r1-r0, y[r0*out:r1*out], ldc)
	}
}

// product multiplies the rows activation rows in qw.a by the weights and
// writes the dequantized outputs plus biases into y.
func (ql *qlayer) product(qw *qworkspace, rows int, y []float32, ldc int) {
	qgemm(defaultQKernels, rows, qw.a, ql.w, qw.c, ldc)
	out := ql.w.n
	j0 := dequantFast(rows, out, qw.c, ldc, ql.ozero, ql.oscale, ql.bias, y)
	for r := range rows {
		cr := qw.c[r*ldc+j0 : r*ldc+out : r*ldc+out]
		yr := y[r*out+j0 : (r+1)*out : (r+1)*out]
		sc, oz, b := ql.oscale[j0:out], ql.ozero[j0:out], ql.bias[j0:out]
		for j, v := range cr {
			yr[j] = float32(v-oz[j])*sc[j] + b[j]
		}
	}
}

// im2col writes the quantized patches of output pixels [r0, r1) as rows
// of dst (stride lda; the bytes past the patch are zero), with the zero
// point where a patch leaves the image.
func (ql *qlayer) im2col(dst []uint8, lda int, x []uint8, r0, r1 int) {
	l := ql.conv
	k, c, kc := l.k, l.c, l.k*l.c
	pad := ql.zero
	fill := func(s []uint8) {
		if pad == 0 {
			clear(s)
			return
		}
		for i := range s {
			s[i] = pad
		}
	}
	for r := r0; r < r1; r++ {
		ex, p := r/l.pix, r%l.pix
		oh, ow := p/l.ow, p%l.ow
		row := dst[(r-r0)*lda : (r-r0+1)*lda]
		clear(row[l.kkc:])
		img := x[ex*l.lp.inSize : (ex+1)*l.lp.inSize]
		ih0, iw0 := oh*l.stride-l.pad, ow*l.stride-l.pad
		lo, hi := max(0, -iw0), min(k, l.w-iw0)
		for kh := range k {
			seg := row[kh*kc : (kh+1)*kc]
			ih := ih0 + kh
			if ih < 0 || ih >= l.h || lo >= hi {
				fill(seg)
				continue
			}
			fill(seg[:lo*c])
			src := (ih*l.w + iw0 + lo) * c
			copy(seg[lo*c:hi*c], img[src:src+(hi-lo)*c])
			fill(seg[hi*c:])
		}
	}
}
