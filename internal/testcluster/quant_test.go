package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/tensor"
)

// TestQuantizedRolloutGatedAndPromoted trains the 2nn for two rounds on
// four agents, makes the result the stable model, then rolls it out with
// Quantize int8: the cluster registers an int8 version of it, the
// canaries calibrate and evaluate it against the float baseline on their
// held-out data under SecAgg+, the gate promotes it, and every agent then
// serves it in int8 on /v1/predict and says so on /v1/model.
func TestQuantizedRolloutGatedAndPromoted(t *testing.T) {
	heavy(t) // 86 s under the race detector; the agent's quantized serving has race-tested unit tests
	c := testcluster.New(t, testcluster.Options{Agents: 4, Shards: 100, Partition: "iid"})
	job := fedAvgJob(2)
	job.MinClients = 4
	rounds := c.WaitCommitted(c.StartJob(job), 2, 120*time.Second)
	float := rounds[len(rounds)-1].ModelOut
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cohorts, err := api.ParseCohorts("canary=100%,all=100%")
	if err != nil {
		t.Fatal(err)
	}
	// The trained float model becomes the baseline (an operator's promote).
	ro, err := c.Admin.Rollouts().Start(ctx, api.RolloutRequest{Model: float, Cohorts: cohorts, Gate: "accuracy>=0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Admin.Rollouts().Act(ctx, api.RolloutActionRequest{ID: ro.ID, Action: api.ActionPromote, Reason: "baseline for the int8 test"}); err != nil {
		t.Fatal(err)
	}
	// The int8 rollout of the same version.
	ro, err = c.Admin.Rollouts().Start(ctx, api.RolloutRequest{Model: float, Cohorts: cohorts, Gate: "accuracy>=baseline-2", Quantize: tensor.QuantizeInt8})
	if err != nil {
		t.Fatal(err)
	}
	if ro.Model == float || ro.Baseline != float || ro.Quantize != tensor.QuantizeInt8 {
		t.Fatalf("int8 rollout: candidate %d, baseline %d, quantize %q; want a new version against baseline %d", ro.Model, ro.Baseline, ro.Quantize, float)
	}
	m, err := c.Admin.Models().Show(ctx, ro.Model, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fm := mustModel(t, c, float); m.Quantize != tensor.QuantizeInt8 || m.QuantizedFrom != float || m.Hash == fm.Hash || float64(m.Size) > 0.27*float64(fm.Size) {
		t.Fatalf("int8 version %+v: want quantize int8 from %d, its weights rounded to int8 and stored at about a quarter of %d bytes", m, float, fm.Size)
	}
	var final api.Rollout
	if err := wait.Until(ctx, 150*time.Second, func() bool {
		all, err := c.Admin.Rollouts().Status(ctx, api.QueryOptions{})
		if err != nil {
			return false
		}
		for _, r := range all {
			if r.ID == ro.ID {
				final = r
			}
		}
		return final.State == api.RolloutPromoted || final.State == api.RolloutRolledBack
	}); err != nil {
		t.Fatalf("int8 rollout did not finish: %v (%+v)", err, final)
	}
	if final.State != api.RolloutPromoted {
		t.Fatalf("int8 rollout %s: %+v", final.State, final.Decisions)
	}
	gated := 0
	for _, d := range final.Decisions {
		if e := d.Evidence; d.By == "gate" && e != nil {
			gated++
			t.Logf("%s: %s, int8 candidate %.2f%% (loss sum %.4f) vs float baseline %.2f%% (%.4f) on %d agents (%.0f held-out examples)",
				final.StageName(d.Stage), d.Action, e.CandidateAccuracy, e.CandidateLossSum, e.BaselineAccuracy, e.BaselineLossSum, e.Agents, e.CandidateTotal)
			if e.CandidateTotal == 0 || e.CandidateTotal != e.BaselineTotal || e.Agents < 3 {
				t.Fatalf("evidence %+v", e)
			}
			// The int8 version's weights in float32 would give nearly the
			// float loss; a different loss shows the canaries ran int8.
			if e.CandidateLossSum == e.BaselineLossSum {
				t.Fatalf("candidate and baseline loss sums are both %v: the candidate was not evaluated quantized", e.CandidateLossSum)
			}
		}
	}
	if gated != 2 {
		t.Fatalf("%d gate decisions with evidence, want one per stage: %+v", gated, final.Decisions)
	}
	// Every agent serves the int8 version, quantized, on the same API.
	test, err := mnistTest()
	if err != nil {
		t.Fatal(err)
	}
	for _, ag := range c.Fleet {
		addr := ag.Daemon().InferenceAddr()
		var info agent.ModelInfo
		if err := wait.Until(ctx, 60*time.Second, func() bool {
			info = agent.ModelInfo{}
			return getJSON(addr+"/v1/model", &info) == nil && info.Version == ro.Model
		}); err != nil {
			t.Fatalf("agent %d serves %d, want %d", ag.Index, info.Version, ro.Model)
		}
		if info.Quantized != tensor.QuantizeInt8 || info.Spec.Quantize != tensor.QuantizeInt8 {
			t.Fatalf("agent %d: /v1/model says quantized %q (spec %q), want int8", ag.Index, info.Quantized, info.Spec.Quantize)
		}
		body, _ := json.Marshal(agent.PredictRequest{Inputs: [][]float32{test.X[:784]}})
		resp, err := http.Post("http://"+addr+"/v1/predict", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var pr agent.PredictResponse
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || pr.ModelVersion != ro.Model || len(pr.Predictions) != 1 {
			t.Fatalf("agent %d predict: %d %v %+v", ag.Index, resp.StatusCode, err, pr)
		}
	}
}

func mustModel(t *testing.T, c *testcluster.Cluster, v uint64) api.Model {
	t.Helper()
	m, err := c.Admin.Models().Show(context.Background(), v, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func getJSON(url string, v any) error {
	resp, err := http.Get("http://" + url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
