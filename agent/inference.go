package agent

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedge/fedge/internal/telemetry"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/text"
)

// MaxPredictBody bounds the body of a /v1/predict request (8 MiB: about a
// thousand MNIST images as JSON); larger bodies get 413.
const MaxPredictBody = 8 << 20

// servedModel is an immutable model being served: swapping models replaces
// the pointer, so a request sees either the old model or the new one,
// never a mixture.
type servedModel struct {
	version   uint64
	hash      [32]byte
	rolledOut time.Time
	model     *tensor.Model
	// tok tokenizes raw text for a text model (Spec.Text); nil otherwise.
	tok *text.Tokenizer
	// quant is the int8 form served instead of model when model's spec
	// asks for it (Agent.serveQuantized); nil serves float32.
	quant *tensor.QuantizedModel
}

func newServedModel(files *modelFiles, rec *modelRecord) (*servedModel, error) {
	m, err := files.load(rec.modelData)
	if err != nil {
		return nil, err
	}
	if m.Hash() != rec.hash {
		return nil, fmt.Errorf("%w: model %d does not match its recorded hash", ErrCorruptStore, rec.version)
	}
	return servedFrom(rec, m)
}

// servedFrom wraps m, the model of rec, for serving: a text model gets
// its tokenizer.
func servedFrom(rec *modelRecord, m *tensor.Model) (*servedModel, error) {
	sm := &servedModel{version: rec.version, hash: rec.hash, rolledOut: rec.rolledOut, model: m}
	if m.Spec.Text != nil {
		tok, err := text.New(m.Spec)
		if err != nil {
			return nil, err
		}
		sm.tok = tok
	}
	return sm, nil
}

// openAPIDoc is the inference API's OpenAPI 3 document, served at
// /v1/openapi.json.
//
//go:embed openapi.json
var openAPIDoc []byte

// inferenceServer serves local predictions from the current model.
type inferenceServer struct {
	served *atomic.Pointer[servedModel]
	m      *metrics
	// reg is the agent's registry /metrics serves; nil (tests) means a
	// registry of m and served alone.
	reg    *prometheus.Registry
	health func() healthResponse
	// maxRequests caps the requests served at once (0: no cap).
	maxRequests int
	// classNames name the classes when the local data did (a CSV dataset
	// with classes in the configuration); answers then carry labels.
	classNames []string
	// Request buffers, reused so a single-sample request allocates little
	// beyond its response.
	bodies, inputs, outs sync.Pool
	// batches counts the engine's prediction calls outside the batcher.
	batches atomic.Uint64
	// batch gathers small requests into one engine call; nil: none.
	batch *batcher
	// lines are the served model lines besides the default (served);
	// nil (tests) serves the default line alone.
	lines *servedLines
}

// newInferenceServer returns a server with the limits lim (defaults
// filled in); the caller sets served, m, reg, health and classNames.
func newInferenceServer(lim InferenceLimits) *inferenceServer {
	return &inferenceServer{maxRequests: lim.MaxRequests, batch: newBatcher(time.Duration(lim.BatchWait), lim.MaxBatch)}
}

// PredictRequest is the body of POST /v1/predict: a batch of examples,
// each with the model's number of input features (784 for MNIST models),
// in the model's input layout.
type PredictRequest struct {
	Inputs [][]float32 `json:"inputs"`
	// Explain asks for each prediction's attributions (integrated
	// gradients): true, or options.
	Explain *ExplainOptions `json:"explain,omitempty"`
}

// PredictResponse is the answer of /v1/predict: the version of the model
// that produced every prediction, and for each input its most probable
// class and the class probabilities.
type PredictResponse struct {
	ModelVersion uint64       `json:"model_version"`
	Predictions  []Prediction `json:"predictions"`
}

// Prediction is one input's result: the most probable class, its name
// when the agent's data names its classes, and every class's probability.
type Prediction struct {
	Class         int       `json:"class"`
	Label         string    `json:"label,omitempty"`
	Probabilities []float32 `json:"probabilities"`
	// Explanation is set when the request asked for it.
	Explanation *Explanation `json:"explanation,omitempty"`
}

// ModelInfo is the answer of GET /v1/model.
type ModelInfo struct {
	Version     uint64      `json:"version"`
	Hash        string      `json:"hash"`
	Spec        tensor.Spec `json:"spec"`
	Features    int         `json:"features"`
	Classes     int         `json:"classes"`
	ClassNames  []string    `json:"class_names,omitempty"`
	Params      int         `json:"params"`
	RolledOutAt time.Time   `json:"rolled_out_at"`
	// External is set for a model the agent hands to the reload hook
	// rather than serving (Spec.External lists its tensors).
	External bool `json:"external,omitempty"`
	// Quantized is "int8" when the model is served quantized (its spec
	// asks for it and the agent calibrated it on its held-out data).
	Quantized string `json:"quantized,omitempty"`
}

