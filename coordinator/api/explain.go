package api

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBadExplain reports an explanation request out of bounds.
var ErrBadExplain = errors.New("bad explanation request")

// Verbs of the global explanation of a model version.
const (
	// VerbModelsExplain runs an explanation round for a version and
	// answers with the explanation it stored (a write: the leader runs it).
	VerbModelsExplain = "models.explain"
	// VerbModelsExplanation reads a version's stored explanation.
	VerbModelsExplanation = "models.explanation"
)

// Bounds and defaults of an explanation round.
const (
	// DefaultExplainSteps is the integration step count when
	// ExplainRequest.Steps is zero; at most MaxExplainSteps.
	DefaultExplainSteps = 32
	MaxExplainSteps     = 1024
	// DefaultExplainExamples is how many held-out examples each agent
	// explains when ExplainRequest.MaxExamples is zero; at most
	// MaxExplainExamples.
	DefaultExplainExamples = 256
	MaxExplainExamples     = 100_000
)

// ExplainRequest asks for the global explanation of model Version: the
// mean absolute integrated-gradients attribution of each input feature to
// the predicted class, over the held-out data of every agent that takes
// part, securely aggregated. Zero values mean the defaults.
type ExplainRequest struct {
	Version uint64 `json:"version"`
	// Steps is the number of integration steps (zero baseline); zero
	// means DefaultExplainSteps.
	Steps int `json:"steps,omitempty"`
	// MaxExamples bounds the held-out examples each agent explains; zero
	// means DefaultExplainExamples.
	MaxExamples int `json:"max_examples,omitempty"`
	// Selector limits the agents to those with these labels; empty: the
	// version's job's selector, or every agent.
	Selector map[string]string `json:"selector,omitempty"`
	// Deadline bounds the agents' work (download and explanation), and
	// each secure-aggregation stage; zero fields mean 60 s, 300 s and 30 s.
	Deadline Deadlines `json:"deadline,omitempty"`
}

// Normalize fills in the defaults and checks the bounds.
func (r *ExplainRequest) Normalize() error {
	if r.Version == 0 {
		return fmt.Errorf("%w: explain: a model version is required", ErrBadExplain)
	}
	if r.Steps == 0 {
		r.Steps = DefaultExplainSteps
	}
	if r.MaxExamples == 0 {
		r.MaxExamples = DefaultExplainExamples
	}
	if r.Steps < 0 || r.Steps > MaxExplainSteps || r.MaxExamples < 0 || r.MaxExamples > MaxExplainExamples {
		return fmt.Errorf("%w: explain: steps %d (1 to %d), max_examples %d (1 to %d)", ErrBadExplain, r.Steps, MaxExplainSteps, r.MaxExamples, MaxExplainExamples)
	}
	if r.Deadline.Download == 0 {
		r.Deadline.Download = Duration(60 * time.Second)
	}
	if r.Deadline.Train == 0 {
		r.Deadline.Train = Duration(300 * time.Second)
	}
	if r.Deadline.Stage == 0 {
		r.Deadline.Stage = Duration(30 * time.Second)
	}
	return nil
}

// ModelExplanation is a version's global explanation, stored with it.
type ModelExplanation struct {
	Version uint64 `json:"version"`
	// Shape is the model's input shape (e.g. [1 28 28]); Importance has
	// one value per input feature in that layout: the mean over the
	// explained examples of |attribution| to the predicted class.
	Shape      []int     `json:"shape"`
	Importance []float64 `json:"importance"`
	// Examples and Agents count what the secure sum covered.
	Examples int `json:"examples"`
	Agents   int `json:"agents"`
	// Steps and MaxExamples are the round's settings; the baseline is
	// all zeros.
	Steps       int       `json:"steps"`
	MaxExamples int       `json:"max_examples"`
	Round       uint64    `json:"round"`
	At          time.Time `json:"at"`
}

// Explain runs an explanation round for a version and returns the stored
// result; it takes as long as the round (pass a ctx that allows it).
func (x *ModelCalls) Explain(ctx context.Context, r ExplainRequest) (ModelExplanation, error) {
	return call[ModelExplanation](ctx, x.c, VerbModelsExplain, r)
}

// Explanation returns the stored explanation of a version.
func (x *ModelCalls) Explanation(ctx context.Context, version uint64, q QueryOptions) (ModelExplanation, error) {
	return read[ModelExplanation](ctx, x.c, VerbModelsExplanation, q, VersionRequest{Version: version})
}
