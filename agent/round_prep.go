package agent

import (
	"context"
	"fmt"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor/data"
)

// prepRound sends one phase of a job's data preparation: the vector of
// the job's column rules over the raw CSV training rows (a profile,
// histograms, or the report of cleaning with the resolved columns), as
// exact fixed-point values under secure aggregation. Data the rules
// cannot use fails the round with the file, line and column, and the
// agent goes on serving its model.
func (a *Agent) prepRound(ctx context.Context, c conn, st *roundState, req *protocol.PrepRequest) error {
	cfg, pid, err := a.roundConfig(req.SecAgg)
	if err != nil {
		return err
	}
	if a.data.raw == nil {
		return errNoColumns
	}
	var plan data.PrepPlan
	if err := plan.UnmarshalBinary(req.Plan); err != nil {
		return err
	}
	if plan.Phase != int(req.Phase) {
		return fmt.Errorf("data preparation phase %d with a plan of phase %d", req.Phase, plan.Phase)
	}
	if want := protocol.FixedLen(plan.Len()); cfg.Dim != want {
		return fmt.Errorf("data preparation secagg dimension %d, want %d", cfg.Dim, want)
	}
	st.stage.Store(uint32(protocol.StageTrain))
	r := a.data.raw
	v, err := data.PrepVector(r.table, r.trainRows, &plan)
	if err != nil {
		return fmt.Errorf("%s: %w", r.path, err)
	}
	x, err := protocol.EncodeFixed(v)
	if err != nil {
		return fmt.Errorf("data preparation vector: %w", err)
	}
	a.log.Debug("computed data preparation vector", "round", req.RoundID, "phase", plan.Phase, "values", len(v))
	if a.observeUpdate != nil {
		a.observeUpdate(nil, x)
	}
	return a.secureSum(ctx, c, st, cfg, pid, x)
}
