package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/fedge/fedge/tensor"
	pb "github.com/fedge/fedge/tensor/onnx/internal/onnxpb"
)

// node maps one node of the chain onto the spec. rest are the nodes after
// it: a MatMul consumes a following Add of its bias (skip). end reports a
// final Softmax or LogSoftmax.
func (im *importer) node(n *pb.NodeProto, rest []*pb.NodeProto) (skip, end bool, err error) {
	op := n.GetOpType()
	std := im.openStd
	im.openStd = -1
	switch op {
	case "Gemm":
		return false, false, im.gemm(n)
	case "MatMul":
		return im.matmul(n, rest)
	case "Conv":
		return false, false, im.conv(n)
	case "MaxPool":
		return false, false, im.maxPool(n)
	case "Relu":
		if err := im.arity(n, 1); err != nil {
			return false, false, err
		}
		im.add(tensor.LayerSpec{Type: tensor.LayerReLU}, im.shape)
	case "Flatten":
		return false, false, im.flatten(n)
	case "Reshape":
		return false, false, im.reshape(n)
	case "Dropout":
		return false, false, im.dropout(n)
	case "Identity":
		return false, false, im.arity(n, 1)
	case "Sub", "Mul", "Div":
		return false, false, im.standardize(n, std)
	case "Softmax", "LogSoftmax":
		if err := im.arity(n, 1); err != nil {
			return false, false, err
		}
		if len(im.shape) != 1 {
			return false, false, fmt.Errorf("over a %v activation: need a vector of class scores: %w", im.shape, ErrUnsupported)
		}
		axis := int64(-1)
		if im.opset < 13 {
			axis = 1
		}
		if a, ok := attrInt(n, "axis"); ok {
			axis = a
		}
		if axis != 1 && axis != -1 {
			return false, false, fmt.Errorf("axis %d: need the class axis (1 or -1): %w", axis, ErrUnsupported)
		}
		return false, true, nil
	default:
		return false, false, fmt.Errorf("not among the operators the engine runs (Gemm, MatMul, Add after MatMul, Conv, MaxPool, Relu, Flatten, Reshape to flatten, Dropout, Identity, Sub/Mul/Div by constants, final Softmax or LogSoftmax): %w", ErrUnsupported)
	}
	return false, false, nil
}

// add appends a layer whose output shape is out.
func (im *importer) add(l tensor.LayerSpec, out []int) {
	im.spec.Layers = append(im.spec.Layers, l)
	im.shape = out
}

// arity checks that n has at most max inputs and one used output.
func (im *importer) arity(n *pb.NodeProto, max int) error {
	if len(n.GetInput()) > max {
		return fmt.Errorf("%d inputs, at most %d: %w", len(n.GetInput()), max, ErrUnsupported)
	}
	return nil
}

// vectorIn checks that the activation is a vector, as dense layers need.
func (im *importer) vectorIn() error {
	if len(im.shape) != 1 {
		return fmt.Errorf("input of shape %v: need a vector (add Flatten before it): %w", im.shape, ErrUnsupported)
	}
	return nil
}

func (im *importer) gemm(n *pb.NodeProto) error {
	if err := im.arity(n, 3); err != nil {
		return err
	}
	if err := im.vectorIn(); err != nil {
		return err
	}
	if a, _ := attrInt(n, "transA"); a != 0 {
		return fmt.Errorf("transA = %d: the activation must be A: %w", a, ErrUnsupported)
	}
	transB, _ := attrInt(n, "transB")
	alpha, beta := float32(1), float32(1)
	if v, ok := attrFloat(n, "alpha"); ok {
		alpha = v
	}
	if v, ok := attrFloat(n, "beta"); ok {
		beta = v
	}
	w, dims, err := im.floats(n, 1)
	if err != nil {
		return err
	}
	if len(dims) != 2 {
		return fmt.Errorf("B of shape %v: need a matrix: %w", dims, ErrUnsupported)
	}
	in, out := dims[0], dims[1]
	if transB != 0 {
		in, out = out, in
	} else {
		w = transpose(w, in, out)
	}
	if in != im.shape[0] {
		return fmt.Errorf("B of shape %v for an input of %d values: %w", dims, im.shape[0], ErrFormat)
	}
	if alpha != 1 {
		for i := range w {
			w[i] *= alpha
		}
	}
	b := make([]float32, out)
	if len(n.GetInput()) > 2 && n.GetInput()[2] != "" {
		c, _, err := im.floats(n, 2)
		if err != nil {
			return err
		}
		if err := broadcastBias(b, c); err != nil {
			return err
		}
		for i := range b {
			b[i] *= beta
		}
	}
	return im.dense(w, b, out)
}

