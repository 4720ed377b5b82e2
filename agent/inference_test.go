package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedge/fedge/tensor"
)

func newTestInference(t *testing.T) (*inferenceServer, *httptest.Server) {
	t.Helper()
	s := &inferenceServer{served: new(atomic.Pointer[servedModel]), m: newMetrics()}
	s.health = func() healthResponse {
		return healthResponse{Status: "ok", ModelVersion: versionOf(s.served.Load())}
	}
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	return s, srv
}

func versionOf(s *servedModel) uint64 {
	if s == nil {
		return 0
	}
	return s.version
}

func serve(s *inferenceServer, version uint64, m *tensor.Model) {
	s.served.Store(&servedModel{version: version, hash: m.Hash(), rolledOut: time.Unix(1700000000, 0), model: m})
}

// input returns one MNIST-shaped example whose pixels depend on k.
func input(k int) []float32 {
	x := make([]float32, 784)
	for i := range x {
		x[i] = float32((i*7+k*13)%256) / 255
	}
	return x
}

func predictBody(rows ...[]float32) []byte {
	b, _ := json.Marshal(PredictRequest{Inputs: rows})
	return b
}

func post(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestInferenceCodes(t *testing.T) {
	s, srv := newTestInference(t)
	if code, body := post(t, srv.URL, predictBody(input(0))); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "no model") {
		t.Fatalf("no model: %d %s", code, body)
	}
	resp, err := http.Get(srv.URL + "/v1/model")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/v1/model without a model: %d", resp.StatusCode)
	}

	m, _ := testModel(t, 1)
	serve(s, 4, m)
	code, body := post(t, srv.URL, predictBody(input(1), input(2)))
	if code != http.StatusOK {
		t.Fatalf("predict: %d %s", code, body)
	}
	var pr PredictResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		t.Fatal(err)
	}
	want, _ := m.Predict(append(input(1), input(2)...), 2)
	if pr.ModelVersion != 4 || len(pr.Predictions) != 2 {
		t.Fatalf("response %+v", pr)
	}
	for i, p := range pr.Predictions {
		w := want[i*10 : (i+1)*10]
		if !equalFloats(p.Probabilities, w) || p.Class != argmax(w) {
			t.Fatalf("prediction %d = %+v, want %v", i, p, w)
		}
	}

	big := bytes.Repeat([]byte(" "), MaxPredictBody+1)
	tests := []struct {
		name string
		body []byte
		code int
		msg  string
	}{
		{"malformed JSON", []byte(`{"inputs": [[1,2,`), http.StatusBadRequest, "malformed JSON"},
		{"not an object", []byte(`[1,2,3]`), http.StatusBadRequest, "malformed JSON"},
		{"unknown field", []byte(`{"input": [[1]]}`), http.StatusBadRequest, "unknown field"},
		{"wrong feature count", predictBody(input(0), make([]float32, 783)), http.StatusBadRequest, "input 1 has 783 features"},
		{"non-finite", []byte(`{"inputs": [[1e39` + strings.Repeat(",0", 783) + `]]}`), http.StatusBadRequest, "finite"},
		{"NaN literal", []byte(`{"inputs": [[NaN]]}`), http.StatusBadRequest, "malformed JSON"},
		{"no inputs", []byte(`{"inputs": []}`), http.StatusBadRequest, "no inputs"},
		{"trailing data", append(predictBody(input(0)), []byte(`{}`)...), http.StatusBadRequest, "trailing"},
		{"too large", append([]byte(`{"inputs": [[0`), big...), http.StatusRequestEntityTooLarge, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, srv.URL, tt.body)
			if code != tt.code || !strings.Contains(string(body), tt.msg) {
				t.Fatalf("got %d %s, want %d with %q", code, body, tt.code, tt.msg)
			}
			var e errorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("error body %q is not {\"error\": ...}", body)
			}
		})
	}

	resp, err = http.Get(srv.URL + "/v1/predict")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Fatalf("GET /v1/predict: %d allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	var info ModelInfo
	getJSON(t, srv.URL+"/v1/model", &info)
	h := m.Hash()
	if info.Version != 4 || info.Hash != fmt.Sprintf("%x", h[:]) || info.Features != 784 || info.Classes != 10 ||
		info.Params != m.NumParams() || info.Spec.Name != m.Spec.Name || !info.RolledOutAt.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("model info %+v", info)
	}
	var health healthResponse
	getJSON(t, srv.URL+"/healthz", &health)
	if health.Status != "ok" || health.ModelVersion != 4 {
		t.Fatalf("health %+v", health)
	}

	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("metrics content type %q", ct)
	}
	for _, want := range []string{
		`fedge_agent_http_requests_total{code="200",path="/v1/predict"} 1`,
		`fedge_agent_http_requests_total{code="400",path="/v1/predict"} 8`,
		`fedge_agent_http_requests_total{code="413",path="/v1/predict"} 1`,
		`fedge_agent_http_requests_total{code="503",path="/v1/predict"} 1`,
		`fedge_agent_http_requests_total{code="405",path="/v1/predict"} 1`,
		`fedge_agent_predict_duration_seconds_count 12`,
		`fedge_agent_predict_duration_seconds_bucket{le="+Inf"} 12`,
		"fedge_agent_model_version 4",
		"fedge_agent_predicted_samples_total 2",
		"# TYPE fedge_agent_predict_duration_seconds histogram",
		"fedge_agent_rounds_joined_total 0",
		"fedge_agent_round_bytes_sent_total 0",
	} {
		if !strings.Contains(string(mt), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, mt)
		}
	}
	checkPromText(t, string(mt))
}

