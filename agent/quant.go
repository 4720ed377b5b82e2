package agent

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/fedge/fedge/tensor"
)

// calibrationExamples is how many held-out examples calibrate the
// activation scales of a model served in int8: enough for stable maxima,
// and a few milliseconds of float inference.
const calibrationExamples = 1000

// calibration returns up to calibrationExamples examples of spec's input
// to calibrate a quantized model on when its spec declares no calibration
// file: the held-out split, or the training data when the agent holds out
// nothing.
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
	var x []float32
	var n int
	var err error
	if c := m.Spec.Calibration; c != "" && c != tensor.CalibrationHeldOut {
		x, n, err = readCalibration(a.calibrationPath(c), m.Features())
	} else {
		if err := a.data.fitsModel(version, m.Spec); err != nil {
			return nil, err
		}
		x, n, err = a.data.calibration(m.Spec)
	}
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
	a.log.Info("model quantized", "version", version, "quantize", m.Spec.Quantize, "calibration", calibrationName(m.Spec), "calibration_examples", n,
		"bytes", q.Bytes(), "float_bytes", 4*m.NumParams(), "kernel", q.Kernel(), "took", time.Since(start).Round(time.Millisecond))
	return q, nil
}

// calibrationName names the calibration set of spec for logs.
func calibrationName(spec tensor.Spec) string {
	if spec.Calibration == "" {
		return tensor.CalibrationHeldOut
	}
	return spec.Calibration
}

// calibrationPath resolves a declared calibration file: a relative path
// is in the agent's data directory.
func (a *Agent) calibrationPath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(a.cfg.DataDir, p)
}

// readCalibration reads up to calibrationExamples rows of features
// little-endian float32 values from the file at path; the file must hold
// whole rows of finite values.
func readCalibration(path string, features int) ([]float32, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("calibration file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("calibration file: %w", err)
	}
	rowBytes := int64(4 * features)
	if features <= 0 || st.Size() == 0 || st.Size()%rowBytes != 0 {
		return nil, 0, fmt.Errorf("calibration file %s: %d bytes is not a whole number of rows of %d float32 features: %w", path, st.Size(), features, tensor.ErrShape)
	}
	n := int(min(st.Size()/rowBytes, calibrationExamples))
	b := make([]byte, int64(n)*rowBytes)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, 0, fmt.Errorf("calibration file %s: %w", path, err)
	}
	x, _, err := decodeTensor(nil, b, features)
	if err != nil {
		return nil, 0, err
	}
	for k, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, 0, fmt.Errorf("calibration file %s: row %d feature %d is not finite: %w", path, k/features, k%features, tensor.ErrShape)
		}
	}
	return x, n, nil
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