// dense appends a dense layer with state_dict weights w [out, in] and b.
func (im *importer) dense(w, b []float32, out int) error {
	if out <= 0 || out > tensor.MaxActivation {
		return fmt.Errorf("%d outputs: %w", out, ErrUnsupported)
	}
	im.params = append(append(im.params, w...), b...)
	im.add(tensor.LayerSpec{Type: tensor.LayerDense, Units: out}, []int{out})
	return nil
}

// broadcastBias fills b from c, which has len(b) values or one.
func broadcastBias(b, c []float32) error {
	switch len(c) {
	case len(b):
		copy(b, c)
	case 1:
		for i := range b {
			b[i] = c[0]
		}
	default:
		return fmt.Errorf("bias of %d values for %d outputs: %w", len(c), len(b), ErrUnsupported)
	}
	return nil
}

// matmul maps MatMul(x, B [in, out]), and an Add of a constant bias right
// after it, to a dense layer.
func (im *importer) matmul(n *pb.NodeProto, rest []*pb.NodeProto) (bool, bool, error) {
	if err := im.arity(n, 2); err != nil {
		return false, false, err
	}
	if err := im.vectorIn(); err != nil {
		return false, false, err
	}
	w, dims, err := im.floats(n, 1)
	if err != nil {
		return false, false, err
	}
	if len(dims) != 2 || dims[0] != im.shape[0] {
		return false, false, fmt.Errorf("B of shape %v for an input of %d values: need [in, out]: %w", dims, im.shape[0], ErrUnsupported)
	}
	in, out := dims[0], dims[1]
	b := make([]float32, out)
	skip := false
	if len(rest) > 0 && rest[0].GetOpType() == "Add" && len(rest[0].GetInput()) == 2 && (rest[0].GetDomain() == "" || rest[0].GetDomain() == "ai.onnx") && len(rest[0].GetOutput()) > 0 {
		a := rest[0].GetInput()
		bias := ""
		switch n.GetOutput()[0] {
		case a[0]:
			bias = a[1]
		case a[1]:
			bias = a[0]
		}
		if t := im.constTensor(bias); t != nil {
			c, _, err := decodeFloats(t)
			if err != nil {
				return false, false, fmt.Errorf("bias %q: %w", bias, err)
			}
			if err := broadcastBias(b, c); err != nil {
				return false, false, err
			}
			skip = true
		}
	}
	return skip, false, im.dense(transpose(w, in, out), b, out)
}

// transpose returns the [cols, rows] transpose of the row-major [rows,
// cols] matrix w.
func transpose(w []float32, rows, cols int) []float32 {
	t := make([]float32, len(w))
	for r := range rows {
		for c := range cols {
			t[c*rows+r] = w[r*cols+c]
		}
	}
	return t
}

func (im *importer) conv(n *pb.NodeProto) error {
	if err := im.arity(n, 3); err != nil {
		return err
	}
	if len(im.shape) != 3 {
		return fmt.Errorf("input of shape %v: need [C, H, W]: %w", im.shape, ErrUnsupported)
	}
	w, dims, err := im.floats(n, 1)
	if err != nil {
		return err
	}
	if len(dims) != 4 || dims[1] != im.shape[0] || dims[2] != dims[3] {
		return fmt.Errorf("W of shape %v for %d input channels: need [F, C, K, K]: %w", dims, im.shape[0], ErrUnsupported)
	}
	f, k := dims[0], dims[2]
	if g, ok := attrInt(n, "group"); ok && g != 1 {
		return fmt.Errorf("group %d: only 1 is supported: %w", g, ErrUnsupported)
	}
	if err := ones(n, "dilations"); err != nil {
		return err
	}
	if ks, ok := attrInts(n, "kernel_shape"); ok && !slices.Equal(ks, []int64{int64(k), int64(k)}) {
		return fmt.Errorf("kernel_shape %v differs from W's %dx%d: %w", ks, k, k, ErrFormat)
	}
	stride, err := square(n, "strides", 1)
	if err != nil {
		return err
	}
	pad, err := pads(n, k, stride)
	if err != nil {
		return err
	}
	b := make([]float32, f)
	if len(n.GetInput()) > 2 && n.GetInput()[2] != "" {
		c, _, err := im.floats(n, 2)
		if err != nil {
			return err
		}
		if len(c) != f {
			return fmt.Errorf("bias of %d values for %d filters: %w", len(c), f, ErrFormat)
		}
		copy(b, c)
	}
	h, wd := im.shape[1], im.shape[2]
	if pad >= k || h+2*pad < k || wd+2*pad < k {
		return fmt.Errorf("kernel %d with padding %d on %dx%d: the engine needs padding < kernel <= padded size: %w", k, pad, h, wd, ErrUnsupported)
	}
	l := tensor.LayerSpec{Type: tensor.LayerConv2D, Filters: f, Kernel: k, Padding: pad}
	if stride != 1 {
		l.Stride = stride
	}
	im.params = append(append(im.params, w...), b...)
	im.add(l, []int{f, (h+2*pad-k)/stride + 1, (wd+2*pad-k)/stride + 1})
	return nil
}

