package onnx

import (
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/fedge/fedge/tensor"
	pb "github.com/fedge/fedge/tensor/onnx/internal/onnxpb"
	"github.com/fedge/fedge/tensor/statedict"
)

// Import limits, on top of the caller's byte limit and tensor's Spec
// limits.
const (
	// MinOpset and MaxOpset bound the default-domain operator set versions
	// Import reads; the operators it maps mean the same throughout.
	MinOpset = 9
	MaxOpset = 21
	// MaxNodes bounds the nodes of an imported graph.
	MaxNodes = 4 * tensor.MaxLayers
	// MaxInitializers bounds the constant tensors of an imported graph.
	MaxInitializers = 4 * tensor.MaxLayers
	// MaxStandardizeValues bounds the values of all standardize layers of
	// an imported model together: a Sub, Mul or Div by a scalar expands
	// to one shift and scale per activation value, so a small file could
	// otherwise ask for gigabytes.
	MaxStandardizeValues = 1 << 22
)

// Import reads an ONNX model (a serialized ModelProto of at most limit
// bytes, limit > 0) and returns the engine model that computes the same
// predictions: its Spec is built from the graph's operators and its
// parameters from the graph's initializers, converted to the engine's
// layouts. The graph must be a chain from one float input [N, ...] to one
// output, made of the operators listed in the package doc; any other
// operator is refused with ErrUnsupported, naming the operator and its
// node. Tensors with external data are refused (ErrExternalData).
//
// Import never panics on malformed input; it reports ErrFormat,
// ErrTooLarge, ErrUnsupported or ErrExternalData.
func Import(r io.Reader, limit int64) (*tensor.Model, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("onnx.Import: limit %d: need a positive byte limit: %w", limit, ErrTooLarge)
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("onnx.Import: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("onnx.Import: file exceeds the %d-byte limit: %w", limit, ErrTooLarge)
	}
	var mp pb.ModelProto
	if err := proto.Unmarshal(b, &mp); err != nil {
		return nil, fmt.Errorf("onnx.Import: %v: %w", err, ErrFormat)
	}
	b = nil
	m, err := importProto(&mp)
	if err != nil {
		return nil, fmt.Errorf("onnx.Import: %w", err)
	}
	return m, nil
}

// importer is the state of one import: the graph's constants and the
// spec and canonical (state_dict layout) tensors built so far.
type importer struct {
	opset  int64
	inits  map[string]*pb.TensorProto
	consts map[string]*pb.TensorProto // outputs of Constant nodes
	spec   tensor.Spec
	shape  []int     // current activation shape, without the batch
	params []float32 // state_dict layout, in layer order
	// stdValues counts the values of the standardize layers so far.
	stdValues int
	// openStd is the index of a standardize layer made from a Sub that a
	// following Mul or Div may complete, or -1.
	openStd int
}

func importProto(mp *pb.ModelProto) (*tensor.Model, error) {
	opset, err := defaultOpset(mp)
	if err != nil {
		return nil, err
	}
	g := mp.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("no graph: %w", ErrFormat)
	}
	if len(g.GetNode()) > MaxNodes || len(g.GetInitializer()) > MaxInitializers {
		return nil, fmt.Errorf("%d nodes and %d initializers: at most %d and %d: %w", len(g.GetNode()), len(g.GetInitializer()), MaxNodes, MaxInitializers, ErrTooLarge)
	}
	im := &importer{opset: opset, inits: map[string]*pb.TensorProto{}, consts: map[string]*pb.TensorProto{}, openStd: -1}
	for _, t := range g.GetInitializer() {
		if err := checkLocation(t); err != nil {
			return nil, err
		}
		if _, dup := im.inits[t.GetName()]; dup {
			return nil, fmt.Errorf("initializer %q appears twice: %w", t.GetName(), ErrFormat)
		}
		im.inits[t.GetName()] = t
	}
	cur, err := im.input(g)
	if err != nil {
		return nil, err
	}
	im.spec.Name = specName(g.GetName())
	nodes := g.GetNode()
	ended := false
	for k := 0; k < len(nodes); k++ {
		n := nodes[k]
		where := fmt.Sprintf("operator %q (node %q)", n.GetOpType(), n.GetName())
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			return nil, fmt.Errorf("%s of domain %q: only the default ONNX domain is supported: %w", where, d, ErrUnsupported)
		}
		if n.GetOpType() == "Constant" {
			if err := im.constant(n); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			continue
		}
		if ended {
			return nil, fmt.Errorf("%s after the final Softmax: %w", where, ErrUnsupported)
		}
		if len(n.GetInput()) == 0 || n.GetInput()[0] != cur {
			return nil, fmt.Errorf("%s does not take the previous node's output %q as its first input: only chains of operators are supported: %w", where, cur, ErrUnsupported)
		}
		if len(n.GetOutput()) == 0 || n.GetOutput()[0] == "" {
			return nil, fmt.Errorf("%s has no output: %w", where, ErrFormat)
		}
		// Extra outputs (a Dropout's mask) may exist but nothing may read
		// them: every input is either the chain's value or a constant.
		skip, end, err := im.node(n, nodes[k+1:])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		cur = n.GetOutput()[0]
		if skip {
			cur = nodes[k+1].GetOutput()[0]
			k++
		}
		ended = end
	}
	if outs := g.GetOutput(); len(outs) != 1 || outs[0].GetName() != cur {
		return nil, fmt.Errorf("the graph must have one output, the last node's %q: %w", cur, ErrUnsupported)
	}
	return im.model()
}

