package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// TestPredictExplain: "explain" returns integrated-gradients attributions
// of the predicted class that sum to the change of its logit, a heat map
// for an image model, and clear errors for what cannot be explained.
func TestPredictExplain(t *testing.T) {
	s, srv := newTestInference(t)
	img, err := tensor.NewModel(tensor.Spec{Input: []int{1, 8, 8}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerConv2D, Filters: 4, Kernel: 3, Padding: 1}, {Type: tensor.LayerReLU},
		{Type: tensor.LayerMaxPool, Kernel: 2}, {Type: tensor.LayerFlatten}, {Type: tensor.LayerDropout, Rate: 0.5},
		{Type: tensor.LayerDense, Units: 3}}}, 4)
	if err != nil {
		t.Fatal(err)
	}
	serve(s, 5, img)
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i%9) / 9
	}
	bodyN := func(n int, explain string) []byte {
		rows := make([][]float32, n)
		for i := range rows {
			rows[i] = x
		}
		b, _ := json.Marshal(map[string]any{"inputs": rows, "explain": json.RawMessage(explain)})
		return b
	}
	body := func(explain string) []byte { return bodyN(2, explain) }
	code, out := post(t, srv.URL, body(`{"heatmap": true, "steps": 256}`))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, out)
	}
	var resp PredictResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	probs, _ := img.Predict(x, 1)
	for _, p := range resp.Predictions {
		e := p.Explanation
		if e == nil {
			t.Fatalf("no explanation: %s", out)
		}
		if p.Class != argmax(probs) || e.Method != "integrated_gradients" || e.Baseline != "zeros" || e.Steps != 256 || len(e.Attributions) != 64 {
			t.Fatalf("explanation %+v for class %d (predicted %d)", e, p.Class, argmax(probs))
		}
		var sum float64
		for _, v := range e.Attributions {
			sum += float64(v)
		}
		diff := float64(e.Logit - e.BaselineLogit)
		if math.Abs(sum-diff) > 5e-3+1e-2*math.Abs(diff) || math.Abs(float64(e.CompletenessError)-(sum-diff)) > 1e-4 {
			t.Errorf("attributions sum to %v, logit changed by %v, completeness_error %v", sum, diff, e.CompletenessError)
		}
		raw, err := base64.StdEncoding.DecodeString(e.HeatmapPNG)
		if err != nil {
			t.Fatal(err)
		}
		pic, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if b := pic.Bounds(); b.Dx() != 8*HeatmapScale || b.Dy() != 8*HeatmapScale {
			t.Errorf("heat map is %v, want %d×%d", b, 8*HeatmapScale, 8*HeatmapScale)
		}
	}
	// A baseline of the input itself: nothing to attribute.
	bx, _ := json.Marshal(x)
	code, out = post(t, srv.URL, body(`{"baseline": `+string(bx)+`}`))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, out)
	}
	resp = PredictResponse{}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	if e := resp.Predictions[0].Explanation; e.Baseline != "request" || e.Steps != tensor.DefaultIGSteps || e.Logit != e.BaselineLogit {
		t.Errorf("explanation from the input as baseline: %+v", e)
	}
	code, out = post(t, srv.URL, body(`false`))
	if code != http.StatusOK || strings.Contains(string(out), "explanation") {
		t.Errorf("explain false: %d %s", code, out)
	}
	tests := []struct {
		name    string
		inputs  int
		explain string
		code    int
		want    string
	}{
		{"too many steps", 1, `{"steps": 5000}`, http.StatusBadRequest, "explain.steps"},
		{"too much work", 5, `{"steps": 1024}`, http.StatusRequestEntityTooLarge, "passes"},
		{"short baseline", 1, `{"baseline": [0, 1]}`, http.StatusBadRequest, "explain.baseline"},
		{"unknown option", 1, `{"method": "shap"}`, http.StatusBadRequest, "malformed JSON"},
		{"not a bool", 1, `"yes"`, http.StatusBadRequest, "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := post(t, srv.URL, bodyN(tt.inputs, tt.explain))
			if code != tt.code || !strings.Contains(string(out), tt.want) {
				t.Errorf("status %d %s, want %d mentioning %q", code, out, tt.code, tt.want)
			}
		})
	}
	// A heat map needs an image model.
	serve(s, 6, batchModel(t, 1))
	b, _ := json.Marshal(map[string]any{"inputs": [][]float32{input(1)}, "explain": map[string]bool{"heatmap": true}})
	if code, out := post(t, srv.URL, b); code != http.StatusBadRequest || !strings.Contains(string(out), "heatmap") {
		t.Errorf("heat map of a tabular model: %d %s", code, out)
	}
	b, _ = json.Marshal(map[string]any{"inputs": [][]float32{input(1)}, "explain": true})
	if code, out := post(t, srv.URL, b); code != http.StatusOK || !strings.Contains(string(out), `"attributions"`) {
		t.Errorf("explain true on the 2-layer model: %d %s", code, out)
	}
}
