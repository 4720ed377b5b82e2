package tensor

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Layer types a LayerSpec may name.
const (
	LayerDense   = "dense"     // fully connected: Units outputs, weights [in, Units] then bias
	LayerReLU    = "relu"      // max(x, 0), elementwise
	LayerConv2D  = "conv2d"    // Filters × Kernel×Kernel convolution, Stride, zero Padding
	LayerMaxPool = "maxpool2d" // Kernel×Kernel max pooling with Stride (default Kernel)
	LayerFlatten = "flatten"   // [C,H,W] → [C·H·W]
	LayerDropout = "dropout"   // zeroes a Rate fraction in training, identity in evaluation
	LayerGCNConv = "gcnconv"   // graph convolution Â·X·W + b with Units outputs
	// LayerStandardize computes (x − Shift[j])·Scale[j] for each input value
	// j, with no parameters: preprocessing carried inside the model.
	LayerStandardize = "standardize"
	// LayerEmbeddingBag maps a bag of token ids to the mean of their rows
	// of a Vocab × Dim embedding table; a model's first layer only (see
	// PadID for the input).
	LayerEmbeddingBag = "embedding_bag"
)

// Limits Validate enforces so that a Spec read from untrusted bytes cannot
// ask for unbounded memory.
const (
	MaxLayers     = 256     // layers in one Spec
	MaxParams     = 1 << 30 // parameters of one model (4 GiB of float32)
	MaxActivation = 1 << 24 // values in one example's output of any layer
)

// LayerSpec describes one layer. Only the fields its Type uses may be set;
// zero values mean the documented defaults.
type LayerSpec struct {
	Type    string  `json:"type"`
	Units   int     `json:"units,omitempty"`   // dense, gcnconv: output features
	Filters int     `json:"filters,omitempty"` // conv2d: output channels
	Kernel  int     `json:"kernel,omitempty"`  // conv2d: kernel size; maxpool2d: window size
	Stride  int     `json:"stride,omitempty"`  // conv2d: default 1; maxpool2d: default Kernel
	Padding int     `json:"padding,omitempty"` // conv2d: zeros added on each side
	Rate    float64 `json:"rate,omitempty"`    // dropout: probability of zeroing, in [0, 1)
	// Shift and Scale are the standardize layer's constants, one per input
	// value in the Spec's layout ([C, H, W] order for a 3-D input): finite,
	// Scale > 0. They are part of the architecture, not parameters.
	Shift []float32 `json:"shift,omitempty"`
	Scale []float32 `json:"scale,omitempty"`
	Vocab int       `json:"vocab,omitempty"` // embedding_bag: rows of the embedding table (token ids)
	Dim   int       `json:"dim,omitempty"`   // embedding_bag: values of one embedding (output features)
}

// Spec is a model architecture: the shape of one input example and the
// ordered layers applied to it. The last layer's output (a vector) is the
// logits; training applies a fused softmax cross-entropy to them and
// Predict returns their softmax.
//
// Shapes follow PyTorch's notation: an image input is [C, H, W]. Inside the
// model, convolution and pooling activations are stored channels-last
// (H, W, C), so a flatten after them orders values by (h, w, c).
//
// A Spec is JSON-serializable and part of every model file.
//
// An external model (IsExternal) has neither Input nor Layers: External
// lists its named tensors, and its flat parameter vector is their
// concatenation in that order. fedge aggregates, encodes and stores it
// like any other but trains it only through an external trainer.
type Spec struct {
	Name   string      `json:"name,omitempty"`
	Input  []int       `json:"input,omitempty"`
	Layers []LayerSpec `json:"layers,omitempty"`
	// External is the layout of a model the engine does not run (see
	// ExternalSpec); empty for engine models.
	External []ExternalTensor `json:"external,omitempty"`
	// Columns, if set, name the raw columns of a tabular model's 1-D input
	// and how each becomes input values (InputColumn): cleaning, clipping
	// and one-hot encoding decided by a job travel with the model.
	Columns []InputColumn `json:"columns,omitempty"`
	// Text, set for a model of raw text, says how text becomes the model's
	// input of Input[0] token ids (TextSpec); its first layer is then an
	// embedding_bag. Nil for models of numbers.
	Text *TextSpec `json:"text,omitempty"`
	// Quantize asks whoever serves the model to run it quantized:
	// QuantizeInt8 ("int8") or "" for float32. It is a serving directive
	// (see Quantize); training and the float engine ignore it, and the
	// parameters stay float32.
	Quantize string `json:"quantize,omitempty"`
	// Calibration, with Quantize, declares the examples whoever serves
	// the model calibrates its activation scales on: CalibrationHeldOut
	// (or "") for its own held-out data, else the path of a file on the
	// serving host of little-endian float32 rows in the model's input
	// layout (relative paths are the host's to resolve; an agent resolves
	// them in its data directory).
	Calibration string `json:"calibration,omitempty"`
}

