package testcluster_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// heavy skips tests that train many rounds when the race detector slows
// everything tenfold.
func heavy(t *testing.T) {
	if raceEnabled {
		t.Skip("trains for many rounds; run without -race")
	}
}

// mnistTest is the MNIST test set, read once for the package's tests.
var mnistTest = sync.OnceValues(func() (*tensor.Dataset, error) {
	dir, err := mnist.Dir(context.Background())
	if err != nil {
		return nil, err
	}
	_, test, err := data.LoadMNIST(dir)
	return test, err
})

func testAccuracy(t *testing.T, c *testcluster.Cluster, version uint64) float64 {
	t.Helper()
	test, err := mnistTest()
	if err != nil {
		t.Fatal(err)
	}
	met, err := c.Admin.EvaluateModel(context.Background(), version, test)
	if err != nil {
		t.Fatal(err)
	}
	return met.Accuracy()
}

// fedAvgJob is the FedAvg paper's client setup (E=1, B=10, 600 examples per
// client) with secure aggregation on.
func fedAvgJob(rounds int) api.JobSpec {
	return api.JobSpec{
		Name: "fedavg", Model: "2nn", Rounds: rounds, Fraction: 1, MinClients: 3, Seed: 1,
		Plan:     api.LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		SecAgg:   api.SecAggSpec{Enabled: true},
		Deadline: api.Deadlines{Download: api.Duration(5 * time.Second), Train: api.Duration(15 * time.Second), Stage: api.Duration(5 * time.Second)},
	}
}

// TestFederatedMNISTQuick is the quick version of the FedAvg experiment:
// 10 real agents, each holding 600 IID examples of MNIST (1/100 of the
// training set, as in the paper), train the 2nn under SecAgg+ over QUIC
// with a 3-node Raft cluster.
func TestFederatedMNISTQuick(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 10, Shards: 100, Partition: "iid"})
	job := c.StartJob(fedAvgJob(5))
	rounds := c.WaitCommitted(job, 5, 180*time.Second)
	last := rounds[len(rounds)-1]
	for _, r := range rounds {
		if r.State != api.RoundCommitted || r.Metrics["survivors"] != 10 {
			t.Fatalf("round %d: %s %q survivors %v", r.Number, r.State, r.Error, r.Metrics["survivors"])
		}
	}
	acc := testAccuracy(t, c, last.ModelOut)
	if acc < 0.88 {
		t.Fatalf("test accuracy after 5 federated rounds: %.4f, want >= 0.88", acc)
	}
	t.Logf("5 rounds: test accuracy %.2f%%", 100*acc)
	// Every node holds the same committed models.
	assertSameModels(t, c)
	// Each agent downloaded every round's start model; from the second
	// on it held the previous one and got a lossless delta.
	file := modelFile(t, c, last.ModelOut)
	for _, ag := range c.Fleet {
		addr := ag.Daemon().InferenceAddr()
		got := agentMetric(t, addr, "fedge_agent_model_download_bytes_total")
		if deltas := agentMetric(t, addr, "fedge_agent_model_delta_downloads_total"); deltas < 4 {
			t.Fatalf("agent %d: %v delta downloads in 5 rounds, want 4 (%.0f bytes)", ag.Index, deltas, got)
		}
		if ag.Index == 0 {
			t.Logf("agent 0: %.0f download bytes for 5 rounds, %.2f of 5 full model files of %d bytes", got, got/float64(5*len(file)), len(file))
		}
	}
	// The rounds count what they pushed: full files in the first (up to
	// ten: an agent that fetched the job's first model for serving before
	// the round asked for it is not counted again), ten deltas after it.
	for i, r := range rounds {
		perAgent := float64(r.BytesOut) / 10 / float64(len(file))
		t.Logf("round %d: %d bytes out, %.2f model files per agent", r.Number, r.BytesOut, perAgent)
		if (i == 0 && !(perAgent > 0.5 && perAgent < 1.1)) || (i > 0 && !(perAgent > 0.3 && perAgent < 0.8)) {
			t.Fatalf("round %d pushed %.2f model files per agent", r.Number, perAgent)
		}
	}
}

