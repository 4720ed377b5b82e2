package testcluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testutil"
)

// Options shape a cluster. Zero values mean the defaults.
type Options struct {
	// Nodes is the number of coordinators (default 3).
	Nodes int
	// Agents is the fleet size; Partition ("iid", "pathological",
	// "dirichlet") and Shards (default Agents) cut MNIST among them.
	Agents    int
	Partition string
	Shards    int
	// Canaries is how many agents get the label tier=canary (others
	// tier=prod).
	Canaries int
	// Heartbeat is the agents' report interval (default 300 ms).
	Heartbeat time.Duration
	// Trainer, if set, makes agent i an external-trainer agent: it gets
	// Trainer(i) (command, environment naming its own data) instead of
	// an MNIST shard, and trains external models only. The cluster then
	// needs no MNIST files.
	Trainer func(i int) agent.TrainerConfig
	// Proxied puts a UDP proxy in front of every coordinator: peers and
	// agents reach node i only through Proxies[i] (its advertised
	// address), so a test can make the node vanish from the network
	// without a close, as SIGKILL or SIGSTOP of its process would.
	Proxied bool
	// Metrics serves each coordinator's /metrics, /healthz and /readyz on
	// a free loopback TCP port (Node.MetricsAddr).
	Metrics bool
}

// Cluster is a running test cluster.
type Cluster struct {
	T     testing.TB
	Dir   string
	Peers []coordinator.Peer
	Nodes []*coordinator.Node
	Admin *api.Client
	Fleet []*Agent
	MNIST string
	// Proxies front the nodes when Options.Proxied is set.
	Proxies []*testutil.UDPProxy

	listen []string // the nodes' bound addresses (their Peers address unless proxied)

	opts Options
	log  *slog.Logger
}

// Agent is one in-process agent daemon.
type Agent struct {
	Index  int
	Config agent.Config
	mu     sync.Mutex
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

// Logger returns a logger that writes when FEDGE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("FEDGE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// New starts the coordinators, waits for a leader and the bootstrap, then
// enrolls and starts the agents. Everything stops at the end of the test.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Partition == "" {
		o.Partition = "iid"
	}
	if o.Shards == 0 {
		o.Shards = o.Agents
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 300 * time.Millisecond
	}
	mnist := ""
	if o.Trainer == nil {
		mnist = testutil.MNISTDir(t)
	}
	c := &Cluster{T: t, Dir: t.TempDir(), MNIST: mnist, opts: o, log: Logger()}
	var addrs []string
	for i, a := range testutil.FreeUDPAddrs(t, o.Nodes) {
		c.Peers = append(c.Peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
		addrs = append(addrs, a)
	}
	c.listen = addrs
	if o.Proxied {
		c.listen = testutil.FreeUDPAddrs(t, o.Nodes)
		for i, a := range addrs {
			c.Proxies = append(c.Proxies, testutil.NewUDPProxy(t, a, c.listen[i]))
		}
	}
	if err := coordinator.InitCluster(rand.Reader, "testcluster", c.Peers, c.Dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	c.Nodes = make([]*coordinator.Node, o.Nodes)
	t.Cleanup(c.Close)
	for i := range c.Peers {
		c.StartNode(i)
	}
	var err error
	c.Admin, err = api.Load(filepath.Join(c.Dir, "admin"), addrs)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(c.T, 30*time.Second, "bootstrap", func() bool {
		var st api.ClusterStatus
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.Admin.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) == nil && st.Cluster == "testcluster" && st.LeaderID != ""
	})
	for i := 0; i < o.Agents; i++ {
		c.AddAgent(i)
	}
	c.WaitConnected(o.Agents)
	return c
}

// Close stops every agent and node.
func (c *Cluster) Close() {
	for _, a := range c.Fleet {
		a.Stop()
	}
	if c.Admin != nil {
		c.Admin.Close()
	}
	for i, n := range c.Nodes {
		if n != nil {
			n.Close()
			c.Nodes[i] = nil
		}
	}
}

// StartNode starts (or restarts from its data dir) coordinator i.
func (c *Cluster) StartNode(i int) {
	c.T.Helper()
	p := c.Peers[i]
	if len(c.Proxies) > 0 {
		c.Proxies[i].Drop(false)
	}
	metrics := ""
	if c.opts.Metrics {
		metrics = "127.0.0.1:0"
	}
	n, err := coordinator.NewNode(coordinator.Config{
		NodeID: p.ID, DataDir: filepath.Join(c.Dir, p.ID), Listen: c.listen[i], Advertise: p.Addr, Peers: c.Peers,
		HeartbeatInterval: c.opts.Heartbeat, Raft: coordinator.LoopbackRaftTimings, Logger: c.log,
		Engine:        coordinator.EngineConfig{Idle: 100 * time.Millisecond, InviteTimeout: 5 * time.Second},
		MetricsListen: metrics,
	})
	if err != nil {
		c.T.Fatal(err)
	}
	c.Nodes[i] = n
}

// StopNode stops coordinator i (as if its process died).
func (c *Cluster) StopNode(i int) {
	if c.Nodes[i] != nil {
		c.Nodes[i].Close()
		c.Nodes[i] = nil
	}
}