// defaultOpset returns the version of the default operator set mp imports.
func defaultOpset(mp *pb.ModelProto) (int64, error) {
	for _, o := range mp.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			v := o.GetVersion()
			if v < MinOpset || v > MaxOpset {
				return 0, fmt.Errorf("opset version %d: supported %d to %d: %w", v, MinOpset, MaxOpset, ErrUnsupported)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("no default-domain opset import: %w", ErrFormat)
}

// specName keeps a short printable graph name as the Spec's name.
func specName(name string) string {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) {
		return "onnx"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "onnx"
		}
	}
	return name
}

// input finds the graph's one data input (graph inputs that are not
// initializers) and sets the spec's input shape from its [N, ...] type.
func (im *importer) input(g *pb.GraphProto) (string, error) {
	var data []*pb.ValueInfoProto
	for _, v := range g.GetInput() {
		if _, ok := im.inits[v.GetName()]; !ok {
			data = append(data, v)
		}
	}
	if len(data) != 1 {
		return "", fmt.Errorf("the graph has %d data inputs: need exactly one: %w", len(data), ErrUnsupported)
	}
	v := data[0]
	tt := v.GetType().GetTensorType()
	if tt == nil || tt.GetElemType() != int32(pb.TensorProto_FLOAT) {
		return "", fmt.Errorf("input %q is not a float32 tensor: %w", v.GetName(), ErrUnsupported)
	}
	ds := tt.GetShape().GetDim()
	if len(ds) < 2 || len(ds) > 4 {
		return "", fmt.Errorf("input %q has %d dimensions: need [N, features], [N, H, W] or [N, C, H, W]: %w", v.GetName(), len(ds), ErrUnsupported)
	}
	for i, d := range ds[1:] {
		dv := d.GetDimValue()
		if dv <= 0 || dv > tensor.MaxActivation {
			return "", fmt.Errorf("input %q: dimension %d must be a fixed size in [1, %d]: %w", v.GetName(), i+1, tensor.MaxActivation, ErrUnsupported)
		}
		im.spec.Input = append(im.spec.Input, int(dv))
	}
	if _, ok := shapeSize(im.spec.Input); !ok {
		return "", fmt.Errorf("input %q: shape %v exceeds %d values: %w", v.GetName(), im.spec.Input, tensor.MaxActivation, ErrTooLarge)
	}
	im.shape = slices.Clone(im.spec.Input)
	return v.GetName(), nil
}

// shapeSize returns the product of dims if every dim is positive and the
// product at most tensor.MaxActivation.
func shapeSize(dims []int) (int, bool) {
	p := 1
	for _, d := range dims {
		if d <= 0 || d > tensor.MaxActivation {
			return 0, false
		}
		p *= d
		if p > tensor.MaxActivation {
			return 0, false
		}
	}
	return p, true
}

// model validates the spec and builds the model from the state_dict
// tensors gathered.
func (im *importer) model() (*tensor.Model, error) {
	if len(im.spec.Layers) == 0 {
		return nil, fmt.Errorf("no layers: %w", ErrUnsupported)
	}
	if err := im.spec.Validate(); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrUnsupported)
	}
	// A standardize on a vector the engine stores channels-last keeps its
	// constants in that order.
	for i := range im.spec.Layers {
		l := &im.spec.Layers[i]
		if l.Type != tensor.LayerStandardize {
			continue
		}
		order, err := statedict.VectorOrder(im.spec, i)
		if err != nil {
			return nil, err
		}
		if order != nil {
			shift, scale := make([]float32, len(order)), make([]float32, len(order))
			for j, o := range order {
				shift[o], scale[o] = l.Shift[j], l.Scale[j]
			}
			l.Shift, l.Scale = shift, scale
		}
	}
	m, err := statedict.ToModel(im.spec, im.params)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrFormat)
	}
	return m, nil
}
