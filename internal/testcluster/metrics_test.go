package testcluster_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
)

// TestMetricsMoveDuringJob scrapes the leader's and the agents' /metrics
// with the Prometheus text parser before and after a short SecAgg+ job of
// logistic regression, and finds the round, Raft, enrollment and agent
// series where the job put them. Every node answers /readyz 200.
func TestMetricsMoveDuringJob(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 200, Partition: "iid", Metrics: true})
	var (
		leader       *coordinator.Node
		url, job     string
		jobs         int
		before       testutil.Metrics
		agentsBefore []testutil.Metrics
	)
	// A leader change during the job splits its series between nodes; it
	// is not what this test is about (a loaded machine can delay a
	// heartbeat past the election timeout), so the job runs again under
	// the new leader, up to three times.
	for attempt := 1; ; attempt++ {
		jobs = attempt
		_, leader = c.Leader()
		url = "http://" + leader.MetricsAddr() + "/metrics"
		before = testutil.Scrape(t, url)
		agentsBefore = make([]testutil.Metrics, len(c.Fleet))
		for i, ag := range c.Fleet {
			agentsBefore[i] = testutil.Scrape(t, "http://"+ag.Daemon().InferenceAddr()+"/metrics")
		}
		testutil.WaitFor(t, 30*time.Second, "3 agents connected to the leader", func() bool {
			v, _ := testutil.Scrape(t, url).Value("fedge_coordinator_agents_connected")
			return v == 3
		})

		deadline := api.Duration(60 * time.Second)
		job = c.StartJob(api.JobSpec{
			Name: "metrics", Model: "logreg", Rounds: 2, Fraction: 1, MinClients: 3, Seed: 1,
			Plan:     api.LocalPlan{Epochs: 1, BatchSize: 20, LR: 0.1},
			SecAgg:   api.SecAggSpec{Enabled: true},
			Deadline: api.Deadlines{Download: deadline, Train: deadline, Stage: deadline},
		})
		c.WaitCommitted(job, 2, 120*time.Second)
		if _, l := c.Leader(); l == leader {
			break
		}
		if attempt == 3 {
			t.Fatal("the leader changed during each of three jobs; their series are split between nodes")
		}
		t.Logf("the leader changed during job %d; running it again", attempt)
	}
	var after testutil.Metrics
	// The last round's end is recorded just after its commit is visible.
	testutil.WaitFor(t, 10*time.Second, "2 committed training rounds in the leader's metrics", func() bool {
		after = testutil.Scrape(t, url)
		v, _ := after.Value("fedge_coordinator_rounds_total", "kind", "train", "state", "committed")
		return v >= 2
	})

	moved := func(name string, labels ...string) {
		t.Helper()
		b, _ := before.Value(name, labels...)
		a, ok := after.Value(name, labels...)
		if !ok || a <= b {
			t.Errorf("%s%v did not move: %v -> %v (present %v)", name, labels, b, a, ok)
		}
	}
	moved("fedge_coordinator_round_duration_seconds", "kind", "train", "state", "committed")
	for _, stage := range []string{"invite", "advertise_keys", "share_keys", "masked_input", "consistency_check", "unmask"} {
		moved("fedge_coordinator_round_stage_duration_seconds", "kind", "train", "stage", stage)
		if _, ok := after.Value("fedge_coordinator_round_dropouts_total", "kind", "train", "stage", stage); !ok {
			t.Errorf("no fedge_coordinator_round_dropouts_total for stage %s", stage)
		}
	}
	moved("fedge_coordinator_round_bytes_received_total", "kind", "train")
	moved("fedge_coordinator_round_bytes_sent_total", "kind", "train")
	moved("fedge_coordinator_round_busy_seconds", "kind", "train")
	moved("fedge_coordinator_raft_commit_index")
	moved("fedge_coordinator_raft_applied_index")
	moved("fedge_coordinator_raft_apply_duration_seconds")
	if v, _ := after.Value("fedge_coordinator_round_participants", "kind", "train"); v != 3 {
		t.Errorf("fedge_coordinator_round_participants %v, want 3", v)
	}
	if v, _ := after.Value("fedge_coordinator_raft_leader"); v != 1 {
		t.Errorf("the leader's fedge_coordinator_raft_leader is %v", v)
	}
	if v, _ := after.Value("fedge_coordinator_jobs", "state", "done"); v != float64(jobs) {
		t.Errorf("fedge_coordinator_jobs{state=done} %v, want %d", v, jobs)
	}
	if v, _ := after.Value("fedge_build_info"); v != 1 {
		t.Errorf("fedge_build_info %v", v)
	}
	// The fleet enrolled with the first leader; this test's job did not
	// change leaders, so the leader answered every enrollment.
	var enrolled float64
	for _, n := range c.Nodes {
		m := testutil.Scrape(t, "http://"+n.MetricsAddr()+"/metrics")
		v, _ := m.Value("fedge_coordinator_enrollments_total", "result", "ok")
		enrolled += v
		resp, err := http.Get("http://" + n.MetricsAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("node %s: /readyz %d", n.ID(), resp.StatusCode)
		}
	}
	if enrolled != 3 {
		t.Errorf("fedge_coordinator_enrollments_total{result=ok} summed over the nodes: %v, want 3", enrolled)
	}

	// The README's table lists every fedge series the daemons export.
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	agentNow := testutil.Scrape(t, "http://"+c.Fleet[0].Daemon().InferenceAddr()+"/metrics")
	for _, m := range []testutil.Metrics{after, agentNow} {
		for name := range m {
			if strings.HasPrefix(name, "fedge_") && !strings.Contains(string(readme), "| `"+name) {
				t.Errorf("the README's metrics table does not list %s", name)
			}
		}
	}

	for i, ag := range c.Fleet {
		am := testutil.Scrape(t, "http://"+ag.Daemon().InferenceAddr()+"/metrics")
		for _, name := range []string{"fedge_agent_rounds_joined_total", "fedge_agent_rounds_completed_total", "fedge_agent_round_bytes_sent_total",
			"fedge_agent_train_batches_total", "fedge_agent_model_download_bytes_total"} {
			b, _ := agentsBefore[i].Value(name)
			a, ok := am.Value(name)
			if !ok || a <= b {
				t.Errorf("agent %d: %s did not move: %v -> %v", i, name, b, a)
			}
		}
	}
}
