package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"

	"github.com/fedge/fedge/tensor"
)

// Bounds of an explained predict request: integrated gradients cost one
// forward and backward pass per input and step.
const (
	// MaxExplainPasses bounds inputs × steps of one request (4,096: 128
	// inputs at the default 32 steps, or one at 1,024).
	MaxExplainPasses = 4096
	// HeatmapScale is how many pixels of a heat map show one input pixel.
	HeatmapScale = 4
)

// ExplainOptions ask /v1/predict for explanations. In JSON it is true
// (the defaults), false (none), or an object of these fields.
type ExplainOptions struct {
	// Enabled is set by true or by an object.
	Enabled bool `json:"-"`
	// Steps is the number of integration steps; 0 means
	// tensor.DefaultIGSteps (32); at most tensor.MaxIGSteps (1,024).
	Steps int `json:"steps,omitempty"`
	// Baseline is the input attributions are measured from, the model's
	// features in its input layout; omitted, all zeros (a black image).
	Baseline []float32 `json:"baseline,omitempty"`
	// Heatmap asks for a PNG heat map of each attribution (models whose
	// input is an image [channels, height, width] only).
	Heatmap bool `json:"heatmap,omitempty"`
}

// UnmarshalJSON takes true, false or an object.
func (o *ExplainOptions) UnmarshalJSON(b []byte) error {
	var on bool
	if err := json.Unmarshal(b, &on); err == nil {
		*o = ExplainOptions{Enabled: on}
		return nil
	}
	type plain ExplainOptions
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("explain: want true, false or {\"steps\", \"baseline\", \"heatmap\"}: %w", err)
	}
	*o = ExplainOptions(p)
	o.Enabled = true
	return nil
}

// Explanation is one prediction's integrated-gradients attribution for
// its predicted class.
type Explanation struct {
	// Method is "integrated_gradients".
	Method string `json:"method"`
	// Baseline is "zeros" or "request" (the request's baseline).
	Baseline string `json:"baseline"`
	// Steps is the number of integration steps (midpoint rule).
	Steps int `json:"steps"`
	// Attributions holds one value per input feature, in the input's
	// layout; they sum to Logit − BaselineLogit up to CompletenessError.
	Attributions []float32 `json:"attributions"`
	// Logit and BaselineLogit are the class's logit at the input and at
	// the baseline.
	Logit         float32 `json:"logit"`
	BaselineLogit float32 `json:"baseline_logit"`
	// CompletenessError is Σ attributions − (logit − baseline_logit).
	CompletenessError float32 `json:"completeness_error"`
	// HeatmapPNG is a base64 PNG of |attribution| summed over channels,
	// HeatmapScale pixels per input pixel, when asked for.
	HeatmapPNG string `json:"heatmap_png,omitempty"`
}

var errExplainRequest = errors.New("agent: bad explanation request")

// explain answers a predict request that asks for explanations: the
// predictions, and for each its attributions.
func (s *inferenceServer) explain(w http.ResponseWriter, cur *servedModel, x []float32, n int, opt *ExplainOptions) {
	m := cur.model
	steps := opt.Steps
	if steps == 0 {
		steps = tensor.DefaultIGSteps
	}
	switch {
	case steps < 0 || steps > tensor.MaxIGSteps:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("explain.steps %d: want 1 to %d", opt.Steps, tensor.MaxIGSteps))
		return
	case n*steps > MaxExplainPasses:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d inputs × %d steps exceeds %d passes; split the batch or lower explain.steps", n, steps, MaxExplainPasses))
		return
	case opt.Baseline != nil && len(opt.Baseline) != m.Features():
		writeError(w, http.StatusBadRequest, fmt.Sprintf("explain.baseline has %d values; model %d takes %d", len(opt.Baseline), cur.version, m.Features()))
		return
	case opt.Heatmap && len(m.Spec.Input) != 3:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("explain.heatmap: model %d's input %v is not an image [channels, height, width]", cur.version, m.Spec.Input))
		return
	}
	for i, v := range opt.Baseline {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("explain.baseline feature %d is not finite", i))
			return
		}
	}
	probs, err := m.Predict(x, n)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "prediction failed: "+err.Error())
		return
	}
	c := m.Classes()
	if rows := nonFiniteRows(probs, n, c); len(rows) > 0 {
		s.respond(w, cur, probs, n, nil) // the 422 answer
		return
	}
	classes := make([]int, n)
	for i := range classes {
		classes[i] = argmax(probs[i*c : (i+1)*c])
	}
	atts, err := m.Explain(x, n, classes, tensor.ExplainConfig{Steps: steps, Baseline: opt.Baseline})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "explanation failed: "+err.Error())
		return
	}
	base := "zeros"
	if opt.Baseline != nil {
		base = "request"
	}
	resp := PredictResponse{ModelVersion: cur.version, Predictions: make([]Prediction, n)}
	for i, a := range atts {
		p := Prediction{Class: a.Class, Probabilities: probs[i*c : (i+1)*c]}
		if len(s.classNames) == c {
			p.Label = s.classNames[a.Class]
		}
		e := &Explanation{Method: "integrated_gradients", Baseline: base, Steps: steps, Attributions: a.Values,
			Logit: a.Logit, BaselineLogit: a.BaselineLogit, CompletenessError: float32(a.CompletenessError())}
		if opt.Heatmap {
			img, err := Heatmap(a.Values, m.Spec.Input, HeatmapScale)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "heat map: "+err.Error())
				return
			}
			e.HeatmapPNG = base64.StdEncoding.EncodeToString(img)
		}
		p.Explanation = e
		resp.Predictions[i] = p
	}
	s.m.samples.Add(uint64(n))
	writeJSON(w, http.StatusOK, resp)
}

// Heatmap renders attributions of an image input (shape [C, H, W]) as a
// PNG: per pixel the sum over channels of |attribution|, scaled so the
// largest is full intensity, on a black–red–yellow–white ramp, each input
// pixel drawn scale × scale.
func Heatmap(attr []float32, shape []int, scale int) ([]byte, error) {
	if len(shape) != 3 || shape[0]*shape[1]*shape[2] != len(attr) || scale < 1 {
		return nil, fmt.Errorf("agent.Heatmap: %d values for shape %v: %w", len(attr), shape, errExplainRequest)
	}
	c, h, wd := shape[0], shape[1], shape[2]
	mag := make([]float64, h*wd)
	top := 0.0
	for ch := range c {
		for p := range mag {
			mag[p] += math.Abs(float64(attr[ch*h*wd+p]))
		}
	}
	for _, v := range mag {
		top = max(top, v)
	}
	img := image.NewRGBA(image.Rect(0, 0, wd*scale, h*scale))
	for y := range h {
		for x := range wd {
			t := 0.0
			if top > 0 {
				t = mag[y*wd+x] / top
			}
			col := heatColor(t)
			for dy := range scale {
				for dx := range scale {
					img.SetRGBA(x*scale+dx, y*scale+dy, col)
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("agent.Heatmap: %w", err)
	}
	return buf.Bytes(), nil
}

// heatColor maps t in [0, 1] to black → red → yellow → white.
func heatColor(t float64) color.RGBA {
	ch := func(v float64) uint8 { return uint8(math.Round(255 * min(1, max(0, v)))) }
	return color.RGBA{R: ch(3 * t), G: ch(3*t - 1), B: ch(3*t - 2), A: 255}
}