// healthResponse is the answer of /healthz: Status "ok" (HTTP 200), or
// "degraded" (HTTP 503) with the Reason.
type healthResponse struct {
	Status       string `json:"status"`
	Reason       string `json:"reason,omitempty"`
	ModelVersion uint64 `json:"model_version"`
	Connected    bool   `json:"connected"`
	Enrolled     bool   `json:"enrolled"`
}

type errorResponse struct {
	Error string `json:"error"`
	// Inputs are the rows of the batch the error is about, if it is
	// about some of them.
	Inputs []int `json:"inputs,omitempty"`
}

// nonFiniteRows returns the rows of the n × c probabilities that hold a
// NaN or an infinity.
func nonFiniteRows(p []float32, n, c int) []int {
	var rows []int
	for i := range n {
		for _, v := range p[i*c : (i+1)*c] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				rows = append(rows, i)
				break
			}
		}
	}
	return rows
}

func (s *inferenceServer) handler() http.Handler {
	mux := s.routes()
	if s.maxRequests <= 0 {
		return mux
	}
	slots := make(chan struct{}, s.maxRequests)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			mux.ServeHTTP(w, r)
		default:
			// Full: answer at once rather than queue (a queue is what a
			// slow client would fill).
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("busy: %d requests in progress; retry later", s.maxRequests))
			path := r.URL.Path
			if h, pattern := mux.Handler(r); h == nil || pattern == "" {
				path = "other" // bounded label values
			}
			s.m.request(path, http.StatusServiceUnavailable)
		}
	})
}

func (s *inferenceServer) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/v1/predict", s.instrument("/v1/predict", http.MethodPost, s.predict))
	mux.Handle("/v1/model", s.instrument("/v1/model", http.MethodGet, s.modelInfo))
	mux.Handle("/healthz", s.instrument("/healthz", http.MethodGet, s.healthz))
	s.lineRoutes(mux)
	reg := s.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(s.m, servedCollector{s.served})
	}
	mux.Handle("/metrics", s.instrument("/metrics", http.MethodGet, telemetry.Handler(reg, nil).ServeHTTP))
	mux.Handle("/v1/openapi.json", s.instrument("/v1/openapi.json", http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPIDoc)
	}))
	return mux
}

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// instrument checks the method and counts the request by status code;
// predict requests also feed the latency histogram.
func (s *inferenceServer) instrument(path, method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			sw.Header().Set("Allow", method)
			writeError(sw, http.StatusMethodNotAllowed, "use "+method)
		} else {
			h(sw, r)
		}
		s.m.request(path, sw.code)
		if path == "/v1/predict" || path == linePredictPath {
			s.m.observe(time.Since(start))
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorResponse{Error: msg})
}

func (s *inferenceServer) predict(w http.ResponseWriter, r *http.Request) {
	cur := s.served.Load()
	if cur == nil {
		writeError(w, http.StatusServiceUnavailable, "no model yet: the agent has not received a global model")
		return
	}
	s.predictWith(w, r, cur)
}

// predictWith answers a predict request with the served model cur.
func (s *inferenceServer) predictWith(w http.ResponseWriter, r *http.Request, cur *servedModel) {
	m := cur.model
	if m.Spec.IsExternal() {
		writeError(w, http.StatusConflict, fmt.Sprintf("model %d is external: this model is served by your reload hook, not by /v1/predict", cur.version))
		return
	}
	kind := bodyKind(r)
	if kind != "" && kind != contentTypeTensor {
		s.predictImages(w, r, cur, kind)
		return
	}
	left := s.batch.arrive()
	defer left()
	f := m.Features()
	bufp := getBuf[byte](&s.bodies)
	defer putBuf(&s.bodies, bufp)
	body, err := readBody((*bufp)[:0], http.MaxBytesReader(w, r.Body, MaxPredictBody), r.ContentLength)
	*bufp = body
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes; split the batch", MaxPredictBody))
		return
	} else if err != nil {
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	xp := getBuf[float32](&s.inputs)
	defer putBuf(&s.inputs, xp)
	var x []float32
	var n int
	var explain *ExplainOptions
	switch {
	case kind == contentTypeTensor && cur.tok != nil:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("model %d takes text: send JSON texts, not a binary tensor", cur.version))
		return
	case kind == contentTypeTensor:
		x, n, err = decodeTensor((*xp)[:0], body, f)
	case cur.tok != nil:
		x, n, err = decodeTextPredict((*xp)[:0], body, cur)
	default:
		x, n, explain, err = decodeInputs((*xp)[:0], body, m.Spec)
	}
	*xp = x
	if err != nil {
		var typeErr *json.UnmarshalTypeError
		var width *rowWidthError
		var rowsErr *rowsError
		var sizeErr *tensorSizeError
		if msg, ok := isTextRequestError(err); ok {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
		switch {
		case errors.As(err, &sizeErr):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("model %d: %v", cur.version, sizeErr))
		case errors.As(err, &rowsErr):
			writeError(w, http.StatusBadRequest, rowsErr.Error())
		case errors.As(err, &width):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("input %d has %d features; model %d takes %d", width.row, width.got, cur.version, f))
		case errors.As(err, &typeErr) && strings.HasPrefix(typeErr.Value, "number"):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid input at %s: every feature must be a finite float32", typeErr.Field))
		default:
			writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		}
		return
	}
	if n == 0 && cur.tok != nil {
		writeError(w, http.StatusBadRequest, `no texts: send {"texts": ["...", ...]}`)
		return
	}
	if n == 0 && kind == contentTypeTensor {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("empty body: send rows of %d little-endian float32 features", f))
		return
	}
	if n == 0 {
		writeError(w, http.StatusBadRequest, `no inputs: send {"inputs": [[...], ...]}`)
		return
	}
	for k, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("input %d feature %d is not finite", k/f, k%f))
			return
		}
	}
	if explain != nil && explain.Enabled {
		s.explain(w, cur, x, n, explain)
		return
	}
	if !s.batch.accepts(n) {
		s.answer(w, cur, x, n)
		return
	}
	s.batch.predict(cur, x, n, func(probs []float32, err error) {
		s.respond(w, cur, probs, n, err)
	})
}

