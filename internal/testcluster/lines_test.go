package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/wait"
)

// TestTwoModelLines: two jobs with two model names ("2nn" and "logreg")
// train on the same agents over real QUIC and Raft; each model is its own
// line with its own rollout, both rollouts run at once and are promoted by
// their gates, and every agent then serves both models on their own
// paths while /v1/predict and /v1/model keep serving the default line
// (the cluster's first model). An agent whose configuration accepts only
// the digits job declines the other job's rounds with a reason the job's
// status shows, and does not serve the other line.
func TestTwoModelLines(t *testing.T) {
	const limited = 3
	c := testcluster.New(t, testcluster.Options{Agents: 4, Shards: 100, Partition: "iid", Agent: func(i int, cfg *agent.Config) {
		if i == limited {
			cfg.Jobs = agent.JobsConfig{Allow: []string{"digits-*"}, Models: []string{"2nn"}}
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	digits := fedAvgJob(1)
	digits.Name = "digits"
	linear := fedAvgJob(1)
	linear.Name, linear.Model = "linear", "logreg"
	// The cluster's first model makes the default line: the digits job
	// commits its first version before the linear job starts (the leader
	// runs both jobs' rounds at once, so which first model commits first
	// would otherwise be a race).
	digitsID := c.StartJob(digits)
	if err := wait.Until(ctx, 60*time.Second, func() bool {
		j, err := c.Admin.Jobs().Status(ctx, digitsID, api.QueryOptions{})
		return err == nil && j.Model != 0
	}); err != nil {
		t.Fatalf("the digits job's first model: %v", err)
	}
	linearID := c.StartJob(linear)
	v2nn := c.WaitCommitted(digitsID, 1, 120*time.Second)[0].ModelOut
	vLog := c.WaitCommitted(linearID, 1, 120*time.Second)[0].ModelOut

	job, err := c.Admin.Jobs().Status(ctx, linearID, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	limitedID := c.Fleet[limited].Daemon().ID()
	declined := false
	for _, e := range job.AgentErrors {
		declined = declined || (e.Agent == limitedID && strings.Contains(e.Reason, "not accepted by this agent"))
	}
	if !declined {
		t.Fatalf("job %s status shows agent errors %+v; want agent %s declining it", linearID, job.AgentErrors, limitedID)
	}

	// One rollout per line, both active at once.
	cohorts, err := api.ParseCohorts("all=100%")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range []uint64{v2nn, vLog} {
		ro, err := c.Admin.Rollouts().Start(ctx, api.RolloutRequest{Model: v, Cohorts: cohorts, Gate: "accuracy>=0"})
		if err != nil {
			t.Fatalf("rollout of %d: %v", v, err)
		}
		ids = append(ids, ro.ID)
	}
	if err := wait.Until(ctx, 150*time.Second, func() bool {
		all, err := c.Admin.Rollouts().Status(ctx, api.QueryOptions{})
		if err != nil {
			return false
		}
		promoted := 0
		for _, r := range all {
			if (r.ID == ids[0] || r.ID == ids[1]) && r.State == api.RolloutPromoted {
				promoted++
			}
		}
		return promoted == 2
	}); err != nil {
		t.Fatalf("the two rollouts were not both promoted: %v", err)
	}
	st, err := c.Admin.Cluster().Status(ctx, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Stable != v2nn || st.Lines["2nn"] != v2nn || st.Lines["logreg"] != vLog {
		t.Fatalf("cluster status: stable %d, lines %v; want 2nn at %d and logreg at %d", st.Stable, st.Lines, v2nn, vLog)
	}

	test, err := mnistTest()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(agent.PredictRequest{Inputs: [][]float32{test.X[:784]}})
	for _, ag := range c.Fleet {
		addr := ag.Daemon().InferenceAddr()
		want := map[string]uint64{"2nn": v2nn, "logreg": vLog}
		if ag.Index == limited {
			want = map[string]uint64{"2nn": v2nn}
		}
		var list agent.ModelsResponse
		if err := wait.Until(ctx, 60*time.Second, func() bool {
			list = agent.ModelsResponse{}
			if getJSON(addr+"/v1/models", &list) != nil || len(list.Models) != len(want) {
				return false
			}
			for _, m := range list.Models {
				if want[m.Name] != m.Version {
					return false
				}
			}
			return list.Models[0].Name == "2nn" && list.Models[0].Default
		}); err != nil {
			t.Fatalf("agent %d serves %+v, want %v with 2nn the default", ag.Index, list.Models, want)
		}
		paths := map[string]uint64{"/v1/predict": v2nn, "/v1/models/2nn/predict": v2nn, "/v1/models/logreg/predict": vLog}
		for path, v := range paths {
			resp, err := http.Post("http://"+addr+path, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var pr agent.PredictResponse
			err = json.NewDecoder(resp.Body).Decode(&pr)
			resp.Body.Close()
			switch {
			case ag.Index == limited && path == "/v1/models/logreg/predict":
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("agent %d (logreg not accepted) %s: %d, want 404", ag.Index, path, resp.StatusCode)
				}
			case err != nil || resp.StatusCode != http.StatusOK || pr.ModelVersion != v || len(pr.Predictions) != 1 || len(pr.Predictions[0].Probabilities) != 10:
				t.Fatalf("agent %d %s: %d %v %+v, want model %d", ag.Index, path, resp.StatusCode, err, pr, v)
			}
		}
		var info agent.ModelInfo
		if err := getJSON(addr+"/v1/model", &info); err != nil || info.Version != v2nn || info.Spec.Name != "2nn" {
			t.Fatalf("agent %d /v1/model: %v %+v, want the 2nn at %d", ag.Index, err, info, v2nn)
		}
	}
}
