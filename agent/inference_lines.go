package agent

import (
	"fmt"
	"net/http"
	"time"
)

// Paths of the model lines, as the request metrics label them.
const (
	linesPath       = "/v1/models"
	lineInfoPath    = "/v1/models/{name}"
	linePredictPath = "/v1/models/{name}/predict"
)

// ModelsResponse is the answer of GET /v1/models: every model line the
// agent serves, the default line (the one /v1/predict and /v1/model
// answer with) first.
type ModelsResponse struct {
	Models []ModelSummary `json:"models"`
}

// ModelSummary is one served model line.
type ModelSummary struct {
	// Name is the line's model name; /v1/models/{name}/predict serves it.
	Name        string    `json:"name"`
	Version     uint64    `json:"version"`
	Default     bool      `json:"default,omitempty"`
	Quantized   string    `json:"quantized,omitempty"`
	External    bool      `json:"external,omitempty"`
	RolledOutAt time.Time `json:"rolled_out_at"`
}

func (s *inferenceServer) lineRoutes(mux *http.ServeMux) {
	mux.Handle(linesPath, s.instrument(linesPath, http.MethodGet, s.listModels))
	mux.Handle(lineInfoPath, s.instrument(lineInfoPath, http.MethodGet, s.lineInfo))
	mux.Handle(linePredictPath, s.instrument(linePredictPath, http.MethodPost, s.linePredict))
}

// line returns the model served on line name: the default line's or
// another's; nil if the agent serves no such line.
func (s *inferenceServer) line(name string) *servedModel {
	if cur := s.served.Load(); cur != nil && cur.modelName() == name {
		return cur
	}
	if s.lines == nil {
		return nil
	}
	return s.lines.get(name)
}

func (s *inferenceServer) lineOrError(w http.ResponseWriter, r *http.Request) *servedModel {
	name := r.PathValue("name")
	cur := s.line(name)
	if cur == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no model %q on this agent; GET %s lists the models it serves", name, linesPath))
	}
	return cur
}

func (s *inferenceServer) lineInfo(w http.ResponseWriter, r *http.Request) {
	if cur := s.lineOrError(w, r); cur != nil {
		writeJSON(w, http.StatusOK, s.info(cur))
	}
}

func (s *inferenceServer) linePredict(w http.ResponseWriter, r *http.Request) {
	if cur := s.lineOrError(w, r); cur != nil {
		s.predictWith(w, r, cur)
	}
}

func (s *inferenceServer) listModels(w http.ResponseWriter, r *http.Request) {
	resp := ModelsResponse{Models: []ModelSummary{}}
	add := func(cur *servedModel, def bool) {
		resp.Models = append(resp.Models, ModelSummary{
			Name: cur.modelName(), Version: cur.version, Default: def, Quantized: cur.quantized(),
			External: cur.model.Spec.IsExternal(), RolledOutAt: cur.rolledOut.UTC(),
		})
	}
	if cur := s.served.Load(); cur != nil {
		add(cur, true)
	}
	if s.lines != nil {
		for _, name := range s.lines.names() {
			if cur := s.lines.get(name); cur != nil {
				add(cur, false)
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}