// pads returns the symmetric padding of a Conv from its pads or auto_pad.
func pads(n *pb.NodeProto, k, stride int) (int, error) {
	switch ap := attrString(n, "auto_pad"); ap {
	case "", "NOTSET":
	case "VALID":
		return 0, nil
	case "SAME_UPPER", "SAME_LOWER":
		if stride != 1 || k%2 == 0 {
			return 0, fmt.Errorf("auto_pad %s with kernel %d and stride %d pads unevenly: %w", ap, k, stride, ErrUnsupported)
		}
		return (k - 1) / 2, nil
	default:
		return 0, fmt.Errorf("auto_pad %q: %w", ap, ErrUnsupported)
	}
	p, ok := attrInts(n, "pads")
	if !ok {
		return 0, nil
	}
	if len(p) != 4 || p[0] != p[1] || p[0] != p[2] || p[0] != p[3] || p[0] < 0 || p[0] > 1<<12 {
		return 0, fmt.Errorf("pads %v: the engine pads all sides alike: %w", p, ErrUnsupported)
	}
	return int(p[0]), nil
}

// square returns a 2-D attribute whose two values are equal, or def.
func square(n *pb.NodeProto, name string, def int) (int, error) {
	v, ok := attrInts(n, name)
	if !ok {
		return def, nil
	}
	if len(v) != 2 || v[0] != v[1] || v[0] <= 0 || v[0] > 1<<12 {
		return 0, fmt.Errorf("%s %v: need two equal values in [1, 4096]: %w", name, v, ErrUnsupported)
	}
	return int(v[0]), nil
}

// ones checks that an optional ints attribute is all ones.
func ones(n *pb.NodeProto, name string) error {
	v, _ := attrInts(n, name)
	for _, d := range v {
		if d != 1 {
			return fmt.Errorf("%s %v: only 1 is supported: %w", name, v, ErrUnsupported)
		}
	}
	return nil
}

func (im *importer) maxPool(n *pb.NodeProto) error {
	if err := im.arity(n, 1); err != nil {
		return err
	}
	if len(n.GetOutput()) > 1 && n.GetOutput()[1] != "" {
		return fmt.Errorf("the Indices output is not supported: %w", ErrUnsupported)
	}
	if len(im.shape) != 3 {
		return fmt.Errorf("input of shape %v: need [C, H, W]: %w", im.shape, ErrUnsupported)
	}
	if attr(n, "kernel_shape") == nil {
		return fmt.Errorf("no kernel_shape: %w", ErrFormat)
	}
	k, err := square(n, "kernel_shape", 0)
	if err != nil {
		return err
	}
	stride, err := square(n, "strides", 1)
	if err != nil {
		return err
	}
	if err := ones(n, "dilations"); err != nil {
		return err
	}
	if p, _ := attrInts(n, "pads"); slices.ContainsFunc(p, func(v int64) bool { return v != 0 }) {
		return fmt.Errorf("pads %v: the engine pools without padding: %w", p, ErrUnsupported)
	}
	if ap := attrString(n, "auto_pad"); ap != "" && ap != "NOTSET" && ap != "VALID" {
		return fmt.Errorf("auto_pad %q: the engine pools without padding: %w", ap, ErrUnsupported)
	}
	h, w := im.shape[1], im.shape[2]
	if k > h || k > w {
		return fmt.Errorf("kernel %d larger than the %dx%d input: %w", k, h, w, ErrUnsupported)
	}
	if c, _ := attrInt(n, "ceil_mode"); c != 0 && ((h-k)%stride != 0 || (w-k)%stride != 0) {
		return fmt.Errorf("ceil_mode 1 on a %dx%d input with kernel %d, stride %d adds a partial window: %w", h, w, k, stride, ErrUnsupported)
	}
	l := tensor.LayerSpec{Type: tensor.LayerMaxPool, Kernel: k}
	if stride != k {
		l.Stride = stride
	}
	im.add(l, []int{im.shape[0], (h-k)/stride + 1, (w-k)/stride + 1})
	return nil
}

