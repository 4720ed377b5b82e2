package testcluster_test

import (
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
)

// TestClusterLeaderChange is the multi-node test that also runs under the
// race detector in `make test`: 3 coordinators over QUIC, 3 agents, a
// SecAgg+ round of a small model, then the leader stops and the new leader
// commits the next rounds. It trains logistic regression on 300 examples
// per agent so the race detector's slowdown stays within its deadlines.
func TestClusterLeaderChange(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 200, Partition: "iid"})
	deadline := api.Duration(60 * time.Second)
	job := c.StartJob(api.JobSpec{
		Name: "race", Model: "logreg", Rounds: 3, Fraction: 1, MinClients: 3, Seed: 1,
		Plan:     api.LocalPlan{Epochs: 1, BatchSize: 20, LR: 0.1},
		SecAgg:   api.SecAggSpec{Enabled: true},
		Deadline: api.Deadlines{Download: deadline, Train: deadline, Stage: deadline},
	})
	first := c.WaitCommitted(job, 1, 180*time.Second)
	if s := first[0].Metrics["survivors"]; s != 3 {
		t.Fatalf("round 1: %v survivors, want 3", s)
	}
	li, _ := c.Leader()
	c.StopNode(li)
	rounds := c.WaitCommitted(job, 3, 240*time.Second)
	ni, nl := c.Leader()
	if ni == li {
		t.Fatalf("node %d still leads after it stopped", li)
	}
	// Every committed round made its own model version, none lost.
	versions := map[uint64]bool{}
	for _, r := range rounds {
		if r.State == api.RoundCommitted {
			versions[r.ModelOut] = true
		}
	}
	nl.FSM().Read(func(s *coordinator.State) {
		for v := range versions {
			if _, ok := s.Models[v]; !ok {
				t.Errorf("committed version %d missing on the new leader", v)
			}
		}
	})
	if len(versions) < 3 {
		t.Fatalf("%d distinct committed versions, want 3", len(versions))
	}
}
