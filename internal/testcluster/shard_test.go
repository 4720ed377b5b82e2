package testcluster_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
)

// shardedJob is a 2nn SecAgg+ job whose rounds shard into groups of at
// least minGroup agents.
func shardedJob(rounds, minClients, minGroup, epochs int) api.JobSpec {
	j := fedAvgJob(rounds)
	j.Name, j.MinClients = "sharded", minClients
	j.Plan.Epochs = epochs
	j.SecAgg = api.SecAggSpec{Enabled: true, Sharded: api.ShardedOn, MinGroup: minGroup}
	return j
}

// slowRaft doubles the loopback Raft timeouts: with a fleet training on
// the same two loaded cores (or under -race), one slow answer would
// otherwise cost the leader its lease and abort the round under test.
func slowRaft(_ int, cfg *coordinator.Config) {
	cfg.Raft = coordinator.RaftTimings{Heartbeat: 2 * time.Second, Election: 2 * time.Second, LeaderLease: 1600 * time.Millisecond, Commit: 10 * time.Millisecond}
}

// updates collects the encoded update each agent masked last.
type updates struct {
	mu sync.Mutex
	x  map[int][]uint32
}

func (u *updates) hook(i int, cfg *agent.Config) {
	cfg.OnUpdate = func(_ []float32, x []uint32) {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.x == nil {
			u.x = map[int][]uint32{}
		}
		u.x[i] = append([]uint32(nil), x...)
	}
}

// TestShardedRoundCommits runs one sharded round over three coordinators
// and six agents (groups of at least 3): the record shows groups on
// several coordinators with every agent surviving, and the committed
// model is the start model plus the mean decoded from the plain ring sum
// of the six encoded updates, which the test adds itself: exactly what
// the leader alone would have unmasked.
func TestShardedRoundCommits(t *testing.T) {
	var ups updates
	c := testcluster.New(t, testcluster.Options{Agents: 6, Shards: 100, Agent: ups.hook, Node: slowRaft, Metrics: true})
	job := c.StartJob(shardedJob(1, 6, 2, 1))
	var r api.Round
	for _, x := range c.WaitCommitted(job, 1, 180*time.Second) {
		if x.State == api.RoundCommitted {
			r = x // the job's one round: every agent's last update is in it
		} else {
			t.Logf("round %d: %s %q", x.ID, x.State, x.Error) // a leader change on a loaded machine
		}
	}
	if r.State != api.RoundCommitted || r.Metrics["survivors"] != 6 {
		t.Fatalf("round: %s %q, survivors %v, groups %+v", r.State, r.Error, r.Metrics["survivors"], r.Groups)
	}
	coords := map[string]bool{}
	agents := 0
	for _, g := range r.Groups {
		coords[g.Coordinator] = true
		agents += g.Agents
		if g.Error != "" || g.Survivors != g.Agents || g.Agents < 3 {
			t.Errorf("group %d on %s: %d agents, %d survivors, error %q", g.Group, g.Coordinator, g.Agents, g.Survivors, g.Error)
		}
	}
	if len(r.Groups) < 2 || len(coords) < 2 || agents != 6 {
		t.Fatalf("groups %+v: want at least 2 on 2 coordinators covering 6 agents", r.Groups)
	}
	t.Logf("groups: %+v", r.Groups)
	checkGroupMetrics(t, c, r)

	// The plain sum of the agents' encoded updates, decoded as the
	// leader decodes a sum.
	ups.mu.Lock()
	if len(ups.x) != 6 {
		ups.mu.Unlock()
		t.Fatalf("%d agents sent an update, want 6", len(ups.x))
	}
	var sum []uint32
	for _, x := range ups.x {
		if sum == nil {
			sum = make([]uint32, len(x))
		}
		if err := secagg.AddSums(sum, x); err != nil {
			t.Fatal(err)
		}
	}
	ups.mu.Unlock()
	q := secagg.Quantizer{Clip: 1, Bits: 16, MaxWeight: coordinator.DefaultMaxWeight}
	mean := make([]float32, len(sum)-1)
	w, err := q.DecodeMean(mean, sum)
	if err != nil {
		t.Fatal(err)
	}
	if float64(w) != r.Metrics["weight"] {
		t.Fatalf("round weight %v, the updates weigh %d", r.Metrics["weight"], w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := c.Admin.FetchModel(ctx, r.ModelIn)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Admin.FetchModel(ctx, r.ModelOut)
	if err != nil {
		t.Fatal(err)
	}
	var worst, moved float64
	for i, p := range out.Params {
		want := in.Params[i] + mean[i] // FedAvg with server learning rate 1
		worst = max(worst, math.Abs(float64(p-want)))
		moved = max(moved, math.Abs(float64(mean[i])))
	}
	if moved == 0 || worst > 1e-6 {
		t.Fatalf("committed model is %g from start + plain mean (largest step %g)", worst, moved)
	}
}

// TestShardedRoundSurvivesCoordinatorLoss kills a follower while it
// aggregates a group (the plans went out, its result has not): the round
// commits with the other group, the lost group's agents count as
// dropouts, and the next round runs on the coordinators left. Raft's
// timeouts are doubled, and a round a leader change aborted (a loaded
// machine, -race) is tried again with the node revived: the test is about
// the loss of a group coordinator, not of the leader.
func TestShardedRoundSurvivesCoordinatorLoss(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Agents: 6, Shards: 100, Proxied: true, Node: slowRaft, Metrics: true})
	spec := shardedJob(6, 3, 3, 1)
	spec.Deadline = api.Deadlines{Download: api.Duration(5 * time.Second), Train: api.Duration(10 * time.Second), Stage: api.Duration(3 * time.Second)}
	job := c.StartJob(spec)
	var first api.Round
	var lost string
	for attempt := 1; ; attempt++ {
		victim, round := -1, uint64(0)
		testutil.WaitFor(t, 120*time.Second, "a follower aggregating a group", func() bool {
			_, leader := c.LeaderNow()
			if leader == nil {
				return false
			}
			for i, n := range c.Nodes {
				if n != nil && !n.IsLeader() && n.GroupsRunning() > 0 {
					victim, round = i, runningRound(leader)
					return round != 0
				}
			}
			return false
		})
		lost = c.Peers[victim].ID
		c.KillNode(victim)
		testutil.WaitFor(t, 120*time.Second, "the round to end", func() bool {
			for _, r := range c.Rounds(job) {
				if r.ID == round && r.State != api.RoundRunning {
					first = r
					return true
				}
			}
			return false
		})
		if first.State == api.RoundCommitted || attempt == 3 {
			break
		}
		t.Logf("round %d: %s %q; reviving %s and trying again", first.ID, first.State, first.Error, lost)
		c.Proxies[victim].Drop(false)
		c.StartNode(victim)
	}
	if first.State != api.RoundCommitted {
		t.Fatalf("round %d: %s %q, groups %+v", first.ID, first.State, first.Error, first.Groups)
	}
	var lostAgents, survivors int
	for _, g := range first.Groups {
		if g.Coordinator == lost {
			lostAgents += g.Agents
			if g.Error == "" || g.Survivors != 0 {
				t.Errorf("the lost coordinator's group %d: %d survivors, error %q", g.Group, g.Survivors, g.Error)
			}
			continue
		}
		survivors += g.Survivors
	}
	if lostAgents == 0 {
		t.Fatalf("round %d groups %+v: none on the lost coordinator %s", first.ID, first.Groups, lost)
	}
	if first.Metrics["survivors"] != float64(survivors) || survivors+lostAgents != len(first.Participants) {
		t.Fatalf("round %d: %v survivors, groups say %d survived and %d were lost of %d", first.ID, first.Metrics["survivors"], survivors, lostAgents, len(first.Participants))
	}
	t.Logf("round %d groups: %+v", first.ID, first.Groups)
	checkGroupMetrics(t, c, first)
	// The lost group's agents are free again once their stages time out.
	var next api.Round
	testutil.WaitFor(t, 180*time.Second, "a committed round of every agent after the loss", func() bool {
		for _, r := range c.Rounds(job) {
			if r.ID > first.ID && r.State == api.RoundCommitted && r.Kind == api.RoundTrain && len(r.Participants) == 6 {
				next = r
				return true
			}
		}
		return false
	})
	if len(next.Groups) < 2 {
		t.Fatalf("round %d after the loss: groups %+v", next.ID, next.Groups)
	}
	for _, g := range next.Groups {
		if g.Coordinator == lost || g.Error != "" {
			t.Errorf("round %d group %d on %s, error %q", next.ID, g.Group, g.Coordinator, g.Error)
		}
	}
}

