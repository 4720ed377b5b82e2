package statedict

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/fedge/fedge/tensor"
)

// ErrNotEngine reports an external model (tensor.Spec.IsExternal): its
// layout is already a list of named tensors, with no layers to map.
var ErrNotEngine = errors.New("statedict: external model has no engine layers")

// layerInfo is what the conversions need to know of one layer.
type layerInfo struct {
	spec    tensor.LayerSpec
	in, out []int
	// order is, for a layer whose input is a vector, the engine position
	// of each PyTorch position of that vector (nil when they coincide).
	order []int
}

// layers validates spec and returns its layers' shapes and input orders.
func layers(spec tensor.Spec) ([]layerInfo, error) {
	if spec.IsExternal() {
		return nil, ErrNotEngine
	}
	outs, err := spec.Shapes()
	if err != nil {
		return nil, err
	}
	// The engine keeps 3-D activations channels-last in a model with
	// convolution or pooling layers (tensor.Spec's doc).
	chLast := false
	for _, l := range spec.Layers {
		chLast = chLast || l.Type == tensor.LayerConv2D || l.Type == tensor.LayerMaxPool
	}
	info := make([]layerInfo, len(spec.Layers))
	in := spec.Input
	var order []int
	for i, l := range spec.Layers {
		info[i] = layerInfo{spec: l, in: in, out: outs[i]}
		if len(in) == 1 {
			info[i].order = order
		}
		switch l.Type {
		case tensor.LayerFlatten:
			if chLast && len(in) == 3 && in[0] > 1 {
				order = hwcOrder(in[0], in[1]*in[2])
			}
		case tensor.LayerReLU, tensor.LayerDropout, tensor.LayerStandardize:
			// Elementwise: the order passes through.
		default:
			order = nil
		}
		in = outs[i]
	}
	return info, nil
}

// hwcOrder returns, for each position c·hw + q of a channels-first vector
// of c channels of hw values, the position q·c + ch of the same value in
// the channels-last vector.
func hwcOrder(c, hw int) []int {
	p := make([]int, c*hw)
	for ch := range c {
		for q := range hw {
			p[ch*hw+q] = q*c + ch
		}
	}
	return p
}

// VectorOrder returns, for layer i of spec whose input is a vector, the
// engine position of each PyTorch (channels-first) position of that
// vector: nil when the two orders coincide, which is everywhere except
// after a flatten of a multi-channel activation in a model with
// convolution or pooling layers. A standardize layer at such a place has
// its constants in the engine's order; an exporter permutes them with it.
func VectorOrder(spec tensor.Spec, i int) ([]int, error) {
	info, err := layers(spec)
	if err != nil {
		return nil, fmt.Errorf("statedict.VectorOrder: %w", err)
	}
	if i < 0 || i >= len(info) {
		return nil, fmt.Errorf("statedict.VectorOrder: layer %d of %d: %w", i, len(info), tensor.ErrShape)
	}
	return append([]int(nil), info[i].order...), nil
}

// Layout returns the state_dict tensors of an engine model of spec, in
// layer order, weight before bias (see the package doc for names and
// shapes). Their concatenation is as long as the model's parameter
// vector.
func Layout(spec tensor.Spec) ([]tensor.ExternalTensor, error) {
	info, err := layers(spec)
	if err != nil {
		return nil, fmt.Errorf("statedict.Layout: %w", err)
	}
	var out []tensor.ExternalTensor
	for i, l := range info {
		p := strconv.Itoa(i) + "."
		switch l.spec.Type {
		case tensor.LayerDense:
			out = append(out,
				tensor.ExternalTensor{Name: p + "weight", Shape: []int{l.spec.Units, l.in[0]}},
				tensor.ExternalTensor{Name: p + "bias", Shape: []int{l.spec.Units}})
		case tensor.LayerGCNConv:
			out = append(out,
				tensor.ExternalTensor{Name: p + "lin.weight", Shape: []int{l.spec.Units, l.in[0]}},
				tensor.ExternalTensor{Name: p + "bias", Shape: []int{l.spec.Units}})
		case tensor.LayerConv2D:
			k := l.spec.Kernel
			out = append(out,
				tensor.ExternalTensor{Name: p + "weight", Shape: []int{l.spec.Filters, l.in[0], k, k}},
				tensor.ExternalTensor{Name: p + "bias", Shape: []int{l.spec.Filters}})
		case tensor.LayerEmbeddingBag:
			out = append(out, tensor.ExternalTensor{Name: p + "weight", Shape: []int{l.spec.Vocab, l.spec.Dim}})
		}
	}
	return out, nil
}

