package tensor

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on an external model's layout (Spec.External), on top of
// MaxParams and the model file's MaxSpecBytes.
const (
	// MaxExternalTensors bounds the tensors of one external layout.
	MaxExternalTensors = 1 << 16
	// MaxTensorName bounds the length in bytes of a tensor name.
	MaxTensorName = 512
	// MaxTensorDims bounds the dimensions of one tensor.
	MaxTensorDims = 8
)

// ExternalTensor is one named float32 tensor of an external model's
// layout: PyTorch's state_dict key and shape, for example
// {"conv1.weight", [32, 1, 3, 3]}. An empty Shape is a scalar (one value).
type ExternalTensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// Size returns the number of values of t (the product of its shape; 1 for
// a scalar), or -1 if a dimension is not positive or the product exceeds
// MaxParams.
func (t ExternalTensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		if d <= 0 || d > MaxParams {
			return -1
		}
		n *= d
		if n > MaxParams {
			return -1
		}
	}
	return n
}

// ExternalSpec returns the Spec of an external model named name whose
// flat parameter vector is the concatenation of layout's tensors in
// order, each row-major (C order, as safetensors and PyTorch store them).
// It validates the result (ErrInvalidSpec) and copies layout.
func ExternalSpec(name string, layout []ExternalTensor) (Spec, error) {
	s := Spec{Name: name, External: cloneLayout(layout)}
	if err := s.Validate(); err != nil {
		return Spec{}, fmt.Errorf("tensor.ExternalSpec: %w", err)
	}
	return s, nil
}

// IsExternal reports whether s describes an external model: one that
// fedge does not run but trains through an external trainer. Its
// parameters are still one flat vector (ParamCount, Model.Params), so
// aggregation, encodings, deltas, the model file and the registry handle
// it like any other; Train, Evaluate and Predict refuse it with
// ErrExternalModel.
func (s Spec) IsExternal() bool { return len(s.External) > 0 }

// ExternalOffsets returns, for an external spec, the first parameter of
// each tensor of the layout in the flat vector, and the total count.
func (s Spec) ExternalOffsets() ([]int, int, error) {
	if _, _, err := s.plan(); err != nil {
		return nil, 0, err
	}
	offs := make([]int, len(s.External))
	total := 0
	for i, t := range s.External {
		offs[i] = total
		total += t.Size()
	}
	return offs, total, nil
}

// planExternal validates an external layout and returns its parameter
// count: unique names of 1 to MaxTensorName bytes of printable UTF-8, at
// most MaxTensorDims positive dimensions each, MaxParams values in all,
// and no engine fields (input, layers) beside it.
func (s Spec) planExternal() (int, error) {
	bad := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("tensor.Spec.Validate: external layout: %s: %w", fmt.Sprintf(format, args...), ErrInvalidSpec)
	}
	if len(s.Input) > 0 || len(s.Layers) > 0 || s.Text != nil {
		return bad("an external model has no input, layers or text tokenizer for the engine")
	}
	if len(s.External) > MaxExternalTensors {
		return bad("%d tensors, more than %d", len(s.External), MaxExternalTensors)
	}
	seen := make(map[string]bool, len(s.External))
	total := 0
	for i, t := range s.External {
		if err := checkTensorName(t.Name); err != nil {
			return bad("tensor %d: %v", i, err)
		}
		if seen[t.Name] {
			return bad("tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		if len(t.Shape) > MaxTensorDims {
			return bad("tensor %q has %d dimensions, more than %d", t.Name, len(t.Shape), MaxTensorDims)
		}
		n := t.Size()
		if n < 0 {
			return bad("tensor %q: shape %v needs positive dimensions and at most %d values", t.Name, t.Shape, MaxParams)
		}
		total += n
		if total > MaxParams {
			return bad("more than %d parameters", MaxParams)
		}
	}
	return total, nil
}

// checkTensorName accepts 1 to MaxTensorName bytes of valid UTF-8 without
// control characters.
func checkTensorName(name string) error {
	if name == "" || len(name) > MaxTensorName {
		return fmt.Errorf("name of %d bytes: need 1 to %d", len(name), MaxTensorName)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("name %q is not valid UTF-8", name)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("name %q has a control character", name)
	}
	return nil
}

func cloneLayout(layout []ExternalTensor) []ExternalTensor {
	if layout == nil {
		return nil
	}
	out := make([]ExternalTensor, len(layout))
	for i, t := range layout {
		out[i] = ExternalTensor{Name: t.Name, Shape: append([]int{}, t.Shape...)}
	}
	return out
}

// NewExternalModel returns a model of the external spec whose parameters
// are a copy of params (ParamCount values). External models take their
// weights from outside (a safetensors file, a trainer); NewModel refuses
// them because the engine does not know how to initialize them.
func NewExternalModel(spec Spec, params []float32) (*Model, error) {
	if !spec.IsExternal() {
		return nil, fmt.Errorf("tensor.NewExternalModel: spec %q has no external layout: %w", spec.Name, ErrInvalidSpec)
	}
	m, err := newModel(spec)
	if err != nil {
		return nil, fmt.Errorf("tensor.NewExternalModel: %w", err)
	}
	if err := m.SetParams(params); err != nil {
		return nil, fmt.Errorf("tensor.NewExternalModel: %w", err)
	}
	return m, nil
}