// checkGroupMetrics: the leader that ran round r exported its groups, by
// the coordinator that aggregated each and how each ended, and its agents
// by whether their update is in the sum. Rounds that ended otherwise (a
// leader change) may add to the nodes' series, so the round's counts are a
// lower bound of the series summed over the live nodes.
func checkGroupMetrics(t *testing.T, c *testcluster.Cluster, r api.Round) {
	t.Helper()
	type key struct{ coord, state string }
	groups := map[key]int{}
	survived, dropped := 0, 0
	for _, g := range r.Groups {
		state := "ok"
		if g.Error != "" {
			state = "lost"
		}
		groups[key{g.Coordinator, state}]++
		survived += g.Survivors
		dropped += g.Agents - g.Survivors
	}
	scrape := func(name string, labels ...string) float64 {
		var sum float64
		for _, n := range c.Nodes {
			if n != nil {
				sum += testutil.Scrape(t, "http://"+n.MetricsAddr()+"/metrics").Sum(name, labels...)
			}
		}
		return sum
	}
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("round %d's groups %v in the metrics", r.ID, groups), func() bool {
		for k, n := range groups {
			if scrape("fedge_coordinator_round_groups_total", "coordinator", k.coord, "state", k.state) < float64(n) {
				return false
			}
		}
		return scrape("fedge_coordinator_round_group_agents_total", "state", "survived") >= float64(survived) &&
			scrape("fedge_coordinator_round_group_agents_total", "state", "dropped") >= float64(dropped)
	})
}
