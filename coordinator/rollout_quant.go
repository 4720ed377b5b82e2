package coordinator

import (
	"encoding/hex"
	"fmt"

	"github.com/fedge/fedge/tensor"
)

// quantizedVersion returns the version that serves model version in the
// quantize mode ("int8"): its parameters under a spec carrying the
// serving directive. An existing such version (from an earlier quantized
// rollout of version) is reused; otherwise one is committed like an
// import (cmdModelImport: no parent, job or round), with QuantizedFrom
// naming version. Its weights are rounded to int8 per output channel
// (tensor.Model.RoundWeightsInt8), so its hash is its own and its model
// file holds them as int8, about a quarter of the float size; agents
// calibrate the activation scales themselves, on the calibration set the
// spec declares (calibration: "held-out" or empty for their held-out
// data, else a file on the agent).
func (n *Node) quantizedVersion(c adminCall, version uint64, mode, calibration string) (uint64, error) {
	if calibration == tensor.CalibrationHeldOut {
		calibration = ""
	}
	if mode != tensor.QuantizeInt8 {
		return 0, fmt.Errorf("rollout.start: %w: quantize %q: want %q", errBadRequest, mode, tensor.QuantizeInt8)
	}
	var existing uint64
	var active string
	known := false
	n.fsm.Read(func(s *State) {
		m, ok := s.Models[version]
		if !ok || !m.held() {
			return
		}
		known = true
		if ro := s.activeRolloutOf(m.Name); ro != nil {
			active = ro.ID + " is still " + ro.State
		}
		for _, v := range sortedKeys(s.Models) {
			if q := s.Models[v]; q.QuantizedFrom == version && q.Quantize == mode && q.Calibration == calibration && q.held() {
				existing = v
			}
		}
	})
	switch {
	case active != "": // checked before committing a version nobody would use
		return 0, fmt.Errorf("rollout.start: %w: rollout %s", ErrConflict, active)
	case !known:
		return 0, fmt.Errorf("rollout.start: %w: model %d", ErrNotFound, version)
	case existing != 0:
		return existing, nil
	}
	b, err := n.openModelBlob(c.ctx, version)
	if err != nil {
		return 0, fmt.Errorf("rollout.start: model %d: %w", version, err)
	}
	file, err := b.part(b.rec.filePart())
	b.Close()
	if err != nil {
		return 0, fmt.Errorf("rollout.start: model %d: %w", version, err)
	}
	m, err := tensor.UnmarshalModel(file)
	if err != nil {
		return 0, fmt.Errorf("rollout.start: model %d: %w", version, err)
	}
	switch {
	case m.Spec.Quantize == mode && m.Spec.Calibration == calibration:
		return version, nil // already served quantized
	case m.Spec.IsExternal() || m.Spec.IsGraph():
		return 0, fmt.Errorf("rollout.start: %w: model %d: %w (external and graph models are served in float32)", errBadRequest, version, tensor.ErrNotQuantizable)
	}
	m.Spec.Quantize, m.Spec.Calibration = mode, calibration
	// Weights rounded to int8 per output channel: the agents' int8 weights
	// exactly, and a model file of about a quarter of the float size.
	m.RoundWeightsInt8()
	if err := m.Spec.Validate(); err != nil {
		return 0, fmt.Errorf("rollout.start: %w: %w", errBadRequest, err)
	}
	blob, err := m.MarshalBinary()
	if err != nil {
		return 0, fmt.Errorf("rollout.start: %w", err)
	}
	h := m.Hash()
	rec := ModelRecord{
		Hash: hex.EncodeToString(h[:]), CreatedAt: c.now, Name: m.Spec.Name, ImportedBy: c.who,
		Quantize: mode, QuantizedFrom: version, Calibration: calibration,
	}
	v, err := n.apply(c.ctx, cmdModelImport, modelImportCmd{Model: rec}, blob)
	if err != nil {
		return 0, err
	}
	n.log.Info("quantized version registered", "version", v, "from", version, "quantize", mode, "by", c.who)
	return v.(uint64), nil
}
