// Package onnx exports engine models as standard ONNX graphs and imports
// ONNX graphs the engine can run, so that a model trained by fedge serves
// in any ONNX runtime and a model from PyTorch (torch.onnx.export) trains
// in fedge. It reads and writes the protobuf through ONNX's own schema
// (internal/onnxpb, generated code on google.golang.org/protobuf).
//
// # Export
//
// Export writes IR version 7 with the default operator set at version 13
// (Opset). The graph has one input, "input", float32 of shape [N, C, H, W]
// (or [N, ...Spec.Input]: [N, features] for a vector input), N symbolic,
// values in the Spec's [C, H, W] order; and one output, "probabilities",
// float32 [N, classes]: a Softmax over the class axis of the logits, the
// same values Model.Predict returns. Layer i becomes:
//
//	dense        Gemm(x, <i>.weight [out, in], <i>.bias, transB=1)
//	conv2d       Conv(x, <i>.weight [F, C, K, K], <i>.bias; strides, pads)
//	maxpool2d    MaxPool(kernel_shape, strides)
//	relu         Relu
//	flatten      Flatten(axis=1)
//	dropout      nothing: the identity at inference
//	standardize  Sub(x, <i>.shift) then Mul(·, <i>.scale), constants of
//	             the layer's input shape
//
// then Softmax(axis=1) into "probabilities". Initializers carry the names
// of tensor/statedict (PyTorch's state_dict keys); weights are in PyTorch's
// layouts and activations channels-first, converted from the engine's
// channels-last storage, so a flatten after convolutions orders values
// as PyTorch does.
//
// A gcnconv layer is refused (ErrUnsupported): a graph convolution
// multiplies by the normalized adjacency of a graph that arrives with the
// data at run time (sparse, its size varying per graph), which a standard
// ONNX graph over one dense input tensor does not take. An embedding_bag
// layer (text models) is refused as well: its input is hashed token ids
// that fedge's tokenizer computes from text outside the graph. External models
// are refused too: they have tensors but no operators.
//
// # Import
//
// Import reads a graph that is a chain from one float input [N, ...]
// (batch first, other dimensions fixed) to one output, over default
// operator set versions MinOpset to MaxOpset, made of:
//
//	Gemm                  dense (transA 0; transB 0 or 1; alpha, beta folded)
//	MatMul [+ Add bias]   dense (B is [in, out])
//	Conv                  conv2d (group 1, dilations 1, square kernel and
//	                      strides, equal pads on all sides or auto_pad)
//	MaxPool               maxpool2d (no padding, no Indices output)
//	Relu                  relu
//	Flatten (axis 1)      flatten
//	Reshape to [N, -1]    flatten (constant shape [0|-1, -1|features])
//	Dropout               dropout of the same ratio
//	Identity              nothing
//	Sub, Mul, Div         standardize: (x − shift)·scale, constants broadcast
//	                      to the activation; a Sub followed by a Mul or Div
//	                      is one layer
//	Softmax, LogSoftmax   only last, over the class axis; optional
//
// Constant nodes may provide the constants. Any other operator is refused
// with ErrUnsupported, naming the operator and its node. Weights must be
// FLOAT tensors, in the file (ErrExternalData for external data). The
// byte limit bounds the file before it is decoded, MaxNodes and
// MaxInitializers the graph, and tensor's Spec limits the model; malformed
// bytes give an error, never a panic.
package onnx
