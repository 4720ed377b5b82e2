package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/fedge/fedge/tensor"
	pb "github.com/fedge/fedge/tensor/onnx/internal/onnxpb"
	"github.com/fedge/fedge/tensor/statedict"
)

// The graph Export writes.
const (
	// Opset is the version of the default ONNX operator set Export
	// targets.
	Opset = 13
	// IRVersion is the ONNX IR version of exported files (ONNX 1.8's,
	// the first with opset 13).
	IRVersion = 7
	// InputName is the graph input: float32 [N, ...Spec.Input], N symbolic.
	InputName = "input"
	// OutputName is the graph output: float32 [N, classes], the softmax of
	// the logits.
	OutputName = "probabilities"
	// BatchDim is the symbolic name of the batch dimension.
	BatchDim = "N"
	// producer is the ModelProto's producer_name.
	producer = "fedge"
)

// Sentinel errors, for errors.Is.
var (
	// ErrUnsupported reports a model that has no equivalent in the other
	// format: on export a layer type ONNX's standard operators cannot
	// express (gcnconv) or an external model; on import an operator,
	// attribute or graph shape the engine does not run. The message names
	// the layer or the operator and its node.
	ErrUnsupported = errors.New("onnx: not expressible")
	// ErrFormat reports bytes that are not a well-formed ONNX model: bad
	// protobuf, missing graph, tensors whose data does not match their
	// shape, a graph whose nodes do not form a chain.
	ErrFormat = errors.New("onnx: malformed model")
	// ErrTooLarge reports a file, graph or tensor beyond the import
	// limits, detected before the memory is allocated.
	ErrTooLarge = errors.New("onnx: exceeds size limit")
	// ErrExternalData reports a tensor whose data lives outside the file
	// (data_location EXTERNAL): import reads one file and nothing else.
	ErrExternalData = errors.New("onnx: tensor data outside the file")
)

// Export returns m as a serialized ONNX ModelProto (IR version IRVersion,
// default operator set version Opset) computing the same predictions as
// m.Predict: input InputName of shape [N, ...Spec.Input] in [C, H, W]
// order, output OutputName of shape [N, classes] ending in a Softmax.
// See the package doc for the operator each layer becomes.
//
// A model with a gcnconv layer, or an external model, is refused with
// ErrUnsupported.
func Export(m *tensor.Model) ([]byte, error) {
	mp, err := exportProto(m)
	if err != nil {
		return nil, fmt.Errorf("onnx.Export: %w", err)
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		return nil, fmt.Errorf("onnx.Export: %w", err)
	}
	return b, nil
}