// CalibrationHeldOut is the Spec.Calibration that calibrates a quantized
// model on the server's held-out data, the default.
const CalibrationHeldOut = "held-out"

// maxCalibrationPath bounds the length of a declared calibration path.
const maxCalibrationPath = 4096

// layerPlan is a validated layer: its spec, shapes and place in the flat
// parameter vector.
type layerPlan struct {
	spec       LayerSpec
	in, out    []int
	inSize     int // product of in
	outSize    int // product of out
	offset     int // first parameter in Model.Params
	params     int // number of parameters
	weights    int // of which weights (the rest are biases)
	fanIn      int
	fanOut     int
	he         bool // weights initialized for a following ReLU
	paramLayer bool
	chLast     bool // a 3-D input is stored channels-last (H, W, C) inside the model
}

// plan validates s and lays out its layers.
func (s Spec) plan() ([]layerPlan, int, error) {
	bad := func(format string, args ...any) ([]layerPlan, int, error) {
		return nil, 0, fmt.Errorf("tensor.Spec.Validate: %s: %w", fmt.Sprintf(format, args...), ErrInvalidSpec)
	}
	if s.IsExternal() {
		n, err := s.planExternal()
		return nil, n, err
	}
	if len(s.Input) == 0 || len(s.Input) > 3 {
		return bad("input shape %v must have 1 to 3 dimensions", s.Input)
	}
	inSize, ok := product(s.Input)
	if !ok {
		return bad("input shape %v must have positive dimensions and at most %d values", s.Input, MaxActivation)
	}
	if len(s.Layers) == 0 {
		return bad("no layers")
	}
	if err := s.checkColumns(inSize); err != nil {
		return bad("%v", err)
	}
	if len(s.Layers) > MaxLayers {
		return bad("%d layers, more than %d", len(s.Layers), MaxLayers)
	}
	plans := make([]layerPlan, len(s.Layers))
	shape := append([]int(nil), s.Input...)
	size := inSize
	total := 0
	for i, ls := range s.Layers {
		where := fmt.Sprintf("layer %d (%s)", i, ls.Type)
		p := layerPlan{spec: ls, in: shape, inSize: size}
		if err := checkFields(ls); err != nil {
			return bad("%s: %v", where, err)
		}
		switch ls.Type {
		case LayerDense, LayerGCNConv:
			if len(shape) != 1 {
				return bad("%s: input shape %v is not a vector; add a flatten layer before it", where, shape)
			}
			if ls.Units <= 0 || ls.Units > MaxActivation {
				return bad("%s: units %d outside [1, %d]", where, ls.Units, MaxActivation)
			}
			p.out = []int{ls.Units}
			p.fanIn, p.fanOut = size, ls.Units
			w := float64(size) * float64(ls.Units)
			if w+float64(ls.Units) > MaxParams {
				return bad("%s: %d×%d weights exceed %d parameters", where, size, ls.Units, MaxParams)
			}
			p.weights = size * ls.Units
			p.params = p.weights + ls.Units
			p.paramLayer = true
		case LayerConv2D:
			if len(shape) != 3 {
				return bad("%s: input shape %v is not [C, H, W]", where, shape)
			}
			c, h, w := shape[0], shape[1], shape[2]
			k, st, pad := ls.Kernel, ls.Stride, ls.Padding
			if st == 0 {
				st = 1
			}
			if ls.Filters <= 0 || ls.Filters > MaxActivation {
				return bad("%s: filters %d outside [1, %d]", where, ls.Filters, MaxActivation)
			}
			if k <= 0 || k > 1<<12 || st < 0 || st > 1<<12 || pad < 0 || pad >= k {
				return bad("%s: kernel %d, stride %d, padding %d: need kernel >= 1, stride >= 1, 0 <= padding < kernel", where, k, ls.Stride, pad)
			}
			if h+2*pad < k || w+2*pad < k {
				return bad("%s: kernel %d larger than padded input %dx%d", where, k, h+2*pad, w+2*pad)
			}
			oh, ow := (h+2*pad-k)/st+1, (w+2*pad-k)/st+1
			p.out = []int{ls.Filters, oh, ow}
			p.fanIn, p.fanOut = c*k*k, ls.Filters*k*k
			if float64(c)*float64(k*k) > MaxActivation {
				return bad("%s: %d×%d×%d patch exceeds %d values", where, c, k, k, MaxActivation)
			}
			if float64(p.fanIn)*float64(ls.Filters)+float64(ls.Filters) > MaxParams {
				return bad("%s: weights exceed %d parameters", where, MaxParams)
			}
			p.weights = p.fanIn * ls.Filters
			p.params = p.weights + ls.Filters
			p.paramLayer = true
		case LayerMaxPool:
			if len(shape) != 3 {
				return bad("%s: input shape %v is not [C, H, W]", where, shape)
			}
			k, st := ls.Kernel, ls.Stride
			if st == 0 {
				st = k
			}
			if k <= 0 || st <= 0 || k > shape[1] || k > shape[2] {
				return bad("%s: kernel %d, stride %d do not fit input %v", where, k, st, shape)
			}
			p.out = []int{shape[0], (shape[1]-k)/st + 1, (shape[2]-k)/st + 1}
		case LayerFlatten:
			p.out = []int{size}
		case LayerReLU:
			p.out = shape
		case LayerDropout:
			if !(ls.Rate >= 0 && ls.Rate < 1) {
				return bad("%s: rate %v outside [0, 1)", where, ls.Rate)
			}
			p.out = shape
		case LayerStandardize:
			if err := checkStandardize(ls, size); err != nil {
				return bad("%s: %v", where, err)
			}
			p.out = shape
		case LayerEmbeddingBag:
			if err := planEmbeddingBag(&p, i, ls, shape); err != nil {
				return bad("%s: %v", where, err)
			}
		default:
			return bad("%s: unknown layer type %q (known: %s)", where, ls.Type,
				strings.Join([]string{LayerDense, LayerReLU, LayerConv2D, LayerMaxPool, LayerFlatten, LayerDropout, LayerGCNConv, LayerStandardize, LayerEmbeddingBag}, ", "))
		}
		out, ok := product(p.out)
		if !ok {
			return bad("%s: output shape %v exceeds %d values", where, p.out, MaxActivation)
		}
		p.outSize = out
		p.offset = total
		total += p.params
		if total > MaxParams {
			return bad("%s: model exceeds %d parameters", where, MaxParams)
		}
		plans[i] = p
		shape, size = p.out, out
	}
	if len(shape) != 1 {
		return bad("output shape %v is not a vector of class logits; add flatten and dense layers", shape)
	}
	if s.Text != nil {
		if err := s.Text.validate(s); err != nil {
			return bad("%v", err)
		}
	}
	if s.Quantize != "" && s.Quantize != QuantizeInt8 {
		return bad("quantize %q: want %q or nothing", s.Quantize, QuantizeInt8)
	}
	if s.Calibration != "" && (s.Quantize == "" || len(s.Calibration) > maxCalibrationPath || strings.ContainsRune(s.Calibration, 0)) {
		return bad("calibration %q: a quantized model's %q or a path of at most %d bytes", s.Calibration, CalibrationHeldOut, maxCalibrationPath)
	}
	// Convolution and pooling store every 3-D activation channels-last,
	// the model's input included (for one channel the layouts coincide).
	conv := false
	for _, p := range plans {
		conv = conv || p.spec.Type == LayerConv2D || p.spec.Type == LayerMaxPool
	}
	for i := range plans {
		plans[i].chLast = conv && len(plans[i].in) == 3
	}
	// He initialization for weights whose output goes (through shape-only
	// layers) into a ReLU, Glorot otherwise.
	for i := range plans {
		if !plans[i].paramLayer {
			continue
		}
		for j := i + 1; j < len(plans); j++ {
			t := plans[j].spec.Type
			if t == LayerReLU {
				plans[i].he = true
			}
			if t != LayerFlatten && t != LayerDropout && t != LayerMaxPool {
				break
			}
		}
	}
	return plans, total, nil
}

