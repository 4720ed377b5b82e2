package coordinator

import (
	"slices"
	"testing"
	"time"
)

// TestFSMAuditsOperatorActions: starting and stopping a job, revoking an
// agent and deciding on a rollout are recorded in the audit trail when
// the command names an operator, and never for the engine's own updates
// (a job done, a gate's decision) or for entries written before commands
// named one.
func TestFSMAuditsOperatorActions(t *testing.T) {
	h := newHarness(t)
	populate(h) // job1 created without CreatedBy, as older entries are
	spec := JobSpec{Model: "logreg", Rounds: 2}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	h.ok(cmdJobCreate, JobRecord{ID: "job2", Spec: spec, CreatedAt: t0, CreatedBy: "operator:alice (console)"}, nil)
	h.ok(cmdJobUpdate, jobUpdateCmd{ID: "job1", State: JobDone, At: t0}, nil)
	h.ok(cmdJobUpdate, jobUpdateCmd{ID: "job2", State: JobStopped, At: t0.Add(time.Minute), By: "operator:alice (console) via c2"}, nil)
	h.ok(cmdAgentRevoke, revokeCmd{ID: "ag-1", At: t0, By: "operator:bob"}, nil)
	cohorts := []Cohort{{Name: "canary", Percent: 10}, {Name: "all", Percent: 100}}
	h.ok(cmdRolloutCreate, RolloutRecord{ID: "r1", Model: 3, Cohorts: cohorts, Gate: "accuracy>=baseline-0.5", CreatedAt: t0}, nil)
	h.ok(cmdRolloutDecide, decideCmd{ID: "r1", Decision: Decision{Stage: 0, Action: "advance", By: "gate", At: t0}}, nil)
	h.ok(cmdRolloutDecide, decideCmd{ID: "r1", Decision: Decision{Stage: 1, Action: "rollback", By: "operator:alice (console)", Reason: "canary looks off", At: t0}}, nil)
	h.f.Read(func(s *State) {
		want := []string{
			"token.create tok1 ",
			"job.start job2 operator:alice (console)",
			"job.stop job2 operator:alice (console) via c2",
			"agent.revoke ag-1 operator:bob",
			"rollout.rollback r1 operator:alice (console)",
		}
		if got := auditActions(s); !slices.Equal(got, want) {
			t.Errorf("audit %q, want %q", got, want)
		}
	})
}
