package tensor

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// Model is an architecture (Spec) plus ONE flat parameter vector. Layer i's
// parameters are the sub-slice Params[off_i : off_i+n_i], laid out in spec
// order, weights (row-major [in, out], or [K·K·C, F] for a convolution)
// before biases. Grads has the same layout and holds the gradient of the
// last training step.
//
// Aggregation, compression and masking work on Params directly; assigning
// new values (copy or SetParams) is all it takes to load them. Params must
// keep its length, and Spec must not be modified (build a new model).
//
// Predict, PredictInto, Evaluate and PredictGraph may run concurrently
// with each other; Train and TrainGraph write Params, Grads and a cached
// workspace, so they must not run concurrently with anything else on the
// same model. A Model must not be copied after first use (use Clone).
type Model struct {
	Spec   Spec
	Params []float32
	Grads  []float32

	nparams    int
	plans      []layerPlan
	layers     []layer
	fused      []bool    // layer i is a ReLU done by the max-pool after it
	firstParam int       // first layer with parameters: backward stops there
	hwc        bool      // inputs are [C,H,W] with C > 1 and feed convolutions: transpose to channels-last
	predictCap int       // examples per inference workspace
	pool       sync.Pool // inference workspaces
	gradPool   sync.Pool // input-gradient workspaces
	trainWS    *workspace
}

// Random streams derived from a seed, so that initialization, shuffling
// and dropout never share numbers.
const (
	streamInit    = 0x6665646765696e69 // "fedgeini"
	streamShuffle = 0x6665646765736866 // "fedgeshf"
	streamDropout = 0x6665646765647270 // "fedgedrp"
)

// inferenceBudget bounds the activation values of one inference workspace.
const inferenceBudget = 1 << 21