// checkPromText checks the exposition with the Prometheus text parser:
// every family parses, and histogram buckets are cumulative.
func checkPromText(t *testing.T, text string) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			last := uint64(0)
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetCumulativeCount() < last {
					t.Fatalf("%s: buckets not cumulative at le=%v", name, b.GetUpperBound())
				}
				last = b.GetCumulativeCount()
			}
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInferenceSwapUnderLoad swaps between two models as fast as it can
// while clients predict: every request must succeed and its probabilities
// must be exactly those of the version it names.
func TestInferenceSwapUnderLoad(t *testing.T) {
	s, srv := newTestInference(t)
	models := map[uint64]*tensor.Model{}
	want := map[uint64][]float32{}
	x := input(3)
	for v := uint64(1); v <= 2; v++ {
		m, _ := testModel(t, v*100)
		models[v] = m
		want[v], _ = m.Predict(x, 1)
	}
	if equalFloats(want[1], want[2]) {
		t.Fatal("test models predict alike")
	}
	serve(s, 1, models[1])
	body := predictBody(x)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

	stop := make(chan struct{})
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := uint64(2); ; v = 3 - v {
			select {
			case <-stop:
				return
			default:
			}
			serve(s, v, models[v])
			swaps.Add(1)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	const clients, perClient = 8, 150
	var seen [3]atomic.Int64
	errs := make(chan error, clients)
	var cw sync.WaitGroup
	for range clients {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for range perClient {
				resp, err := client.Post(srv.URL+"/v1/predict", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				var pr PredictResponse
				err = json.NewDecoder(resp.Body).Decode(&pr)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("status %d, %v", resp.StatusCode, err)
					return
				}
				w, ok := want[pr.ModelVersion]
				if !ok || len(pr.Predictions) != 1 || !equalFloats(pr.Predictions[0].Probabilities, w) {
					errs <- fmt.Errorf("response of version %d does not carry that version's probabilities", pr.ModelVersion)
					return
				}
				seen[pr.ModelVersion].Add(1)
			}
		}()
	}
	cw.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if seen[1].Load() == 0 || seen[2].Load() == 0 || swaps.Load() < 10 {
		t.Fatalf("load did not straddle swaps: v1 %d, v2 %d, swaps %d", seen[1].Load(), seen[2].Load(), swaps.Load())
	}
	t.Logf("%d requests, %d swaps (v1 %d, v2 %d)", clients*perClient, swaps.Load(), seen[1].Load(), seen[2].Load())
}