// answer predicts the n examples x (n × the model's features, finite)
// and writes the response.
func (s *inferenceServer) answer(w http.ResponseWriter, cur *servedModel, x []float32, n int) {
	s.batches.Add(1)
	probs, err := cur.predict(x, n)
	s.respond(w, cur, probs, n, err)
}

// respond writes the response for n examples whose probabilities the
// model cur returned (or the error it failed with).
func (s *inferenceServer) respond(w http.ResponseWriter, cur *servedModel, probs []float32, n int, err error) {
	if err != nil {
		writeError(w, http.StatusInternalServerError, "prediction failed: "+err.Error())
		return
	}
	c := cur.model.Classes()
	if rows := nonFiniteRows(probs, n, c); len(rows) > 0 {
		// Finite inputs so large that the model's float32 arithmetic
		// overflowed: the client can fix them (scale the features), the
		// server cannot.
		writeJSON(w, http.StatusUnprocessableEntity, errorResponse{
			Error: fmt.Sprintf("model %d's output is not finite for %d of %d inputs (features too large for float32 arithmetic; scale them): inputs %v",
				cur.version, len(rows), n, rows[:min(len(rows), 10)]),
			Inputs: rows,
		})
		return
	}
	bp := getBuf[byte](&s.outs)
	*bp = appendPredictResponse((*bp)[:0], cur.version, probs, n, c, s.classNames)
	s.m.samples.Add(uint64(n))
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(*bp)
	putBuf(&s.outs, bp)
}

// jsonContentType is the Content-Type header value of JSON answers,
// shared so setting it does not allocate.
var jsonContentType = []string{"application/json"}

// maxPooled is the largest buffer kept for reuse (bytes or values), so a
// rare big batch does not pin its memory.
const maxPooled = 256 << 10

func getBuf[T any](p *sync.Pool) *[]T {
	if b, ok := p.Get().(*[]T); ok {
		return b
	}
	return new([]T)
}

func putBuf[T any](p *sync.Pool, b *[]T) {
	if cap(*b) <= maxPooled {
		p.Put(b)
	}
}

// readBody reads r into dst, growing it once to the announced length.
func readBody(dst []byte, r io.Reader, length int64) ([]byte, error) {
	if length > 0 && length <= MaxPredictBody && int64(cap(dst)) < length+1 {
		dst = make([]byte, 0, length+1)
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		k, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+k]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

func argmax(p []float32) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

func (s *inferenceServer) modelInfo(w http.ResponseWriter, r *http.Request) {
	cur := s.served.Load()
	if cur == nil {
		writeError(w, http.StatusServiceUnavailable, "no model yet")
		return
	}
	writeJSON(w, http.StatusOK, s.info(cur))
}

// info describes the served model cur.
func (s *inferenceServer) info(cur *servedModel) ModelInfo {
	info := ModelInfo{
		Version: cur.version, Hash: hex.EncodeToString(cur.hash[:]), Spec: cur.model.Spec,
		Features: cur.model.Features(), Classes: cur.model.Classes(), Params: cur.model.NumParams(),
		RolledOutAt: cur.rolledOut.UTC(), External: cur.model.Spec.IsExternal(),
	}
	info.Quantized = cur.quantized()
	if len(s.classNames) == info.Classes {
		info.ClassNames = s.classNames
	}
	return info
}

func (s *inferenceServer) healthz(w http.ResponseWriter, r *http.Request) {
	h := s.health()
	code := http.StatusOK
	if h.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}
