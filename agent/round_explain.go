package agent

import (
	"context"
	"fmt"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// explainRound computes the local part of a model's global explanation —
// per feature, the summed absolute integrated-gradients attribution over
// the first MaxExamples held-out examples, and their count — and sends it
// under SecAgg+ as exact fixed-point values: the coordinator learns only
// the federation's totals.
func (a *Agent) explainRound(ctx context.Context, c conn, st *roundState, req *protocol.ExplainRequest) error {
	cfg, pid, err := a.roundConfig(req.SecAgg)
	if err != nil {
		return err
	}
	ho := a.data.heldOut
	if int(req.Features) != ho.Features() {
		return fmt.Errorf("the model takes %d features, local data has %d", req.Features, ho.Features())
	}
	if want := protocol.FixedLen(ho.Features() + 1); cfg.Dim != want {
		return fmt.Errorf("explanation secagg dimension %d, want %d", cfg.Dim, want)
	}
	if req.Steps == 0 || req.Steps > tensor.MaxIGSteps {
		return fmt.Errorf("explanation with %d steps, want 1 to %d", req.Steps, tensor.MaxIGSteps)
	}
	st.stage.Store(uint32(protocol.StageTrain))
	m, err := a.modelFor(ctx, c, req.ModelVersion, req.ModelHash)
	if err != nil {
		return err
	}
	if err := a.data.fitsModel(req.ModelVersion, m.Spec); err != nil {
		return err
	}
	x, err := explainVector(m, ho, int(req.MaxExamples), int(req.Steps))
	if err != nil {
		return fmt.Errorf("explaining model %d: %w", req.ModelVersion, err)
	}
	a.log.Debug("explained held-out data", "round", req.RoundID, "model", req.ModelVersion, "examples", min(ho.Len(), int(req.MaxExamples)))
	if a.observeUpdate != nil {
		a.observeUpdate(nil, x)
	}
	return a.secureSum(ctx, c, st, cfg, pid, x)
}

// explainVector returns an agent's input to an explanation round: the
// attribution sums of up to n examples of ds, then their count, encoded
// for an exact secure sum.
func explainVector(m *tensor.Model, ds *tensor.Dataset, n, steps int) ([]uint32, error) {
	sums, count, err := tensor.AttributionSums(m, ds, n, steps)
	if err != nil {
		return nil, err
	}
	return protocol.EncodeFixed(append(sums, float64(count)))
}