// NewModel builds a model of spec with weights drawn deterministically from
// seed: He uniform for layers followed by a ReLU, Glorot uniform for the
// others, biases zero. The same spec and seed give the same bits.
//
// An external spec gets ErrExternalModel: its weights come from outside
// (NewExternalModel).
func NewModel(spec Spec, seed uint64) (*Model, error) {
	if spec.IsExternal() {
		return nil, fmt.Errorf("tensor.NewModel: %q: initial weights of an external model come from a file (NewExternalModel): %w", spec.Name, ErrExternalModel)
	}
	m, err := newModel(spec)
	if err != nil {
		return nil, fmt.Errorf("tensor.NewModel: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, streamInit))
	for i, l := range m.layers {
		p := &m.plans[i]
		l.init(m.Params[p.offset:p.offset+p.params], rng)
	}
	return m, nil
}

// newModel validates spec and allocates a zero model.
func newModel(spec Spec) (*Model, error) { return newModelWith(spec, nil) }

// newModelWith is newModel whose parameters are params (nil: allocated).
func newModelWith(spec Spec, params []float32) (*Model, error) {
	spec = spec.clone() // the plans keep the spec's standardize constants
	plans, n, err := spec.plan()
	if err != nil {
		return nil, err
	}
	switch {
	case params == nil:
		params = make([]float32, n)
	case len(params) != n:
		return nil, fmt.Errorf("%d parameters for a spec of %d: %w", len(params), n, ErrShape)
	}
	m := &Model{Spec: spec, nparams: n, plans: plans, Params: params}
	if !spec.IsExternal() { // the engine never trains an external model
		m.Grads = make([]float32, n)
	}
	m.layers = make([]layer, len(plans))
	m.firstParam = len(plans)
	for i := len(plans) - 1; i >= 0; i-- {
		if plans[i].params > 0 {
			m.firstParam = i
		}
	}
	per := 0
	conv := false
	for i := range plans {
		m.layers[i] = newLayer(&m.plans[i])
		per += plans[i].outSize
		t := plans[i].spec.Type
		conv = conv || t == LayerConv2D || t == LayerMaxPool
	}
	m.hwc = conv && len(spec.Input) == 3 && spec.Input[0] > 1
	// Fuse ReLU → max-pool: pooling commutes with the ReLU, so the pool
	// applies it to 1/K² of the values and the ReLU pass disappears. Only
	// where every workspace runs the ReLU in place (see newWorkspace: after
	// a layer with its own output buffer that does not need it back), so
	// the pool reads the same buffer either way.
	m.fused = make([]bool, len(plans))
	for i := 1; i+1 < len(plans); i++ {
		prev := m.layers[i-1]
		if pool, ok := m.layers[i+1].(*maxPool); ok && plans[i].spec.Type == LayerReLU && !prev.elementwise() && !prev.needsOutput() {
			m.fused[i] = true
			pool.relu = true
		}
	}
	m.predictCap = min(1024, max(1, inferenceBudget/max(per, 1)))
	return m, nil
}

// Clone returns an independent copy of m (spec and parameters; the
// gradient starts at zero).
func (m *Model) Clone() *Model {
	c, err := newModel(m.Spec)
	if err != nil { // m was built from a validated spec
		panic(fmt.Sprintf("tensor.Model.Clone: %v", err))
	}
	copy(c.Params, m.Params)
	return c
}

// Blank returns a model of m's architecture with every parameter zero:
// Clone without the copy, for a caller about to overwrite them all (an
// external trainer's weights read back).
func (m *Model) Blank() *Model {
	c, err := newModel(m.Spec)
	if err != nil { // m was built from a validated spec
		panic(fmt.Sprintf("tensor.Model.Blank: %v", err))
	}
	return c
}

// NumParams returns the length of the flat parameter vector.
func (m *Model) NumParams() int { return len(m.Params) }

// Features returns the number of input values of one example (0 for an
// external model).
func (m *Model) Features() int {
	if len(m.plans) == 0 {
		return 0
	}
	return m.plans[0].inSize
}

// Classes returns the number of outputs (class probabilities) per example
// (0 for an external model).
func (m *Model) Classes() int {
	if len(m.plans) == 0 {
		return 0
	}
	return m.plans[len(m.plans)-1].outSize
}

// SetParams copies src into Params; src must have NumParams values.
func (m *Model) SetParams(src []float32) error {
	if len(src) != len(m.Params) {
		return fmt.Errorf("tensor.Model.SetParams: %d values for %d parameters: %w", len(src), len(m.Params), ErrShape)
	}
	copy(m.Params, src)
	return nil
}

// LayerParams returns the views of layer i's weights and biases inside
// Params (empty for layers without parameters).
func (m *Model) LayerParams(i int) (weights, biases []float32) {
	p := &m.plans[i]
	w := m.Params[p.offset : p.offset+p.params : p.offset+p.params]
	return w[:p.weights:p.weights], w[p.weights:]
}

// checkParams reports a Params or Grads slice whose length was changed.
func (m *Model) checkParams(grads bool) error {
	n := m.nparams
	if len(m.Params) != n {
		return fmt.Errorf("Params has %d values, the spec needs %d: %w", len(m.Params), n, ErrShape)
	}
	if grads && len(m.Grads) != n {
		return fmt.Errorf("Grads has %d values, the spec needs %d: %w", len(m.Grads), n, ErrShape)
	}
	return nil
}

// workspace is the memory of passes over batches of up to cap examples:
// activations, layer scratch and gradient buffers. It is reused across
// batches, so steady-state training allocates nothing.
type workspace struct {
	cap    int
	train  bool
	in     []float32   // gathered (and channels-last) inputs
	labels []int32     // gathered labels
	acts   [][]float32 // acts[i+1] is layer i's output; acts[0] is set per pass
	alias  []bool      // layer i computes in place over its input
	needDX []bool      // layer i must produce its input gradient
	scr    []buffers
	gA, gB []float32 // ping-pong activation gradients
}

// passMode is what a workspace is built for.
type passMode int

const (
	modeInfer passMode = iota // forward only
	modeTrain                 // forward, loss and backward into Grads
	modeInput                 // evaluation forward, then backward to the input only (no parameter gradients)
)

// newWorkspace sizes a workspace for batches of up to n examples.
func (m *Model) newWorkspace(n int, mode passMode) *workspace {
	L := len(m.layers)
	train := mode == modeTrain
	back := mode != modeInfer // backward runs: layers keep what it reads
	ws := &workspace{cap: n, train: train, acts: make([][]float32, L+1), alias: make([]bool, L), needDX: make([]bool, L), scr: make([]buffers, L)}
	if back || m.hwc {
		ws.in = make([]float32, n*m.Features())
	}
	if train {
		ws.labels = make([]int32, n)
	}
	params := false
	owned := false        // acts[i] is a buffer of the workspace, not the caller's input
	readBack := false     // some layer whose output is acts[i] reads it in backward
	maxOut := m.Classes() // the loss gradient, even for a model without parameters
	if mode == modeInput {
		maxOut = max(maxOut, m.Features())
	}
	for i, l := range m.layers {
		p := l.plan()
		ws.needDX[i] = train && params || mode == modeInput
		params = params || p.params > 0
		// A layer that changes no value (a flatten, a dropout in
		// evaluation) shares its input buffer, whoever owns it. Other
		// elementwise layers work in place only over a buffer the workspace
		// owns, and in training only when no backward reads the values
		// overwritten: not the previous layer's, nor that of any layer
		// before it that shares the buffer (a ReLU, then a flatten, then a
		// standardize that changes signs).
		noWrite := p.spec.Type == LayerFlatten || (p.spec.Type == LayerDropout && (!train || p.spec.Rate == 0))
		ws.alias[i] = l.elementwise() && (noWrite || owned && (!back || !readBack))
		owned = owned || !ws.alias[i]
		readBack = ws.alias[i] && readBack || l.needsOutput()
		if !ws.alias[i] {
			ws.acts[i+1] = make([]float32, n*p.outSize)
		}
		f, iv, u := l.scratch(n, back)
		ws.scr[i] = buffers{f: make([]float32, f), i: make([]int32, iv), u: make([]uint64, u)}
		if params || mode == modeInput {
			// In training only layers from the first with parameters on
			// run backward, so only their outputs need gradient buffers.
			maxOut = max(maxOut, p.outSize)
		}
	}
	if back {
		ws.gA = make([]float32, n*maxOut)
		ws.gB = make([]float32, n*maxOut)
	}
	return ws
}

// input returns the first n examples of x in the layout the layers expect,
// transposing [C,H,W] examples to channels-last into ws.in when needed.
func (m *Model) input(ws *workspace, x []float32, n int) []float32 {
	f := m.Features()
	if !m.hwc {
		return x[:n*f]
	}
	for e := range n {
		m.putExample(ws.in[e*f:(e+1)*f], x[e*f:(e+1)*f])
	}
	return ws.in[:n*f]
}

// forward runs the layers over n examples x (already in layer layout) and
// returns the logits.
func (m *Model) forward(ws *workspace, ps *pass, x []float32, n int) []float32 {
	ws.acts[0] = x
	for i, l := range m.layers {
		if ws.alias[i] {
			ws.acts[i+1] = ws.acts[i]
		}
		if m.fused[i] {
			continue
		}
		p := &m.plans[i]
		w := m.Params[p.offset : p.offset+p.params]
		l.forward(ps, &ws.scr[i], w, ws.acts[i], ws.acts[i+1], n)
	}
	return ws.acts[len(m.layers)][:n*m.Classes()]
}

// backward propagates the logits' gradient in ws.gA down the layers,
// overwriting Grads.
func (m *Model) backward(ws *workspace, ps *pass, n int) {
	g, other := ws.gA, ws.gB
	for i := len(m.layers) - 1; i >= m.firstParam; i-- {
		if m.fused[i] {
			continue // in place, and the pool already masked the gradient
		}
		l := m.layers[i]
		p := &m.plans[i]
		var dx []float32
		if ws.needDX[i] {
			if l.elementwise() {
				dx = g
			} else {
				dx = other
			}
		}
		w := m.Params[p.offset : p.offset+p.params]
		gw := m.Grads[p.offset : p.offset+p.params]
		l.backward(ps, &ws.scr[i], w, gw, ws.acts[i], ws.acts[i+1], g, dx, n)
		if dx != nil && !l.elementwise() {
			g, other = other, g
		}
	}
}

// trainStep runs forward, the loss and backward over the n examples x with
// labels y (rows limits the loss to some rows, for graphs), leaving the
// gradient of the mean loss in Grads. It returns the summed loss and the
// number of correct predictions.
func (m *Model) trainStep(ws *workspace, ps *pass, x []float32, y []int32, rows []int, n int) (float64, int) {
	logits := m.forward(ws, ps, x, n)
	count := n
	if rows != nil {
		count = len(rows)
	}
	loss, correct := softmaxXent(logits, m.Classes(), y, rows, n, ws.gA, float32(count))
	m.backward(ws, ps, n)
	return loss, correct
}

// getInference returns a pooled inference workspace.
func (m *Model) getInference() *workspace {
	if ws, ok := m.pool.Get().(*workspace); ok {
		return ws
	}
	return m.newWorkspace(m.predictCap, modeInfer)
}