// modelFile returns the model file of a committed version, the unit in
// which pushes are measured.
func modelFile(t *testing.T, c *testcluster.Cluster, version uint64) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.Admin.FetchModel(ctx, version)
	if err != nil {
		t.Fatal(err)
	}
	file, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// agentMetric reads one sample of an agent's Prometheus metrics.
func agentMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("agent metrics have no %s", name)
	return 0
}

// assertSameModels checks that every running node holds identical model
// versions (hash and bytes) once the followers caught up.
func assertSameModels(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	_, leader := c.Leader()
	var want map[uint64]string
	leader.FSM().Read(func(s *coordinator.State) {
		want = map[uint64]string{}
		for v, m := range s.Models {
			want[v] = m.BlobHash
		}
	})
	testutil.WaitFor(c.T, 30*time.Second, "followers to hold the leader's models", func() bool {
		for _, n := range c.Nodes {
			if n == nil {
				continue
			}
			same := true
			n.FSM().Read(func(s *coordinator.State) {
				if len(s.Models) != len(want) {
					same = false
					return
				}
				for v, m := range s.Models {
					if m.BlobHash != want[v] || (m.BlobHash != "" && !n.FSM().Blobs().Has(m.BlobHash)) {
						same = false
					}
				}
			})
			if !same {
				return false
			}
		}
		return true
	})
}

// TestLeaderKilledMidRound kills the leader while a round runs: the new
// leader aborts that round and the job goes on; nothing committed is lost
// and all nodes end with identical models, the restarted one included.
func TestLeaderKilledMidRound(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 5, Shards: 100})
	job := c.StartJob(fedAvgJob(4))
	c.WaitCommitted(job, 1, 120*time.Second)
	li, leader := c.Leader()
	testutil.WaitFor(c.T, 60*time.Second, "a round in flight", func() bool {
		running := false
		leader.FSM().Read(func(s *coordinator.State) {
			for _, r := range s.Rounds {
				running = running || r.State == api.RoundRunning
			}
		})
		return running
	})
	var committedBefore int
	var inFlight uint64
	leader.FSM().Read(func(s *coordinator.State) {
		committedBefore = len(s.Models)
		for id, r := range s.Rounds {
			if r.State == api.RoundRunning {
				inFlight = id
			}
		}
	})
	c.StopNode(li)
	rounds := c.WaitCommitted(job, 4, 180*time.Second)
	// The round in flight never commits: the dying leader records it failed
	// (its agents' sessions closed first) or, after a crash, the new leader
	// marks it aborted.
	for _, r := range rounds {
		if r.ID == inFlight && r.State != api.RoundAborted && r.State != api.RoundFailed {
			t.Fatalf("round %d, in flight when the leader died, ended %s", r.ID, r.State)
		}
	}
	_, nl := c.Leader()
	nl.FSM().Read(func(s *coordinator.State) {
		if len(s.Models) < committedBefore+3 {
			t.Fatalf("models %d, had %d before the kill", len(s.Models), committedBefore)
		}
	})
	c.StartNode(li)
	assertSameModels(t, c)

	// Restart every node: the state comes back from disk.
	var models, roundsN int
	nl.FSM().Read(func(s *coordinator.State) { models, roundsN = len(s.Models), len(s.Rounds) })
	for i := range c.Nodes {
		c.StopNode(i)
	}
	for i := range c.Nodes {
		c.StartNode(i)
	}
	_, rl := c.Leader()
	testutil.WaitFor(c.T, 30*time.Second, "state restored", func() bool {
		ok := false
		rl.FSM().Read(func(s *coordinator.State) { ok = len(s.Models) == models && len(s.Rounds) == roundsN })
		return ok
	})
	assertSameModels(t, c)
}

