package agent

import (
	"fmt"
	"time"

	"github.com/fedge/fedge/tensor"
)

// calibrationExamples is how many held-out examples calibrate the
// activation scales of a model served in int8: enough for stable maxima,
// and a few milliseconds of float inference.
const calibrationExamples = 1000

// calibration returns up to calibrationExamples examples of spec's input
// to calibrate a quantized model on: the held-out split, or the training
// data when the agent holds out nothing.
func (d *localData) calibration(spec tensor.Spec) ([]float32, int, error) {
	train, held, err := d.forModel(spec)
	if err != nil {
		return nil, 0, err
	}
	ds := held
	if ds == nil || ds.Len() == 0 {
		ds = train
	}
	if ds == nil {
		return nil, 0, nil
	}
	n := min(ds.Len(), calibrationExamples)
	return ds.X[:n*ds.Features()], n, nil
}

// quantize returns m quantized as its spec's serving directive asks
// (Spec.Quantize), calibrated on the local data; nil when the spec asks
// for float32.
func (a *Agent) quantize(version uint64, m *tensor.Model) (*tensor.QuantizedModel, error) {
	if m.Spec.Quantize == "" {
		return nil, nil
	}
	if err := a.data.fitsModel(version, m.Spec); err != nil {
		return nil, err
	}
	x, n, err := a.data.calibration(m.Spec)
	if err != nil {
		return nil, fmt.Errorf("agent: calibrating model %d: %w", version, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("agent: model %d is served %s, and calibrating it needs local data: %w", version, m.Spec.Quantize, tensor.ErrShape)
	}
	start := time.Now()
	q, err := tensor.Quantize(m, x, n)
	if err != nil {
		return nil, fmt.Errorf("agent: quantizing model %d: %w", version, err)
	}
	a.log.Info("model quantized", "version", version, "quantize", m.Spec.Quantize, "calibration_examples", n,
		"bytes", q.Bytes(), "float_bytes", 4*m.NumParams(), "kernel", q.Kernel(), "took", time.Since(start).Round(time.Millisecond))
	return q, nil
}

// serveQuantized attaches to sm the quantized form its spec asks for. A
// model the agent cannot quantize (no local data to calibrate on) is
// served in float32, with a warning the status report carries.
func (a *Agent) serveQuantized(sm *servedModel) *servedModel {
	q, err := a.quantize(sm.version, sm.model)
	if err != nil {
		a.log.Warn("serving model in float32", "version", sm.version, "err", err)
		return sm
	}
	sm.quant = q
	return sm
}

// evaluate returns the metrics of model version on the held-out split,
// quantized first when its spec says it is served quantized, so a
// rollout's gate judges what the agent would serve.
func (a *Agent) evaluate(version uint64, m *tensor.Model) (tensor.Metrics, error) {
	_, held, err := a.data.forModel(m.Spec)
	if err != nil {
		return tensor.Metrics{}, err
	}
	q, err := a.quantize(version, m)
	if err != nil {
		return tensor.Metrics{}, err
	}
	if q != nil {
		return tensor.EvaluateQuantized(q, held)
	}
	return tensor.Evaluate(m, held)
}

// predict returns the class probabilities of the n examples x from the
// served form of the model: int8 when quantized, else float32.
func (s *servedModel) predict(x []float32, n int) ([]float32, error) {
	if s.quant != nil {
		return s.quant.Predict(x, n)
	}
	return s.model.Predict(x, n)
}

// predictInto is predict into dst (n × the model's classes).
func (s *servedModel) predictInto(dst, x []float32, n int) error {
	if s.quant != nil {
		return s.quant.PredictInto(dst, x, n)
	}
	return s.model.PredictInto(dst, x, n)
}

// quantized names how the model is served: "int8", or "" for float32.
func (s *servedModel) quantized() string {
	if s.quant != nil {
		return tensor.QuantizeInt8
	}
	return ""
}