// checkFields rejects fields a layer type does not use, so that a typo in
// a hand-written spec is an error rather than silently ignored.
func checkFields(ls LayerSpec) error {
	var allowed string
	switch ls.Type {
	case LayerDense, LayerGCNConv:
		allowed = "units"
	case LayerConv2D:
		allowed = "filters kernel stride padding"
	case LayerMaxPool:
		allowed = "kernel stride"
	case LayerDropout:
		allowed = "rate"
	case LayerStandardize:
		allowed = "shift scale"
	case LayerEmbeddingBag:
		allowed = "vocab dim"
	}
	set := map[string]bool{
		"units": ls.Units != 0, "filters": ls.Filters != 0, "kernel": ls.Kernel != 0,
		"stride": ls.Stride != 0, "padding": ls.Padding != 0, "rate": ls.Rate != 0,
		"shift": len(ls.Shift) > 0, "scale": len(ls.Scale) > 0,
		"vocab": ls.Vocab != 0, "dim": ls.Dim != 0,
	}
	for _, f := range []string{"units", "filters", "kernel", "stride", "padding", "rate", "shift", "scale", "vocab", "dim"} {
		if set[f] && !strings.Contains(allowed, f) {
			return fmt.Errorf("field %q does not apply to %s", f, ls.Type)
		}
	}
	return nil
}

