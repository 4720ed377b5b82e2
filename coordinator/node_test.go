package coordinator_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

// testLogger logs to stderr when FEDGE_TEST_LOG is set (debugging aid).
func testLogger() *slog.Logger {
	if os.Getenv("FEDGE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type cluster struct {
	t     *testing.T
	dir   string
	peers []coordinator.Peer
	nodes []*coordinator.Node
	// tune, if set, adjusts each node's configuration before it starts.
	tune func(*coordinator.Config)
}

func newCluster(t *testing.T, n int) *cluster {
	return newTunedCluster(t, n, nil)
}

// newTunedCluster is newCluster with each node's configuration adjusted
// by tune.
func newTunedCluster(t *testing.T, n int, tune func(*coordinator.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), tune: tune}
	for i, a := range testutil.FreeUDPAddrs(t, n) {
		c.peers = append(c.peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	if err := coordinator.InitCluster(rand.Reader, "test-cluster", c.peers, c.dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	c.nodes = make([]*coordinator.Node, n)
	for i := range c.peers {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	return c
}

func (c *cluster) start(i int) {
	c.t.Helper()
	cfg := coordinator.Config{
		NodeID: c.peers[i].ID, DataDir: filepath.Join(c.dir, c.peers[i].ID), Listen: c.peers[i].Addr,
		Peers: c.peers, Raft: coordinator.LoopbackRaftTimings, Logger: testLogger(),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	nd, err := coordinator.NewNode(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = nd
}

func (c *cluster) leader() (int, *coordinator.Node) {
	c.t.Helper()
	idx := -1
	testutil.WaitFor(c.t, 15*time.Second, "a leader", func() bool {
		for i, nd := range c.nodes {
			if nd != nil && nd.IsLeader() {
				idx = i
				return true
			}
		}
		return false
	})
	return idx, c.nodes[idx]
}

func (c *cluster) admin() *api.Client {
	c.t.Helper()
	var addrs []string
	for _, p := range c.peers {
		addrs = append(addrs, p.Addr)
	}
	a, err := api.Load(filepath.Join(c.dir, "admin"), addrs)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

func TestNodeClusterAdminEnrollFailover(t *testing.T) {
	if testing.Short() && raceEnabled {
		t.Skip("3-node QUIC cluster under -race -short")
	}
	c := newCluster(t, 3)
	c.leader()
	adm := c.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The leader writes the cluster CA into the replicated state.
	var st api.ClusterStatus
	var lastErr error
	testutil.WaitFor(t, 15*time.Second, "bootstrap", func() bool {
		lastErr = adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st)
		if lastErr != nil {
			t.Logf("cluster.status: %v", lastErr)
		}
		return lastErr == nil && st.Cluster == "test-cluster"
	})
	if len(st.Servers) != 3 || st.LeaderID == "" {
		t.Fatalf("status %+v", st)
	}

	// A token, then an enrollment with it over the real QUIC listener.
	var tok api.TokenResponse
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{Labels: map[string]string{"region": "eu"}}, &tok); err != nil {
		t.Fatal(err)
	}
	enroll := func(token string) (*protocol.EnrollResponse, error) {
		_, pin, err := identity.ParseJoinToken(token)
		if err != nil {
			return nil, err
		}
		key, _ := identity.NewKey(rand.Reader)
		id, _ := identity.NewAgentID(rand.Reader)
		csr, _ := identity.NewCSR(key, id)
		conf, err := identity.EnrollClientConfig(pin, protocol.ALPNEnroll)
		if err != nil {
			return nil, err
		}
		_, leader := c.leader()
		s, err := protocol.Dial(ctx, leader.Addr(), conf, protocol.ALPNEnroll, nil)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		resp, err := s.Request(ctx, &protocol.EnrollRequest{Token: token, CSR: csr})
		if err != nil {
			return nil, err
		}
		return resp.(*protocol.EnrollResponse), nil
	}
	er, err := enroll(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(er.Cert) == 0 || er.AgentID == "" {
		t.Fatalf("enroll response %+v", er)
	}
	// The token is one-time.
	var pe *protocol.Error
	if _, err := enroll(tok.Token); !errors.As(err, &pe) || pe.Code != protocol.CodeInvalidToken {
		t.Fatalf("second use of a token: %v", err)
	}
	// The enrollment went to the leader directly; the client may sit on a
	// follower (writes are forwarded), so read linearizably.
	var agents []api.Agent
	if err := adm.Call(ctx, api.VerbAgentsList, api.QueryOptions{Consistent: true}, nil, &agents); err != nil || len(agents) != 1 || agents[0].Labels["region"] != "eu" {
		t.Fatalf("agents %+v %v", agents, err)
	}

	// A job starts; kill the leader; the survivors elect a new one and keep
	// the replicated state, and writes still work through the client.
	var job api.Job
	if err := adm.Call(ctx, api.VerbJobsStart, api.QueryOptions{}, api.JobSpec{Name: "mnist", Model: "logreg", Rounds: 3}, &job); err != nil {
		t.Fatal(err)
	}
	li, _ := c.leader()
	c.nodes[li].Close()
	c.nodes[li] = nil
	_, nl := c.leader()
	testutil.WaitFor(t, 15*time.Second, "job on new leader", func() bool {
		found := false
		nl.FSM().Read(func(s *coordinator.State) { _, found = s.Jobs[job.ID] })
		return found
	})
	var tok2 api.TokenResponse
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{}, &tok2); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	// The dead node comes back from disk and catches up.
	c.start(li)
	testutil.WaitFor(t, 15*time.Second, "restarted node catches up", func() bool {
		n := 0
		c.nodes[li].FSM().Read(func(s *coordinator.State) { n = len(s.Tokens) })
		return n == 2
	})
	// A linearizable read goes to the leader and sees the write above.
	var toks []api.Agent
	if err := adm.Call(ctx, api.VerbAgentsList, api.QueryOptions{Consistent: true}, nil, &toks); err != nil || len(toks) != 1 {
		t.Fatalf("consistent read: %v %v", toks, err)
	}
	if err := adm.Call(ctx, "no.such.verb", api.QueryOptions{}, nil, nil); err == nil {
		t.Fatal("unknown verb accepted")
	}
}

// TestClusterJoinAndRemove grows a 3-node cluster with a fourth voter that
// starts empty and catches up, then removes the leader; writes keep working.
func TestClusterJoinAndRemove(t *testing.T) {
	if testing.Short() && raceEnabled {
		t.Skip("4-node QUIC cluster under -race -short")
	}
	dir := t.TempDir()
	addrs := testutil.FreeUDPAddrs(t, 4)
	var all []coordinator.Peer
	for i, a := range addrs {
		all = append(all, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	if err := coordinator.InitCluster(rand.Reader, "grow", all, dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	start := func(p coordinator.Peer, peers []coordinator.Peer) *coordinator.Node {
		n, err := coordinator.NewNode(coordinator.Config{NodeID: p.ID, DataDir: filepath.Join(dir, p.ID), Listen: p.Addr,
			Peers: peers, Raft: coordinator.LoopbackRaftTimings, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	for _, p := range all[:3] {
		start(p, all[:3])
	}
	c4 := start(all[3], nil) // no peers: waits to be added
	adm, err := api.Load(filepath.Join(dir, "admin"), addrs[:3])
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var tok api.TokenResponse
	testutil.WaitFor(t, 15*time.Second, "a leader that takes writes", func() bool {
		return adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{}, &tok) == nil
	})
	if err := adm.Call(ctx, api.VerbClusterJoin, api.QueryOptions{}, api.JoinRequest{ID: "c4", Addr: all[3].Addr}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the new voter to catch up", func() bool {
		n := 0
		c4.FSM().Read(func(s *coordinator.State) { n = len(s.Tokens) })
		return n == 1
	})
	// Remove the leader itself (the hard case: the cluster must elect
	// another and the admin client must stop asking the removed node).
	var st api.ClusterStatus
	if err := adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st); err != nil || st.LeaderID == "" || st.LeaderID == "c4" {
		t.Fatalf("status before removal: %+v %v", st, err)
	}
	gone := st.LeaderID
	if err := adm.Call(ctx, api.VerbClusterRemove, api.QueryOptions{}, api.IDRequest{ID: gone}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "membership without the old leader", func() bool {
		if adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) != nil || len(st.Servers) != 3 {
			return false
		}
		ids := map[string]bool{}
		for _, s := range st.Servers {
			ids[s.ID] = true
		}
		return ids["c4"] && !ids[gone] && st.LeaderID != "" && st.LeaderID != gone
	})
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{}, &tok); err != nil {
		t.Fatalf("write after removing a voter: %v", err)
	}
	testutil.WaitFor(t, 15*time.Second, "the joined voter to hold the second write", func() bool {
		n := 0
		c4.FSM().Read(func(s *coordinator.State) { n = len(s.Tokens) })
		return n == 2
	})
}

// TestFollowerForwardsWrites: an operator whose client reaches only a
// follower still writes — the follower forwards to the leader over the
// peer ALPN — and the record names the operator and the forwarding node.
func TestFollowerForwardsWrites(t *testing.T) {
	if testing.Short() && raceEnabled {
		t.Skip("3-node QUIC cluster under -race -short")
	}
	c := newCluster(t, 3)
	li, leader := c.leader()
	fi := (li + 1) % 3
	adm, err := api.Load(filepath.Join(c.dir, "admin"), []string{c.peers[fi].Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	testutil.WaitFor(t, 15*time.Second, "the follower to know the leader", func() bool {
		var st api.ClusterStatus
		return adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) == nil && st.LeaderID == leader.ID() && st.Node == c.peers[fi].ID
	})
	var job api.Job
	if err := adm.Call(ctx, api.VerbJobsStart, api.QueryOptions{}, api.JobSpec{Name: "fwd", Model: "logreg", Rounds: 1}, &job); err != nil {
		t.Fatal(err)
	}
	if got := adm.Addr(); got != c.peers[fi].Addr {
		t.Fatalf("the client was sent to %s; the follower %s should have forwarded", got, c.peers[fi].Addr)
	}
	leader.FSM().Read(func(s *coordinator.State) {
		if _, ok := s.Jobs[job.ID]; !ok {
			t.Fatalf("job %s not on the leader", job.ID)
		}
	})
	// A manual rollout decision records who made it, through which node.
	// The cluster's first model is the stable one: a second job's first
	// model is the candidate.
	firstModel := func(id string) uint64 {
		var v uint64
		testutil.WaitFor(t, 15*time.Second, "the first model of job "+id, func() bool {
			leader.FSM().Read(func(s *coordinator.State) { v = s.Jobs[id].Model })
			return v != 0
		})
		return v
	}
	firstModel(job.ID)
	if err := adm.Call(ctx, api.VerbJobsStop, api.QueryOptions{}, api.IDRequest{ID: job.ID}, nil); err != nil {
		t.Fatal(err)
	}
	var job2 api.Job
	if err := adm.Call(ctx, api.VerbJobsStart, api.QueryOptions{}, api.JobSpec{Name: "fwd2", Model: "logreg", Rounds: 1, Seed: 2}, &job2); err != nil {
		t.Fatal(err)
	}
	v2 := firstModel(job2.ID)
	// Why the job waits is known to the leader only; the follower asks it.
	testutil.WaitFor(t, 15*time.Second, "the job's waiting reason through the follower", func() bool {
		var js api.Job
		return adm.Call(ctx, api.VerbJobsStatus, api.QueryOptions{}, api.IDRequest{ID: job2.ID}, &js) == nil && strings.Contains(js.Waiting, "0 of")
	})
	var ro api.Rollout
	if err := adm.Call(ctx, api.VerbRolloutStart, api.QueryOptions{}, api.RolloutRequest{Model: v2,
		Cohorts: []api.Cohort{{Name: "all", Percent: 100}}, Gate: "accuracy>=baseline-0.5"}, &ro); err != nil {
		t.Fatal(err)
	}
	if err := adm.Call(ctx, api.VerbRolloutAction, api.QueryOptions{}, api.RolloutActionRequest{ID: ro.ID, Action: "pause", Reason: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	leader.FSM().Read(func(s *coordinator.State) {
		r := s.Rollouts[ro.ID]
		if r == nil || len(r.Decisions) == 0 {
			t.Fatalf("rollout %s: %+v", ro.ID, r)
		}
		if by, want := r.Decisions[len(r.Decisions)-1].By, "operator:admin via "+c.peers[fi].ID; by != want {
			t.Fatalf("decision by %q, want %q", by, want)
		}
	})
	if got := adm.Addr(); got != c.peers[fi].Addr {
		t.Fatalf("the client was sent to %s", got)
	}
}