func (im *importer) flatten(n *pb.NodeProto) error {
	if err := im.arity(n, 1); err != nil {
		return err
	}
	axis, ok := attrInt(n, "axis")
	if !ok {
		axis = 1
	}
	if axis != 1 && axis != -int64(len(im.shape)) { // both: after the batch
		return fmt.Errorf("axis %d: only flattening everything but the batch (axis 1) is supported: %w", axis, ErrUnsupported)
	}
	size, _ := shapeSize(im.shape)
	im.add(tensor.LayerSpec{Type: tensor.LayerFlatten}, []int{size})
	return nil
}

// reshape accepts a Reshape to [batch, features] by a constant shape:
// [0 or -1 or batch, -1 or features].
func (im *importer) reshape(n *pb.NodeProto) error {
	if err := im.arity(n, 2); err != nil {
		return err
	}
	if len(n.GetInput()) < 2 {
		return fmt.Errorf("no shape input: %w", ErrUnsupported)
	}
	t := im.constTensor(n.GetInput()[1])
	if t == nil {
		return fmt.Errorf("shape %q is computed at run time: only a constant shape that flattens is supported: %w", n.GetInput()[1], ErrUnsupported)
	}
	s, err := decodeInts(t)
	if err != nil {
		return fmt.Errorf("shape %q: %w", n.GetInput()[1], err)
	}
	size, _ := shapeSize(im.shape)
	if len(s) != 2 || s[0] < -1 || (s[1] != -1 && s[1] != int64(size)) || (s[0] == -1 && s[1] == -1) || (s[0] > 0 && s[1] == -1) {
		return fmt.Errorf("shape %v on [N, %s]: only a flatten to [N, %d] is supported: %w", s, dims(im.shape), size, ErrUnsupported)
	}
	im.add(tensor.LayerSpec{Type: tensor.LayerFlatten}, []int{size})
	return nil
}

func (im *importer) dropout(n *pb.NodeProto) error {
	if err := im.arity(n, 3); err != nil {
		return err
	}
	rate := float32(0.5)
	if r, ok := attrFloat(n, "ratio"); ok {
		rate = r
	}
	if len(n.GetInput()) > 1 && n.GetInput()[1] != "" {
		v, _, err := im.floats(n, 1)
		if err != nil {
			return err
		}
		if len(v) != 1 {
			return fmt.Errorf("ratio of %d values: %w", len(v), ErrFormat)
		}
		rate = v[0]
	}
	if !(rate >= 0 && rate < 1) {
		return fmt.Errorf("ratio %v outside [0, 1): %w", rate, ErrUnsupported)
	}
	// float64 of the float32 ratio, rounded to what a person wrote.
	r := math.Round(float64(rate)*1e6) / 1e6
	im.add(tensor.LayerSpec{Type: tensor.LayerDropout, Rate: r}, im.shape)
	return nil
}

