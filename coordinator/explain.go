package coordinator

import (
	"fmt"
	"slices"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

// ExplanationRecord is a model version's global explanation, stored with
// it (ModelRecord.Explanation): per input feature, the mean absolute
// integrated-gradients attribution to the predicted class over the
// held-out examples of the agents of an explanation round, from their
// secure sum.
type ExplanationRecord struct {
	Shape       []int     `json:"shape"`
	Importance  []float64 `json:"importance"`
	Examples    int       `json:"examples"`
	Agents      int       `json:"agents"`
	Steps       int       `json:"steps"`
	MaxExamples int       `json:"max_examples"`
	Round       uint64    `json:"round"`
	At          time.Time `json:"at"`
}

// cmdModelExplain stores a model's global explanation (explainCmd). A
// replica that does not know it loses nothing it needs to run rounds, so
// it is optional.
const cmdModelExplain = optionalCmd | 1

// explainCmd stores an explanation with its model version.
type explainCmd struct {
	Version     uint64            `json:"version"`
	Explanation ExplanationRecord `json:"explanation"`
}

func applyModelExplain(s *State, hdr []byte) any {
	var c explainCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	m, ok := s.Models[c.Version]
	if !ok {
		return fmt.Errorf("%w: model %d", ErrNotFound, c.Version)
	}
	n := 1
	for _, d := range c.Explanation.Shape {
		n *= d
	}
	if len(c.Explanation.Shape) == 0 || n != len(c.Explanation.Importance) {
		return fmt.Errorf("%w: explanation of %d values for shape %v", ErrBadEntry, len(c.Explanation.Importance), c.Explanation.Shape)
	}
	x := c.Explanation
	m.Explanation = &x
	return nil
}

func apiExplanation(version uint64, x *ExplanationRecord) api.ModelExplanation {
	return api.ModelExplanation{
		Version: version, Shape: slices.Clone(x.Shape), Importance: slices.Clone(x.Importance),
		Examples: x.Examples, Agents: x.Agents, Steps: x.Steps, MaxExamples: x.MaxExamples, Round: x.Round, At: x.At,
	}
}

// apiModelsExplain runs an explanation round on the leader's engine and
// answers with what it stored.
func (n *Node) apiModelsExplain(c adminCall, r api.ExplainRequest) (*api.ModelExplanation, error) {
	if err := r.Normalize(); err != nil {
		return nil, err
	}
	if err := n.eng.requestExplain(c.ctx, r); err != nil {
		return nil, err
	}
	return n.apiModelsExplanation(c, api.VersionRequest{Version: r.Version})
}

// apiModelsExplanation answers a version's stored explanation.
func (n *Node) apiModelsExplanation(_ adminCall, r api.VersionRequest) (*api.ModelExplanation, error) {
	var out *api.ModelExplanation
	found := false
	n.fsm.Read(func(s *State) {
		m, ok := s.Models[r.Version]
		found = ok
		if ok && m.Explanation != nil {
			x := apiExplanation(r.Version, m.Explanation)
			out = &x
		}
	})
	switch {
	case !found:
		return nil, fmt.Errorf("%w: model %d", ErrNotFound, r.Version)
	case out == nil:
		return nil, fmt.Errorf("%w: model %d has no explanation yet (fedge models explain -run %d)", ErrNotFound, r.Version, r.Version)
	}
	return out, nil
}