// FromModel returns the state_dict layout of the engine model m and its
// parameters in that layout: a new vector, the concatenation of the
// layout's tensors, each row-major.
func FromModel(m *tensor.Model) ([]tensor.ExternalTensor, []float32, error) {
	layout, err := Layout(m.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("statedict.FromModel: %w", err)
	}
	if len(m.Params) != m.NumParams() {
		return nil, nil, fmt.Errorf("statedict.FromModel: Params has %d values: %w", len(m.Params), tensor.ErrShape)
	}
	info, _ := layers(m.Spec)
	dst := make([]float32, 0, len(m.Params))
	for i, l := range info {
		w, b := m.LayerParams(i)
		switch l.spec.Type {
		case tensor.LayerDense, tensor.LayerGCNConv:
			dst = appendOutIn(dst, w, l.in[0], l.spec.Units, l.order)
		case tensor.LayerConv2D:
			dst = appendOIHW(dst, w, l.in[0], l.spec.Kernel, l.spec.Filters)
		case tensor.LayerEmbeddingBag: // [Vocab, Dim] in both, no bias
			dst = append(dst, w...)
			continue
		default:
			continue
		}
		dst = append(dst, b...)
	}
	return layout, dst, nil
}

// ToModel returns an engine model of spec whose parameters are params in
// the state_dict layout of spec (Layout): the inverse of FromModel.
func ToModel(spec tensor.Spec, params []float32) (*tensor.Model, error) {
	info, err := layers(spec)
	if err != nil {
		return nil, fmt.Errorf("statedict.ToModel: %w", err)
	}
	m, err := tensor.NewModel(spec, 0)
	if err != nil {
		return nil, fmt.Errorf("statedict.ToModel: %w", err)
	}
	if len(params) != m.NumParams() {
		return nil, fmt.Errorf("statedict.ToModel: %d values for %d parameters: %w", len(params), m.NumParams(), tensor.ErrShape)
	}
	src := params
	for i, l := range info {
		w, b := m.LayerParams(i)
		switch l.spec.Type {
		case tensor.LayerDense, tensor.LayerGCNConv:
			fromOutIn(w, src, l.in[0], l.spec.Units, l.order)
		case tensor.LayerConv2D:
			fromOIHW(w, src, l.in[0], l.spec.Kernel, l.spec.Filters)
		case tensor.LayerEmbeddingBag:
			copy(w, src[:len(w)])
			src = src[len(w):]
			continue
		default:
			continue
		}
		src = src[len(w):]
		copy(b, src[:len(b)])
		src = src[len(b):]
	}
	return m, nil
}

// appendOutIn appends the engine's [in, out] weights w as PyTorch's
// [out, in], the input positions in PyTorch's order.
func appendOutIn(dst, w []float32, in, out int, order []int) []float32 {
	for o := range out {
		for j := range in {
			r := j
			if order != nil {
				r = order[j]
			}
			dst = append(dst, w[r*out+o])
		}
	}
	return dst
}

// fromOutIn sets the engine's [in, out] weights w from PyTorch's [out, in]
// src: the inverse of appendOutIn.
func fromOutIn(w, src []float32, in, out int, order []int) {
	for o := range out {
		row := src[o*in : (o+1)*in]
		for j, v := range row {
			r := j
			if order != nil {
				r = order[j]
			}
			w[r*out+o] = v
		}
	}
}

// appendOIHW appends the engine's [K·K·C, F] convolution weights (patch
// index (kh·K+kw)·C + c) as PyTorch's [F, C, K, K].
func appendOIHW(dst, w []float32, c, k, f int) []float32 {
	for o := range f {
		for ch := range c {
			for kh := range k {
				for kw := range k {
					dst = append(dst, w[((kh*k+kw)*c+ch)*f+o])
				}
			}
		}
	}
	return dst
}

// fromOIHW sets the engine's convolution weights from PyTorch's [F, C, K,
// K] src: the inverse of appendOIHW.
func fromOIHW(w, src []float32, c, k, f int) {
	i := 0
	for o := range f {
		for ch := range c {
			for kh := range k {
				for kw := range k {
					w[((kh*k+kw)*c+ch)*f+o] = src[i]
					i++
				}
			}
		}
	}
}