// exportProto builds the ModelProto of m.
func exportProto(m *tensor.Model) (*pb.ModelProto, error) {
	spec := m.Spec
	if spec.IsExternal() {
		return nil, fmt.Errorf("model %q is external: its layout names tensors, not operators: %w", spec.Name, ErrUnsupported)
	}
	for i, l := range spec.Layers {
		if l.Type == tensor.LayerGCNConv {
			return nil, fmt.Errorf("layer %d (gcnconv): a graph convolution multiplies by the normalized adjacency of a graph given at run time, which a standard ONNX graph over one input tensor cannot take: %w", i, ErrUnsupported)
		}
		if l.Type == tensor.LayerEmbeddingBag {
			return nil, fmt.Errorf("layer %d (embedding_bag): fedge does not export the mean of hashed-token embeddings over a padded bag of float32 ids to ONNX, nor the text tokenizer in front of it: %w", i, ErrUnsupported)
		}
	}
	layout, sd, err := statedict.FromModel(m)
	if err != nil {
		return nil, err
	}
	tensors := make(map[string][]float32, len(layout))
	shapes := make(map[string][]int, len(layout))
	off := 0
	for _, t := range layout {
		tensors[t.Name] = sd[off : off+t.Size()]
		shapes[t.Name] = t.Shape
		off += t.Size()
	}
	g := &pb.GraphProto{Name: proto.String(graphName(spec.Name))}
	cur := InputName
	shape := spec.Input
	outs, err := spec.Shapes()
	if err != nil {
		return nil, err
	}
	init := func(name string, dims []int, vals []float32) {
		g.Initializer = append(g.Initializer, floatTensor(name, dims, vals))
	}
	node := func(i int, op string, inputs []string, attrs ...*pb.AttributeProto) {
		out := strconv.Itoa(i) + "." + op
		g.Node = append(g.Node, &pb.NodeProto{
			Name: proto.String(out), OpType: proto.String(op),
			Input: append([]string{cur}, inputs...), Output: []string{out}, Attribute: attrs,
		})
		cur = out
	}
	for i, l := range spec.Layers {
		p := strconv.Itoa(i) + "."
		switch l.Type {
		case tensor.LayerDense:
			w, b := p+"weight", p+"bias"
			init(w, shapes[w], tensors[w])
			init(b, shapes[b], tensors[b])
			node(i, "Gemm", []string{w, b}, intAttr("transB", 1))
		case tensor.LayerConv2D:
			w, b := p+"weight", p+"bias"
			init(w, shapes[w], tensors[w])
			init(b, shapes[b], tensors[b])
			k, s, pad := int64(l.Kernel), int64(max(l.Stride, 1)), int64(l.Padding)
			node(i, "Conv", []string{w, b}, intsAttr("kernel_shape", k, k), intsAttr("strides", s, s), intsAttr("pads", pad, pad, pad, pad))
		case tensor.LayerMaxPool:
			k, s := int64(l.Kernel), int64(l.Stride)
			if s == 0 {
				s = k
			}
			node(i, "MaxPool", nil, intsAttr("kernel_shape", k, k), intsAttr("strides", s, s))
		case tensor.LayerReLU:
			node(i, "Relu", nil)
		case tensor.LayerFlatten:
			node(i, "Flatten", nil, intAttr("axis", 1))
		case tensor.LayerDropout:
			// The identity at inference: no node.
		case tensor.LayerStandardize:
			shift, scale := l.Shift, l.Scale
			if order, err := statedict.VectorOrder(spec, i); err != nil {
				return nil, err
			} else if order != nil {
				shift, scale = permute(shift, order), permute(scale, order)
			}
			init(p+"shift", shape, shift)
			init(p+"scale", shape, scale)
			node(i, "Sub", []string{p + "shift"})
			node(i, "Mul", []string{p + "scale"})
		default:
			return nil, fmt.Errorf("layer %d: type %q: %w", i, l.Type, ErrUnsupported)
		}
		shape = outs[i]
	}
	g.Node = append(g.Node, &pb.NodeProto{
		Name: proto.String("softmax"), OpType: proto.String("Softmax"),
		Input: []string{cur}, Output: []string{OutputName}, Attribute: []*pb.AttributeProto{intAttr("axis", 1)},
	})
	g.Input = []*pb.ValueInfoProto{valueInfo(InputName, spec.Input)}
	g.Output = []*pb.ValueInfoProto{valueInfo(OutputName, []int{m.Classes()})}
	return &pb.ModelProto{
		IrVersion:    proto.Int64(IRVersion),
		ProducerName: proto.String(producer),
		OpsetImport:  []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		DocString:    proto.String("fedge model " + strconv.Quote(spec.Name) + "; input " + InputName + " [N, " + dims(spec.Input) + "], output " + OutputName + " [N, classes]"),
		Graph:        g,
	}, nil
}

// graphName is the graph's name: the spec's, or "fedge" for an unnamed one.
func graphName(name string) string {
	if name == "" {
		return producer
	}
	return name
}

func dims(d []int) string {
	s := ""
	for i, v := range d {
		if i > 0 {
			s += ", "
		}
		s += strconv.Itoa(v)
	}
	return s
}

// permute returns v[order[j]] for each j.
func permute(v []float32, order []int) []float32 {
	out := make([]float32, len(order))
	for j, o := range order {
		out[j] = v[o]
	}
	return out
}

// floatTensor returns an initializer holding vals as little-endian raw
// data.
func floatTensor(name string, shape []int, vals []float32) *pb.TensorProto {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	d := make([]int64, len(shape))
	for i, v := range shape {
		d[i] = int64(v)
	}
	return &pb.TensorProto{Name: proto.String(name), Dims: d, DataType: proto.Int32(int32(pb.TensorProto_FLOAT)), RawData: raw}
}

// valueInfo describes a float32 tensor [N, shape...].
func valueInfo(name string, shape []int) *pb.ValueInfoProto {
	ds := []*pb.TensorShapeProto_Dimension{{Value: &pb.TensorShapeProto_Dimension_DimParam{DimParam: BatchDim}}}
	for _, v := range shape {
		ds = append(ds, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}})
	}
	return &pb.ValueInfoProto{Name: proto.String(name), Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{TensorType: &pb.TypeProto_Tensor{
		ElemType: proto.Int32(int32(pb.TensorProto_FLOAT)), Shape: &pb.TensorShapeProto{Dim: ds},
	}}}}
}

func intAttr(name string, v int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func intsAttr(name string, v ...int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INTS.Enum(), Ints: v}
}