// TestPredictHugeInputs sends finite inputs near the float32 limit: logits
// that overflow to +Inf still give probabilities (200), and a row whose
// output is NaN is a 422 naming that row, never a 500.
func TestPredictHugeInputs(t *testing.T) {
	s, srv := newTestInference(t)
	m, _ := smallModel(t, 1)
	for i := range m.Params {
		m.Params[i] = 1e30 // every product with a huge input overflows
	}
	serve(s, 7, m)
	huge := make([]float32, 12)
	for i := range huge {
		huge[i] = 1e38
	}
	code, body := post(t, srv.URL, predictBody(huge, input(0)[:12]))
	if code != http.StatusOK {
		t.Fatalf("overflowing logits: %d %s", code, body)
	}
	var pr PredictResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		t.Fatal(err)
	}
	for _, p := range pr.Predictions[0].Probabilities {
		if p < 0.333 || p > 0.334 {
			t.Fatalf("three +Inf logits: probabilities %v, want a third each", pr.Predictions[0].Probabilities)
		}
	}

	// Two layers: the hidden units overflow to +Inf, and the output layer's
	// weights of both signs make +Inf - Inf = NaN.
	spec := tensor.Spec{Name: "deep", Input: []int{12}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 2}, {Type: tensor.LayerDense, Units: 3}}}
	deep, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	w1, b1 := deep.LayerParams(0)
	for _, v := range [][]float32{w1, b1} {
		for i := range v {
			v[i] = 1e30
		}
	}
	w2, _ := deep.LayerParams(1)
	for i := range w2 {
		w2[i] = 1e30 * float32(1-2*(i%2))
	}
	serve(s, 8, deep)
	code, body = post(t, srv.URL, predictBody(input(0)[:12], huge))
	var er errorResponse
	if err := json.Unmarshal(body, &er); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusUnprocessableEntity || len(er.Inputs) != 1 || er.Inputs[0] != 1 || !strings.Contains(er.Error, "not finite") {
		t.Fatalf("NaN output for input 1: %d %s", code, body)
	}
}

// TestOpenAPIDocument: /v1/openapi.json is a valid OpenAPI 3 document
// that describes every path the server routes.
func TestOpenAPIDocument(t *testing.T) {
	_, srv := newTestInference(t)
	resp, err := http.Get(srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	paths := []string{"/v1/predict", "/v1/model", "/v1/models", "/v1/models/{name}", "/v1/models/{name}/predict", "/healthz", "/metrics", "/v1/openapi.json"}
	for _, p := range paths {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("the document lacks %s", p)
		}
		// And the server routes it (not the mux's plain-text 404; an
		// unknown model's 404 is a JSON error).
		r, err := http.Get(srv.URL + strings.ReplaceAll(p, "{name}", "x"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == http.StatusNotFound && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s is documented but not routed", p)
		}
	}
	if len(doc.Paths) != len(paths) {
		t.Errorf("%d documented paths, the server routes %d", len(doc.Paths), len(paths))
	}
}

// TestPredictLabels: when the agent's data names its classes, answers
// carry the name of each predicted class, and /v1/model lists them.
func TestPredictLabels(t *testing.T) {
	s, srv := newTestInference(t)
	m, _ := testModel(t, 3)
	names := make([]string, m.Classes())
	for i := range names {
		names[i] = fmt.Sprintf("class-%c", 'a'+i)
	}
	s.classNames = names
	serve(s, 2, m)
	code, body := post(t, srv.URL, predictBody(input(1), input(2)))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var pr PredictResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		t.Fatal(err)
	}
	for i, p := range pr.Predictions {
		if p.Label != names[p.Class] {
			t.Errorf("prediction %d: class %d label %q, want %q", i, p.Class, p.Label, names[p.Class])
		}
	}
	resp, err := http.Get(srv.URL + "/v1/model")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info ModelInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || len(info.ClassNames) != len(names) {
		t.Fatalf("model info class names %v (%v)", info.ClassNames, err)
	}
}