// checkStandardize checks a standardize layer's constants against its
// input size. Scale must be positive: a standardization multiplies by
// 1/σ, so zero (which would erase the feature) or a negative value is a
// bug in whoever computed it; a feature of zero variance should get scale 1.
func checkStandardize(ls LayerSpec, size int) error {
	if len(ls.Shift) != size || len(ls.Scale) != size {
		return fmt.Errorf("shift has %d values and scale %d; the input has %d", len(ls.Shift), len(ls.Scale), size)
	}
	for j, v := range ls.Shift {
		if v != v || math.IsInf(float64(v), 0) {
			return fmt.Errorf("shift[%d] = %v is not finite", j, v)
		}
	}
	for j, v := range ls.Scale {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("scale[%d] = %v: need a finite value > 0 (1/σ; use 1 for a feature of zero variance)", j, v)
		}
	}
	return nil
}

// product returns the product of dims and whether every dim is positive
// and the product at most MaxActivation.
func product(dims []int) (int, bool) {
	p := 1
	for _, d := range dims {
		if d <= 0 || d > MaxActivation {
			return 0, false
		}
		p *= d
		if p > MaxActivation {
			return 0, false
		}
	}
	return p, true
}

// Validate reports whether s describes a model, with an error that names
// the offending layer. It wraps ErrInvalidSpec.
func (s Spec) Validate() error {
	_, _, err := s.plan()
	return err
}

// ParamCount returns the length of the flat parameter vector of a model
// built from s.
func (s Spec) ParamCount() (int, error) {
	_, n, err := s.plan()
	return n, err
}

// Shapes returns the output shape of one example after each layer, in
// the Spec's [C, H, W] notation.
func (s Spec) Shapes() ([][]int, error) {
	plans, _, err := s.plan()
	if err != nil {
		return nil, err
	}
	out := make([][]int, len(plans))
	for i, p := range plans {
		out[i] = append([]int(nil), p.out...)
	}
	return out, nil
}

// Features returns the number of values in one input example (0 for an
// external model).
func (s Spec) Features() int {
	if s.IsExternal() {
		return 0
	}
	n, _ := product(s.Input)
	return n
}

// Classes returns the number of outputs (class logits) of the last layer,
// or 0 if s is invalid or external.
func (s Spec) Classes() int {
	p, _, err := s.plan()
	if err != nil || len(p) == 0 {
		return 0
	}
	return p[len(p)-1].outSize
}

// IsGraph reports whether s has graph convolution layers, which need a
// Graph (TrainGraph, EvaluateGraph, PredictGraph).
func (s Spec) IsGraph() bool {
	for _, l := range s.Layers {
		if l.Type == LayerGCNConv {
			return true
		}
	}
	return false
}

// String returns the spec as compact JSON.
func (s Spec) String() string {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Sprintf("tensor.Spec(%v)", err)
	}
	return string(b)
}

// clone returns a deep copy of s.
func (s Spec) clone() Spec {
	c := Spec{Name: s.Name, Input: append([]int(nil), s.Input...), Layers: append([]LayerSpec(nil), s.Layers...), External: cloneLayout(s.External), Columns: cloneColumns(s.Columns)}
	if s.Text != nil {
		t := *s.Text
		c.Text = &t
	}
	c.Quantize, c.Calibration = s.Quantize, s.Calibration
	for i := range c.Layers {
		l := &c.Layers[i]
		if l.Shift != nil {
			l.Shift = append([]float32{}, l.Shift...)
		}
		if l.Scale != nil {
			l.Scale = append([]float32{}, l.Scale...)
		}
	}
	return c
}