// TestAgentsVanishMidRound stops 30% of the agents while a round runs: the
// round commits the survivors' aggregate (or fails cleanly) and the next
// rounds commit with the rest. The exact-sum property under dropouts at
// each SecAgg+ stage is tested in coordinator (engine) and crypto/secagg.
func TestAgentsVanishMidRound(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 10, Shards: 100})
	job := c.StartJob(fedAvgJob(3))
	c.WaitCommitted(job, 1, 120*time.Second)
	_, leader := c.Leader()
	testutil.WaitFor(c.T, 60*time.Second, "round 2 in flight", func() bool {
		running := false
		leader.FSM().Read(func(s *coordinator.State) {
			for _, r := range s.Rounds {
				running = running || (r.State == api.RoundRunning && r.Number == 2)
			}
		})
		return running
	})
	for _, a := range c.Fleet[:3] {
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	rounds := c.WaitCommitted(job, 3, 180*time.Second)
	last := rounds[len(rounds)-1]
	if last.Metrics["survivors"] != 7 {
		t.Fatalf("last round had %v survivors, want the 7 remaining agents", last.Metrics["survivors"])
	}
	// A stopped agent restarts from its data dir with its identity and
	// model, and rejoins.
	a := c.Fleet[0]
	id := a.Config.DataDir
	a.Config.JoinToken = "" // a restart must not need the token again
	if err := a.Start(testcluster.Logger()); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(8)
	if got := a.Daemon().ID(); got == "" {
		t.Fatalf("restarted agent (data dir %s) has no identity", id)
	}
}

// TestDifferentialPrivacyJob runs a job with distributed Gaussian noise
// and adaptive clipping: the agents clip and noise their updates (and
// their clip bits) before masking, the rounds commit, the clip moves from
// round to round, and the job's privacy account grows with each round.
func TestDifferentialPrivacyJob(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 5, Shards: 100})
	spec := fedAvgJob(2)
	spec.DP = api.DPSpec{Enabled: true, Clip: 1e-3, NoiseMultiplier: 0.5, Adaptive: true}
	job := c.StartJob(spec)
	rounds := c.WaitCommitted(job, 2, 120*time.Second)
	// Every 2nn update is far longer than 1e-3: the clip must grow, and
	// the second round runs with the clip the first one published.
	c0, c1 := rounds[0].Metrics["clip_norm"], rounds[1].Metrics["clip_norm"]
	if !(c0 == 1e-3 && c1 > c0 && c1 == rounds[0].Metrics["next_clip_norm"]) {
		t.Fatalf("clip per round: %v then %v (published %v)", c0, c1, rounds[0].Metrics["next_clip_norm"])
	}
	if !(rounds[1].Metrics["epsilon"] > rounds[0].Metrics["epsilon"] && rounds[0].Metrics["epsilon"] > 0) {
		t.Fatalf("epsilon per round: %v then %v", rounds[0].Metrics["epsilon"], rounds[1].Metrics["epsilon"])
	}
	var js api.Job
	if err := c.Admin.Call(context.Background(), api.VerbJobsStatus, api.QueryOptions{}, api.IDRequest{ID: job}, &js); err != nil {
		t.Fatal(err)
	}
	if js.Privacy == nil || js.Privacy.Rounds != 2 || js.Privacy.Epsilon != rounds[1].Metrics["epsilon"] {
		t.Fatalf("job privacy account %+v", js.Privacy)
	}
}

