package safetensors

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/statedict"
)

// MetaSpec is the __metadata__ key under which WriteEngineModel stores the
// model's tensor.Spec as JSON, so that ReadEngineModel can rebuild the
// architecture from the file alone.
const MetaSpec = "fedge.spec"

// WriteEngineModel writes an engine model's parameters with the names,
// shapes and layouts of the state_dict PyTorch holds for the same
// architecture (tensor/statedict: "<layer>.weight" [out, in] or
// [F, C, K, K], "<layer>.bias"), so that torch's load_state_dict reads
// them into the nn.Sequential of the same layers. The metadata gets the
// Spec under MetaSpec, beside the caller's. It returns the bytes written.
func WriteEngineModel(w io.Writer, m *tensor.Model, metadata map[string]string) (int64, error) {
	layout, params, err := statedict.FromModel(m)
	if err != nil {
		return 0, fmt.Errorf("safetensors.WriteEngineModel: %w", err)
	}
	js, err := json.Marshal(m.Spec)
	if err != nil {
		return 0, fmt.Errorf("safetensors.WriteEngineModel: %w", err)
	}
	meta := make(map[string]string, len(metadata)+1)
	for k, v := range metadata {
		meta[k] = v
	}
	meta[MetaSpec] = string(js)
	n, err := Write(w, layout, params, meta)
	if err != nil {
		return n, fmt.Errorf("safetensors.WriteEngineModel: %w", err)
	}
	return n, nil
}

// ReadEngineModel reads a safetensors file of at most limit bytes holding
// the state_dict of an engine model (the inverse of WriteEngineModel) and
// returns the model. The architecture is spec; a spec without layers (the
// zero Spec) means the one the file's MetaSpec metadata holds. Every
// tensor of the state_dict must be present with its shape, and no other
// (ErrLayout, naming the tensor); a round trip through WriteEngineModel is
// bit-exact.
func ReadEngineModel(r io.Reader, limit int64, spec tensor.Spec) (*tensor.Model, error) {
	f, data, err := Read(r, limit)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadEngineModel: %w", err)
	}
	if len(spec.Layers) == 0 {
		js, ok := f.Metadata[MetaSpec]
		if !ok {
			return nil, fmt.Errorf("safetensors.ReadEngineModel: no spec given and no %q metadata in the file: %w", MetaSpec, ErrLayout)
		}
		spec = tensor.Spec{}
		if err := json.Unmarshal([]byte(js), &spec); err != nil {
			return nil, fmt.Errorf("safetensors.ReadEngineModel: %s metadata: %v: %w", MetaSpec, err, ErrFormat)
		}
		if spec.IsExternal() || len(spec.Layers) == 0 {
			return nil, fmt.Errorf("safetensors.ReadEngineModel: %s metadata is not an engine model's spec: %w", MetaSpec, ErrFormat)
		}
	}
	layout, err := statedict.Layout(spec)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadEngineModel: %w", err)
	}
	type span struct {
		off, n int
		shape  []int
	}
	have := make(map[string]span, len(f.Layout))
	off := 0
	for _, t := range f.Layout {
		have[t.Name] = span{off, t.Size(), t.Shape}
		off += t.Size()
	}
	params := make([]float32, 0, len(data))
	for _, t := range layout {
		s, ok := have[t.Name]
		if !ok {
			return nil, fmt.Errorf("safetensors.ReadEngineModel: tensor %q is missing: %w", t.Name, ErrLayout)
		}
		if !slices.Equal(s.shape, t.Shape) {
			return nil, fmt.Errorf("safetensors.ReadEngineModel: tensor %q has shape %v, the spec needs %v: %w", t.Name, s.shape, t.Shape, ErrLayout)
		}
		params = append(params, data[s.off:s.off+s.n]...)
		delete(have, t.Name)
	}
	for _, t := range f.Layout {
		if _, extra := have[t.Name]; extra {
			return nil, fmt.Errorf("safetensors.ReadEngineModel: unexpected tensor %q: %w", t.Name, ErrLayout)
		}
	}
	m, err := statedict.ToModel(spec, params)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadEngineModel: %w", err)
	}
	return m, nil
}
