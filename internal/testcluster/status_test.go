package testcluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
)

// TestJobSchemaChecked: MNIST agents report their data schema; a gcn job
// (1433 features, 7 classes) is refused at jobs start with the mismatch
// named, and started with force; its first round fails on every agent,
// and by the time it ends agents show says why, the agent's own report
// listing the same failure soon after.
func TestJobSchemaChecked(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1, Agents: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var agents []api.Agent
	testutil.WaitFor(t, 30*time.Second, "status reports of 3 agents", func() bool {
		var err error
		agents, err = c.Admin.Agents().List(ctx, api.QueryOptions{})
		if err != nil || len(agents) != 3 {
			return false
		}
		for _, a := range agents {
			if a.Status == nil {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		st := a.Status
		// 60,000 MNIST examples in 3 shards, 10% held out: about 18,000
		// and 2,000 each, rounded to two digits.
		if st.DataKind != "mnist" || st.Features != 784 || st.Classes != 10 || st.Trainer != "engine" ||
			st.TrainExamples != 18000 || st.HeldOutExamples != 2000 || st.ReportedAt.IsZero() {
			t.Errorf("agent %s reports %+v", a.ID, st)
		}
	}

	job := api.JobSpec{Name: "gcn-on-mnist", Model: "gcn", Rounds: 1, Fraction: 1, MinClients: 3,
		Deadline: api.Deadlines{Train: api.Duration(30 * time.Second)}}
	_, err := c.Admin.Jobs().Start(ctx, job)
	const mismatch = "model gcn takes 1433 features and 7 classes; the 3 connected agents hold 784 features and 10 classes"
	if err == nil || !strings.Contains(err.Error(), mismatch) {
		t.Fatalf("jobs start of gcn on MNIST agents: %v, want the mismatch %q", err, mismatch)
	}
	jobs, err := c.Admin.Jobs().List(ctx, api.QueryOptions{})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("after the refusal: jobs %+v, %v", jobs, err)
	}

	job.Force = true
	j, err := c.Admin.Jobs().Start(ctx, job)
	if err != nil {
		t.Fatalf("jobs start with force: %v", err)
	}
	if j.Spec.Force {
		t.Error("force was stored with the job")
	}
	testutil.WaitFor(t, 60*time.Second, "the first round to end", func() bool {
		for _, r := range c.Rounds(j.ID) {
			if r.State != api.RoundRunning {
				return true
			}
		}
		return false
	})
	const why = "takes 1433 features and 7 classes, local data has 784 and 10"
	for _, a := range c.Fleet {
		id := a.Daemon().ID()
		got, err := c.Admin.Agents().Show(ctx, id, api.QueryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got.LastError, why) {
			t.Errorf("agents show %s after round 1: last error %q, want %q", id, got.LastError, why)
		}
		testutil.WaitFor(t, 10*time.Second, "the failure in "+id+"'s own report", func() bool {
			got, err := c.Admin.Agents().Show(ctx, id, api.QueryOptions{})
			if err != nil || got.Status == nil {
				return false
			}
			for _, e := range got.Status.Events {
				if e.Level == "warn" && strings.Contains(e.Message, why) {
					return true
				}
			}
			return false
		})
	}
}