// KillNode makes coordinator i vanish as if its process got SIGKILL: its
// proxy drops every packet first, so no peer or agent hears it close.
// The cluster must be Proxied.
func (c *Cluster) KillNode(i int) {
	c.T.Helper()
	if len(c.Proxies) == 0 {
		c.T.Fatal("testcluster: KillNode needs Options.Proxied")
	}
	c.Proxies[i].Drop(true)
	c.StopNode(i)
}

// Leader waits for and returns the leading node and its index.
func (c *Cluster) Leader() (int, *coordinator.Node) {
	c.T.Helper()
	var idx int
	var leader *coordinator.Node
	testutil.WaitFor(c.T, 30*time.Second, "a leader", func() bool {
		for i, n := range c.Nodes {
			if n != nil && n.IsLeader() {
				idx, leader = i, n
				return true
			}
		}
		return false
	})
	return idx, leader
}

// AddAgent enrolls agent i with a fresh token and starts it.
func (c *Cluster) AddAgent(i int) *Agent {
	c.T.Helper()
	a := &Agent{Index: i, Config: c.AgentConfig(i)}
	c.Fleet = append(c.Fleet, a)
	a.Start(c.T, c.log)
	return a
}

// AgentConfig returns the configuration of agent i with a fresh join
// token: its MNIST shard (or its external trainer), its own data dir, an
// inference port of its own.
func (c *Cluster) AgentConfig(i int) agent.Config {
	c.T.Helper()
	labels := map[string]string{"tier": "prod"}
	if i < c.opts.Canaries {
		labels["tier"] = "canary"
	}
	var tok api.TokenResponse
	if err := c.Admin.Call(context.Background(), api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{Labels: labels}, &tok); err != nil {
		c.T.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	for _, p := range c.Peers {
		cfg.Coordinators = append(cfg.Coordinators, p.Addr)
	}
	cfg.JoinToken = tok.Token
	cfg.DataDir = filepath.Join(c.Dir, fmt.Sprintf("agent%02d", i))
	cfg.Dataset = agent.DatasetConfig{Kind: agent.DatasetMNIST, Path: c.MNIST, Partition: c.opts.Partition, Shard: i, Shards: c.opts.Shards, Seed: 1, Alpha: 0.5, HeldOut: 0.1}
	if c.opts.Trainer != nil {
		cfg.Dataset = agent.DatasetConfig{} // the trainer reads its own data
		cfg.Trainer = c.opts.Trainer(i)
	}
	cfg.InferenceListen = "127.0.0.1:0"
	cfg.Threads = 0
	return cfg
}

// Start runs the agent daemon in a goroutine.
func (a *Agent) Start(t testing.TB, log *slog.Logger) {
	t.Helper()
	ag, err := agent.New(a.Config, log.With("agent", a.Index))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	a.mu.Lock()
	a.a, a.cancel, a.done = ag, cancel, done
	a.mu.Unlock()
	go func() { done <- ag.Run(ctx) }()
}

// Stop ends the agent's Run and closes it; it reports Run's error.
func (a *Agent) Stop() error {
	a.mu.Lock()
	ag, cancel, done := a.a, a.cancel, a.done
	a.a = nil
	a.mu.Unlock()
	if ag == nil {
		return nil
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		err = errors.New("testcluster: agent did not stop within 30s")
	}
	if cerr := ag.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Daemon returns the running agent.Agent (nil when stopped).
func (a *Agent) Daemon() *agent.Agent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.a
}

// WaitConnected waits until n agents have a session with the leader.
func (c *Cluster) WaitConnected(n int) {
	c.T.Helper()
	testutil.WaitFor(c.T, 60*time.Second, fmt.Sprintf("%d connected agents", n), func() bool {
		_, l := c.Leader()
		return len(l.ConnectedAgents()) >= n
	})
}

// StartJob starts a training job and returns its ID.
func (c *Cluster) StartJob(spec api.JobSpec) string {
	c.T.Helper()
	var job api.Job
	if err := c.Admin.Call(context.Background(), api.VerbJobsStart, api.QueryOptions{}, spec, &job); err != nil {
		c.T.Fatal(err)
	}
	return job.ID
}

// Rounds lists a job's rounds as the leader knows them.
func (c *Cluster) Rounds(job string) []api.Round {
	c.T.Helper()
	var rounds []api.Round
	if err := c.Admin.Call(context.Background(), api.VerbRoundsList, api.QueryOptions{}, api.RoundsRequest{Job: job}, &rounds); err != nil {
		c.T.Fatal(err)
	}
	return rounds
}

// WaitCommitted waits until job has n committed training rounds and
// returns its training rounds (a statistics round, if any, is left out).
func (c *Cluster) WaitCommitted(job string, n int, timeout time.Duration) []api.Round {
	c.T.Helper()
	var rounds []api.Round
	testutil.WaitFor(c.T, timeout, fmt.Sprintf("%d committed rounds of %s", n, job), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rounds = nil
		if err := c.Admin.Call(ctx, api.VerbRoundsList, api.QueryOptions{}, api.RoundsRequest{Job: job}, &rounds); err != nil {
			c.log.Warn("testcluster: rounds.list", "err", err)
			return false
		}
		train := rounds[:0]
		for _, r := range rounds {
			if r.Kind == api.RoundTrain {
				train = append(train, r)
			}
		}
		rounds = train
		k := 0
		for _, r := range rounds {
			if r.State == api.RoundCommitted {
				k++
			}
		}
		return k >= n
	})
	return rounds
}