// standardize maps Sub, Mul and Div by constants (broadcast over the
// activation) to a standardize layer: a Sub opens one (scale 1) that a
// Mul or Div right after it completes; a lone Mul or Div is one with
// shift 0. open is the layer a preceding Sub opened, or -1.
func (im *importer) standardize(n *pb.NodeProto, open int) error {
	if err := im.arity(n, 2); err != nil {
		return err
	}
	if len(n.GetInput()) != 2 {
		return fmt.Errorf("%d inputs: need the activation and a constant: %w", len(n.GetInput()), ErrUnsupported)
	}
	t := im.constTensor(n.GetInput()[1])
	if t == nil {
		return fmt.Errorf("%q is not a constant: only a normalization by constants is supported: %w", n.GetInput()[1], ErrUnsupported)
	}
	c, cdims, err := decodeFloats(t)
	if err != nil {
		return fmt.Errorf("%q: %w", n.GetInput()[1], err)
	}
	size, _ := shapeSize(im.shape)
	if im.stdValues += size; im.stdValues > MaxStandardizeValues {
		return fmt.Errorf("normalizations over %d values in all, more than %d: %w", im.stdValues, MaxStandardizeValues, ErrTooLarge)
	}
	full, err := broadcast(c, cdims, im.shape)
	if err != nil {
		return fmt.Errorf("%q: %w", n.GetInput()[1], err)
	}
	op := n.GetOpType()
	if op == "Div" {
		for i, v := range full {
			full[i] = 1 / v
		}
	}
	if op == "Sub" {
		scale := make([]float32, len(full))
		for i := range scale {
			scale[i] = 1
		}
		im.add(tensor.LayerSpec{Type: tensor.LayerStandardize, Shift: full, Scale: scale}, im.shape)
		im.openStd = len(im.spec.Layers) - 1
		return nil
	}
	if open >= 0 && open == len(im.spec.Layers)-1 {
		im.spec.Layers[open].Scale = full
		return nil
	}
	im.add(tensor.LayerSpec{Type: tensor.LayerStandardize, Shift: make([]float32, len(full)), Scale: full}, im.shape)
	return nil
}

// broadcast expands a constant of shape cdims to one value per element of
// an activation of shape (without the batch), by ONNX's (numpy's)
// broadcasting rules with a batch dimension of 1.
func broadcast(c []float32, cdims, shape []int) ([]float32, error) {
	bad := fmt.Errorf("shape %v does not broadcast to [N, %s]: %w", cdims, dims(shape), ErrUnsupported)
	d := slices.Clone(cdims)
	if len(d) == len(shape)+1 {
		if d[0] != 1 {
			return nil, bad
		}
		d = d[1:]
	}
	if len(d) > len(shape) {
		return nil, bad
	}
	d = append(slices.Repeat([]int{1}, len(shape)-len(d)), d...)
	for i := range d {
		if d[i] != 1 && d[i] != shape[i] {
			return nil, bad
		}
	}
	size, _ := shapeSize(shape)
	out := make([]float32, size)
	idx := make([]int, len(shape))
	for j := range out {
		// idx is j's multi-index in shape; the constant's index clamps
		// broadcast dimensions to 0.
		src := 0
		for a := range shape {
			v := idx[a]
			if d[a] == 1 {
				v = 0
			}
			src = src*d[a] + v
		}
		out[j] = c[src]
		for a := len(shape) - 1; a >= 0; a-- {
			idx[a]++
			if idx[a] < shape[a] {
				break
			}
			idx[a] = 0
		}
	}
	return out, nil
}

// constant records a Constant node's value.
func (im *importer) constant(n *pb.NodeProto) error {
	if len(n.GetOutput()) != 1 {
		return fmt.Errorf("%d outputs: %w", len(n.GetOutput()), ErrFormat)
	}
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			if a.GetT() == nil {
				return fmt.Errorf("value is not a tensor: %w", ErrFormat)
			}
			if err := checkLocation(a.GetT()); err != nil {
				return err
			}
			im.consts[n.GetOutput()[0]] = a.GetT()
			return nil
		case "value_ints":
			im.consts[n.GetOutput()[0]] = &pb.TensorProto{Dims: []int64{int64(len(a.GetInts()))}, DataType: int32p(pb.TensorProto_INT64), Int64Data: a.GetInts()}
			return nil
		case "value_float":
			im.consts[n.GetOutput()[0]] = &pb.TensorProto{DataType: int32p(pb.TensorProto_FLOAT), FloatData: []float32{a.GetF()}}
			return nil
		}
	}
	return fmt.Errorf("no value, value_ints or value_float attribute: %w", ErrUnsupported)
}

func int32p(t pb.TensorProto_DataType) *int32 { v := int32(t); return &v }

// constTensor returns the initializer or Constant output named name, or
// nil.
func (im *importer) constTensor(name string) *pb.TensorProto {
	if name == "" {
		return nil
	}
	if t, ok := im.inits[name]; ok {
		return t
	}
	return im.consts[name]
}