// Standardized returns a copy of s whose first layer standardizes the raw
// input: y_j = (x_j − shift[j])·scale[j] for each input value j, in the
// Spec's input layout ([C, H, W] order for images). It is how
// preprocessing learned outside the model, such as per-feature means and
// variances gathered by secure sum (shift = mean, scale = 1/σ), travels
// inside it: training sees standardized values while the model still
// takes and predicts from raw inputs. The layer has no parameters, so the
// flat parameter vector, its length and layout are those of s.
//
// If s already begins with a standardize layer it is replaced, not
// stacked. shift and scale are copied. The result is validated: lengths
// other than s's input size, non-finite values or a scale <= 0 give an
// error wrapping ErrInvalidSpec.
func (s Spec) Standardized(shift, scale []float32) (Spec, error) {
	c := s.clone()
	std := LayerSpec{Type: LayerStandardize, Shift: append([]float32{}, shift...), Scale: append([]float32{}, scale...)}
	if len(c.Layers) > 0 && c.Layers[0].Type == LayerStandardize {
		c.Layers[0] = std
	} else {
		c.Layers = append([]LayerSpec{std}, c.Layers...)
	}
	if err := c.Validate(); err != nil {
		return Spec{}, fmt.Errorf("tensor.Spec.Standardized: %w", err)
	}
	return c, nil
}

// Names accepted by NamedSpec.
const (
	SpecLogReg = "logreg" // multinomial logistic regression on MNIST, 784→10
	Spec2NN    = "2nn"    // FedAvg paper's 784-200-200-10 ReLU MLP, 199,210 parameters
	SpecCNN    = "cnn"    // FedAvg paper's CNN, 1,663,370 parameters
	SpecGCN    = "gcn"    // 2-layer GCN sized for Cora: GCNSpec(1433, 16, 7)
)

// SpecNames lists the names NamedSpec knows.
func SpecNames() []string { return []string{SpecLogReg, Spec2NN, SpecCNN, SpecGCN} }

// NamedSpec returns one of the models named in the FedAvg paper, sized for
// MNIST (input [1, 28, 28], 10 classes), or the Cora-sized GCN:
//
//	logreg  flatten, dense 10                                  (7,850 parameters)
//	2nn     flatten, dense 200, relu, dense 200, relu, dense 10 (199,210)
//	cnn     conv 5x5x32 same, relu, maxpool 2, conv 5x5x64 same, relu,
//	        maxpool 2, flatten, dense 512, relu, dense 10       (1,663,370)
//	gcn     GCNSpec(1433, 16, 7)                                (23,063)
func NamedSpec(name string) (Spec, error) {
	mnist := []int{1, 28, 28}
	switch name {
	case SpecLogReg:
		return Spec{Name: name, Input: mnist, Layers: []LayerSpec{
			{Type: LayerFlatten}, {Type: LayerDense, Units: 10},
		}}, nil
	case Spec2NN:
		return Spec{Name: name, Input: mnist, Layers: []LayerSpec{
			{Type: LayerFlatten},
			{Type: LayerDense, Units: 200}, {Type: LayerReLU},
			{Type: LayerDense, Units: 200}, {Type: LayerReLU},
			{Type: LayerDense, Units: 10},
		}}, nil
	case SpecCNN:
		return Spec{Name: name, Input: mnist, Layers: []LayerSpec{
			{Type: LayerConv2D, Filters: 32, Kernel: 5, Padding: 2}, {Type: LayerReLU},
			{Type: LayerMaxPool, Kernel: 2},
			{Type: LayerConv2D, Filters: 64, Kernel: 5, Padding: 2}, {Type: LayerReLU},
			{Type: LayerMaxPool, Kernel: 2},
			{Type: LayerFlatten},
			{Type: LayerDense, Units: 512}, {Type: LayerReLU},
			{Type: LayerDense, Units: 10},
		}}, nil
	case SpecGCN:
		return GCNSpec(1433, 16, 7), nil
	}
	return Spec{}, fmt.Errorf("tensor.NamedSpec(%q): %w (known: logreg, 2nn, cnn, gcn)", name, ErrUnknownSpec)
}

// GCNSpec returns Kipf and Welling's two-layer graph convolutional network
// for node classification: dropout 0.5, GCN to hidden units, ReLU,
// dropout 0.5, GCN to classes.
func GCNSpec(features, hidden, classes int) Spec {
	return Spec{Name: SpecGCN, Input: []int{features}, Layers: []LayerSpec{
		{Type: LayerDropout, Rate: 0.5},
		{Type: LayerGCNConv, Units: hidden}, {Type: LayerReLU},
		{Type: LayerDropout, Rate: 0.5},
		{Type: LayerGCNConv, Units: classes},
	}}
}

// heBound and glorotBound are the half-widths of the uniform distributions
// of He and Glorot initialization.
func heBound(fanIn int) float64 { return math.Sqrt(6 / float64(fanIn)) }
func glorotBound(fanIn, fanOut int) float64 {
	return math.Sqrt(6 / float64(fanIn+fanOut))
}
