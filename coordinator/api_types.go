package coordinator

import "github.com/fedge/fedge/coordinator/api"

// The values an operator submits — a job's specification, a rollout's
// cohorts and gate — are the api package's types, and the cluster stores
// them as submitted inside its own records (JobRecord.Spec,
// RolloutRecord.Cohorts). The records themselves are this package's and
// are converted to api answers at the admin border (admin_convert.go).
type (
	// JobSpec is api.JobSpec.
	JobSpec = api.JobSpec
	// DataSchema is api.DataSchema.
	DataSchema = api.DataSchema
	// LocalPlan is api.LocalPlan.
	LocalPlan = api.LocalPlan
	// StrategySpec is api.StrategySpec.
	StrategySpec = api.StrategySpec
	// SecAggSpec is api.SecAggSpec.
	SecAggSpec = api.SecAggSpec
	// DPSpec is api.DPSpec.
	DPSpec = api.DPSpec
	// Deadlines is api.Deadlines.
	Deadlines = api.Deadlines
	// Duration is api.Duration.
	Duration = api.Duration
	// Cohort is api.Cohort.
	Cohort = api.Cohort
	// Gate is api.Gate.
	Gate = api.Gate
	// Evidence is api.Evidence.
	Evidence = api.Evidence
	// EvalSums is api.EvalSums.
	EvalSums = api.EvalSums
)

// NewEvidence is api.NewEvidence.
func NewEvidence(agents int, cand, base EvalSums) Evidence {
	return api.NewEvidence(agents, cand, base)
}

// ErrInvalidJob is api.ErrInvalidJob; ErrBadGate is api.ErrBadGate.
var (
	ErrInvalidJob = api.ErrInvalidJob
	ErrBadGate    = api.ErrBadGate
)

// ParseGate is api.ParseGate.
func ParseGate(expr string) (Gate, error) { return api.ParseGate(expr) }
