package coordinator_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testcluster"
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

// newCluster starts n coordinators on loopback with the one in-process
// harness (internal/testcluster); they stop at the end of the test.
func newCluster(t *testing.T, n int) *testcluster.Cluster {
	return newTunedCluster(t, n, nil)
}

// newTunedCluster is newCluster with each node's configuration adjusted
// by tune.
func newTunedCluster(t *testing.T, n int, tune func(*coordinator.Config)) *testcluster.Cluster {
	t.Helper()
	o := testcluster.Options{Name: "test-cluster", Nodes: n, Logger: testLogger()}
	if tune != nil {
		o.Node = func(_ int, cfg *coordinator.Config) { tune(cfg) }
	}
	return testcluster.New(t, o)
}

func TestNodeClusterAdminEnrollFailover(t *testing.T) {
	if testing.Short() && raceEnabled {
		t.Skip("3-node QUIC cluster under -race -short")
	}
	c := newCluster(t, 3)
	c.Leader()
	adm := c.Admin
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
		_, leader := c.Leader()
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
	li, _ := c.Leader()
	c.StopNode(li)
	_, nl := c.Leader()
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
	c.StartNode(li)
	testutil.WaitFor(t, 15*time.Second, "restarted node catches up", func() bool {
		n := 0
		c.Nodes[li].FSM().Read(func(s *coordinator.State) { n = len(s.Tokens) })
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
	// Three voters, and a fourth node with no peers that waits to be added.
	c := testcluster.New(t, testcluster.Options{Name: "grow", Nodes: 4, Logger: testLogger(), Node: func(i int, cfg *coordinator.Config) {
		if i == 3 {
			cfg.Peers = nil
		} else {
			cfg.Peers = cfg.Peers[:3]
		}
	}})
	all, c4 := c.Peers, c.Nodes[3]
	adm, err := api.Load(filepath.Join(c.Dir, "admin"), []string{all[0].Addr, all[1].Addr, all[2].Addr})
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
	li, leader := c.Leader()
	fi := (li + 1) % 3
	adm, err := api.Load(filepath.Join(c.Dir, "admin"), []string{c.Peers[fi].Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	testutil.WaitFor(t, 15*time.Second, "the follower to know the leader", func() bool {
		var st api.ClusterStatus
		return adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) == nil && st.LeaderID == leader.ID() && st.Node == c.Peers[fi].ID
	})
	var job api.Job
	if err := adm.Call(ctx, api.VerbJobsStart, api.QueryOptions{}, api.JobSpec{Name: "fwd", Model: "logreg", Rounds: 1}, &job); err != nil {
		t.Fatal(err)
	}
	if got := adm.Addr(); got != c.Peers[fi].Addr {
		t.Fatalf("the client was sent to %s; the follower %s should have forwarded", got, c.Peers[fi].Addr)
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
		if by, want := r.Decisions[len(r.Decisions)-1].By, "operator:admin via "+c.Peers[fi].ID; by != want {
			t.Fatalf("decision by %q, want %q", by, want)
		}
	})
	if got := adm.Addr(); got != c.Peers[fi].Addr {
		t.Fatalf("the client was sent to %s", got)
	}
}
