package testcluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
)

// TestConcurrentJobsRoundsOverlap runs two SecAgg+ jobs on disjoint
// agents (tier=canary and tier=prod) in one 3-coordinator cluster: their
// rounds overlap in time (the leader runs one round per job at once),
// cluster status shows both jobs' rounds in progress, and each job
// reaches its round count with a model chain of its own that learned.
func TestConcurrentJobsRoundsOverlap(t *testing.T) {
	heavy(t)
	// Each job's agents hold their update until a round of the other job
	// is seen in progress (or 15 s passed): whichever job starts first
	// waits inside its round for the other's, so an engine that runs the
	// jobs' rounds at once overlaps them however fast rounds are, and one
	// that runs them one at a time shows none (the other job's round
	// waits for the held one).
	seen := [2]chan struct{}{make(chan struct{}), make(chan struct{})} // canary's, prod's round seen
	var seenOnce [2]sync.Once
	hold := func(i int, cfg *agent.Config) {
		other := seen[1] // a canary agent (tier=canary: i < 3) waits for prod
		if i >= 3 {
			other = seen[0]
		}
		cfg.OnUpdate = func([]float32, []uint32) {
			select {
			case <-other:
			case <-time.After(15 * time.Second):
			}
		}
	}
	c := testcluster.New(t, testcluster.Options{Agents: 6, Shards: 100, Canaries: 3, Agent: hold})
	c.WaitConnected(6)
	const rounds = 3
	spec := func(name, tier string) api.JobSpec {
		return api.JobSpec{
			Name: name, Model: "logreg", Rounds: rounds, Fraction: 1, MinClients: 3, Seed: 1,
			Selector: map[string]string{"tier": tier},
			Plan:     api.LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
			SecAgg:   api.SecAggSpec{Enabled: true},
			Deadline: api.Deadlines{Download: api.Duration(20 * time.Second), Train: api.Duration(30 * time.Second), Stage: api.Duration(10 * time.Second)},
		}
	}
	// Watch cluster status for both jobs' rounds in progress at once.
	ctx, stop := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex
		together []api.RoundInProgress
		jobIDs   atomic.Value // the canary and prod jobs' IDs once started
	)
	jobIDs.Store([2]string{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			st, err := c.Admin.Cluster().Status(ctx, api.QueryOptions{})
			if err == nil {
				for _, r := range st.RoundsInProgress {
					for k, id := range jobIDs.Load().([2]string) {
						if id != "" && r.Job == id {
							seenOnce[k].Do(func() { close(seen[k]) })
						}
					}
				}
			}
			if err == nil && len(st.RoundsInProgress) >= 2 && st.RoundsInProgress[0].Job != st.RoundsInProgress[1].Job {
				mu.Lock()
				together = st.RoundsInProgress
				mu.Unlock()
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	a := c.StartJob(spec("canary", "canary"))
	jobIDs.Store([2]string{a, ""})
	b := c.StartJob(spec("prod", "prod"))
	jobIDs.Store([2]string{a, b})
	ra := c.WaitCommitted(a, rounds, 240*time.Second)
	rb := c.WaitCommitted(b, rounds, 240*time.Second)
	stop()
	<-watched

	requireOverlap(t, ra, rb, "the leader ran them one at a time")
	mu.Lock()
	if len(together) < 2 {
		t.Errorf("cluster status never showed both jobs' rounds in progress at once")
	} else {
		t.Logf("cluster status showed rounds in progress %+v", together)
	}
	mu.Unlock()

	for _, job := range []struct {
		id, tier string
		rounds   []api.Round
	}{{a, "canary", ra}, {b, "prod", rb}} {
		parent := job.rounds[0].ModelIn
		for _, r := range job.rounds {
			if r.State != api.RoundCommitted || r.Metrics["survivors"] != 3 {
				t.Fatalf("job %s round %d: %s %q survivors %v", job.id, r.Number, r.State, r.Error, r.Metrics["survivors"])
			}
			if r.ModelIn != parent {
				t.Fatalf("job %s round %d started from model %d, want its previous round's %d", job.id, r.Number, r.ModelIn, parent)
			}
			parent = r.ModelOut
			for _, p := range r.Participants {
				if agentTier(t, c, p) != job.tier {
					t.Fatalf("job %s round %d had agent %s outside tier=%s", job.id, r.Number, p, job.tier)
				}
			}
		}
		first, last := testAccuracy(t, c, job.rounds[0].ModelIn), testAccuracy(t, c, parent)
		if last < 0.8 || last < first+0.3 {
			t.Fatalf("job %s: test accuracy %.3f -> %.3f after %d rounds", job.id, first, last, rounds)
		}
		t.Logf("job %s: test accuracy %.3f -> %.3f", job.id, first, last)
	}
	assertSameModels(t, c)
}

// agentTier returns the tier label of agent id as the cluster records it.
func agentTier(t *testing.T, c *testcluster.Cluster, id string) string {
	t.Helper()
	agents, err := c.Admin.Agents().List(context.Background(), api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if a.ID == id {
			return a.Labels["tier"]
		}
	}
	t.Fatalf("agent %s is not enrolled", id)
	return ""
}

// BenchmarkConcurrentJobs measures the wall time of two 5-round SecAgg+
// jobs of logistic regression on disjoint agents (3 each) in a
// 3-coordinator cluster, started together, with the leader running one
// round at a time (max_concurrent_rounds 1) and the default 4.
//
//	go test -run '^$' -bench ConcurrentJobs -benchtime 3x ./internal/testcluster/
func BenchmarkConcurrentJobs(b *testing.B) {
	const rounds = 5
	for _, max := range []int{1, 4} {
		b.Run(fmt.Sprintf("max_concurrent_rounds=%d", max), func(b *testing.B) {
			c := testcluster.New(b, testcluster.Options{Agents: 6, Shards: 100, Canaries: 3,
				Node: func(_ int, cfg *coordinator.Config) { cfg.MaxConcurrentRounds = max }})
			c.WaitConnected(6)
			spec := func(tier string) api.JobSpec {
				return api.JobSpec{
					Name: tier, Model: "logreg", Rounds: rounds, Fraction: 1, MinClients: 3, Seed: 1,
					Selector: map[string]string{"tier": tier},
					Plan:     api.LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
					SecAgg:   api.SecAggSpec{Enabled: true},
					Deadline: api.Deadlines{Download: api.Duration(20 * time.Second), Train: api.Duration(30 * time.Second), Stage: api.Duration(10 * time.Second)},
				}
			}
			b.ResetTimer()
			var total time.Duration
			for range b.N {
				start := time.Now()
				x, y := c.StartJob(spec("canary")), c.StartJob(spec("prod"))
				c.WaitCommitted(x, rounds, 300*time.Second)
				c.WaitCommitted(y, rounds, 300*time.Second)
				total += time.Since(start)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/two-jobs")
		})
	}
}

// TestAgentConcurrencyLetsJobsShareAgents: agents whose jobs.concurrent
// is 2 report it in their heartbeats, so the leader runs rounds of two
// jobs that each need all three agents at the same time, with the same
// participants; at the default of 1 such rounds could only alternate.
func TestAgentConcurrencyLetsJobsShareAgents(t *testing.T) {
	heavy(t)
	// The agents hold each update until rounds of both jobs were seen in
	// progress at once (or 15 s passed), so the rounds meet however fast
	// they run; with one round per agent the second job's round cannot
	// start while the first's is held, and none overlap.
	both := make(chan struct{})
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 100, Agent: func(_ int, cfg *agent.Config) {
		cfg.Jobs.Concurrent = 2
		cfg.OnUpdate = func([]float32, []uint32) {
			select {
			case <-both:
			case <-time.After(15 * time.Second):
			}
		}
	}})
	c.WaitConnected(3)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		defer close(both)
		for ctx.Err() == nil {
			if st, err := c.Admin.Cluster().Status(ctx, api.QueryOptions{}); err == nil && len(st.RoundsInProgress) >= 2 &&
				st.RoundsInProgress[0].Job != st.RoundsInProgress[1].Job {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	const rounds = 3
	// Different seeds: two identical initial models would be one blob.
	spec := func(name string, seed uint64) api.JobSpec {
		return api.JobSpec{
			Name: name, Model: "logreg", Rounds: rounds, Fraction: 1, MinClients: 3, Seed: seed,
			Plan:     api.LocalPlan{Epochs: 10, BatchSize: 10, LR: 0.1},
			SecAgg:   api.SecAggSpec{Enabled: true},
			Deadline: api.Deadlines{Download: api.Duration(20 * time.Second), Train: api.Duration(30 * time.Second), Stage: api.Duration(10 * time.Second)},
		}
	}
	a := c.StartJob(spec("first", 1))
	b := c.StartJob(spec("second", 2))
	// Only committed rounds count: a round may fail when an agent, just
	// out of its previous round, has not let go of it yet.
	committed := func(rs []api.Round) []api.Round {
		var out []api.Round
		for _, r := range rs {
			if r.State == api.RoundCommitted {
				if len(r.Participants) != 3 {
					t.Fatalf("job %s round %d committed with participants %v, want all 3 agents", r.Job, r.Number, r.Participants)
				}
				out = append(out, r)
			}
		}
		return out
	}
	ra := committed(c.WaitCommitted(a, rounds, 240*time.Second))
	rb := committed(c.WaitCommitted(b, rounds, 240*time.Second))
	requireOverlap(t, ra, rb, "the agents' jobs.concurrent 2 was not honoured")
}

// requireOverlap fails t unless a round of ra overlapped one of rb in
// time, logging every round's interval and why when none did.
func requireOverlap(t *testing.T, ra, rb []api.Round, why string) {
	t.Helper()
	overlaps := 0
	for _, x := range ra {
		for _, y := range rb {
			if x.StartedAt.Before(y.EndedAt) && y.StartedAt.Before(x.EndedAt) {
				overlaps++
			}
		}
	}
	if overlaps == 0 {
		for _, r := range append(ra, rb...) {
			t.Logf("job %s round %d: %v .. %v", r.Job, r.Number, r.StartedAt.Format(time.StampMilli), r.EndedAt.Format(time.StampMilli))
		}
		t.Fatalf("no round of one job overlapped a round of the other: %s", why)
	}
	t.Logf("%d pairs of overlapping rounds of the two jobs", overlaps)
}