// TestStandardizedJob runs a job that standardizes its features over the
// real parts: the agents' per-feature statistics are summed under SecAgg+
// over QUIC, the first model carries a standardize layer built from them,
// and training goes on from it.
func TestStandardizedJob(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 4, Shards: 100, Partition: "iid"})
	spec := fedAvgJob(2)
	spec.Data.Standardize = true
	spec.Plan.LR = 0.02 // standardized inputs are larger than raw pixels
	job := c.StartJob(spec)
	rounds := c.WaitCommitted(job, 2, 120*time.Second)
	var stats *api.Round
	for _, r := range c.Rounds(job) {
		if r.Kind == api.RoundStats {
			stats = &r
		}
	}
	if stats == nil || stats.State != api.RoundCommitted || stats.Metrics["survivors"] != 4 || stats.Metrics["features"] != 784 {
		t.Fatalf("statistics round %+v", stats)
	}
	t.Logf("statistics round: %d agents, %v examples, %.2f s, %d bytes in, %d out", len(stats.Participants),
		stats.Metrics["examples"], stats.Metrics["seconds"], stats.BytesIn, stats.BytesOut)
	// 4 agents × 600 examples (1/100 of the training set each), of which
	// each keeps 10% held out for evaluation: 4 × 540 train.
	if stats.Metrics["examples"] != 2160 {
		t.Fatalf("statistics over %v examples, want 2160", stats.Metrics["examples"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.Admin.FetchModel(ctx, rounds[0].ModelIn)
	if err != nil {
		t.Fatal(err)
	}
	first := m.Spec.Layers[0]
	if first.Type != tensor.LayerStandardize || len(first.Shift) != 784 {
		t.Fatalf("first model begins with %q (%d shifts)", first.Type, len(first.Shift))
	}
	// MNIST's corner pixels are 0 everywhere; the centre is bright.
	if first.Shift[0] != 0 || !(first.Shift[14*28+14] > 0.2) {
		t.Fatalf("pixel means: corner %v centre %v", first.Shift[0], first.Shift[14*28+14])
	}
	if acc := testAccuracy(t, c, rounds[1].ModelOut); acc < 0.8 {
		t.Fatalf("test accuracy after 2 standardized rounds: %.4f", acc)
	}
}

// TestLargeModelRound trains a model whose masked inputs exceed a stage
// message, and even a whole frame (protocol.DefaultMaxFrame): over QUIC,
// each agent uploads its masked vector as a resumable bulk blob and the
// round commits the sum.
func TestLargeModelRound(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 100, Partition: "iid"})
	spec := fedAvgJob(1)
	spec.Model = ""
	spec.Spec = []byte(`{"name": "wide", "input": [784], "layers": [{"type": "dense", "units": 5400}, {"type": "relu"}, {"type": "dense", "units": 10}]}`)
	job := c.StartJob(spec)
	rounds := c.WaitCommitted(job, 1, 120*time.Second)
	r := rounds[0]
	const params = 784*5400 + 5400 + 5400*10 + 10
	if 4*params <= protocol.DefaultMaxFrame {
		t.Fatalf("%d parameters fit in one frame", params)
	}
	if r.State != api.RoundCommitted || r.Metrics["survivors"] != 3 || r.BytesIn < 3*4*params {
		t.Fatalf("round %+v", r)
	}
	t.Logf("%d-parameter model: %d bytes in, %.2f s", params, r.BytesIn, r.Metrics["seconds"])
	if acc := testAccuracy(t, c, r.ModelOut); acc < 0.5 {
		t.Fatalf("accuracy %.3f after one round", acc)
	}
}

// TestQuantizedPushJob runs a job that pushes int8 deltas over QUIC: after
// the first round each agent receives about a fifth of a model file, and
// ends each round holding exactly the committed version (its downloads
// are checked against the committed hash).
func TestQuantizedPushJob(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 100, Partition: "iid"})
	spec := fedAvgJob(3)
	spec.Push = "int8"
	job := c.StartJob(spec)
	rounds := c.WaitCommitted(job, 3, 120*time.Second)
	file := modelFile(t, c, rounds[2].ModelOut)
	for _, r := range rounds[1:] {
		perAgent := float64(r.BytesOut) / 3 / float64(len(file))
		t.Logf("round %d: %.2f model files per agent", r.Number, perAgent)
		if !(perAgent > 0.1 && perAgent < 0.3) {
			t.Fatalf("round %d pushed %.2f model files per agent", r.Number, perAgent)
		}
	}
	for _, ag := range c.Fleet {
		if d := agentMetric(t, ag.Daemon().InferenceAddr(), "fedge_agent_model_delta_downloads_total"); d < 2 {
			t.Fatalf("agent %d: %v delta downloads", ag.Index, d)
		}
	}
	if acc := testAccuracy(t, c, rounds[2].ModelOut); acc < 0.8 {
		t.Fatalf("test accuracy %.3f after 3 rounds", acc)
	}
}