// floats decodes input i of n, which must be a float constant.
func (im *importer) floats(n *pb.NodeProto, i int) ([]float32, []int, error) {
	if i >= len(n.GetInput()) {
		return nil, nil, fmt.Errorf("input %d missing: %w", i, ErrFormat)
	}
	name := n.GetInput()[i]
	t := im.constTensor(name)
	if t == nil {
		return nil, nil, fmt.Errorf("input %q is not a constant (an initializer or a Constant node): %w", name, ErrUnsupported)
	}
	v, d, err := decodeFloats(t)
	if err != nil {
		return nil, nil, fmt.Errorf("input %q: %w", name, err)
	}
	return v, d, nil
}

// checkLocation refuses a tensor whose data lives in another file.
func checkLocation(t *pb.TensorProto) error {
	if t.GetDataLocation() == pb.TensorProto_EXTERNAL || len(t.GetExternalData()) > 0 {
		return fmt.Errorf("tensor %q: %w", t.GetName(), ErrExternalData)
	}
	return nil
}

// tensorDims checks a tensor's dims and returns them with their product.
func tensorDims(t *pb.TensorProto) ([]int, int, error) {
	if len(t.GetDims()) > tensor.MaxTensorDims {
		return nil, 0, fmt.Errorf("%d dimensions: %w", len(t.GetDims()), ErrUnsupported)
	}
	d := make([]int, len(t.GetDims()))
	n := 1
	for i, v := range t.GetDims() {
		if v <= 0 || v > tensor.MaxParams {
			return nil, 0, fmt.Errorf("dimension %d of %v: %w", i, t.GetDims(), ErrFormat)
		}
		d[i] = int(v)
		n *= d[i]
		if n > tensor.MaxParams {
			return nil, 0, fmt.Errorf("dims %v exceed %d values: %w", t.GetDims(), tensor.MaxParams, ErrTooLarge)
		}
	}
	return d, n, nil
}

// decodeFloats returns a float32 tensor's values (raw_data or float_data)
// and dims.
func decodeFloats(t *pb.TensorProto) ([]float32, []int, error) {
	if err := checkLocation(t); err != nil {
		return nil, nil, err
	}
	if t.GetDataType() != int32(pb.TensorProto_FLOAT) {
		return nil, nil, fmt.Errorf("data type %v: only FLOAT (float32) weights are supported: %w", pb.TensorProto_DataType(t.GetDataType()), ErrUnsupported)
	}
	d, n, err := tensorDims(t)
	if err != nil {
		return nil, nil, err
	}
	if raw := t.GetRawData(); raw != nil {
		if len(raw) != 4*n {
			return nil, nil, fmt.Errorf("%d bytes of raw data for %d values: %w", len(raw), n, ErrFormat)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return v, d, nil
	}
	if len(t.GetFloatData()) != n {
		return nil, nil, fmt.Errorf("%d values for dims %v: %w", len(t.GetFloatData()), t.GetDims(), ErrFormat)
	}
	return slices.Clone(t.GetFloatData()), d, nil
}

// decodeInts returns an int64 tensor's values (raw_data or int64_data).
func decodeInts(t *pb.TensorProto) ([]int64, error) {
	if err := checkLocation(t); err != nil {
		return nil, err
	}
	if t.GetDataType() != int32(pb.TensorProto_INT64) {
		return nil, fmt.Errorf("data type %v: need INT64: %w", pb.TensorProto_DataType(t.GetDataType()), ErrFormat)
	}
	_, n, err := tensorDims(t)
	if err != nil {
		return nil, err
	}
	if raw := t.GetRawData(); raw != nil {
		if len(raw) != 8*n {
			return nil, fmt.Errorf("%d bytes of raw data for %d values: %w", len(raw), n, ErrFormat)
		}
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		return v, nil
	}
	if len(t.GetInt64Data()) != n {
		return nil, fmt.Errorf("%d values for dims %v: %w", len(t.GetInt64Data()), t.GetDims(), ErrFormat)
	}
	return t.GetInt64Data(), nil
}

func attr(n *pb.NodeProto, name string) *pb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *pb.NodeProto, name string) (int64, bool) {
	a := attr(n, name)
	if a == nil {
		return 0, false
	}
	return a.GetI(), true
}

func attrFloat(n *pb.NodeProto, name string) (float32, bool) {
	a := attr(n, name)
	if a == nil {
		return 0, false
	}
	return a.GetF(), true
}

func attrInts(n *pb.NodeProto, name string) ([]int64, bool) {
	a := attr(n, name)
	if a == nil {
		return nil, false
	}
	return a.GetInts(), true
}

func attrString(n *pb.NodeProto, name string) string {
	return string(attr(n, name).GetS())
}
