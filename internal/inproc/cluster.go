package inproc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/internal/netutil"
	"github.com/fedge/fedge/internal/wait"
)

// Waiting limits of Start and the Wait methods.
const (
	bootstrapTimeout = 30 * time.Second
	leaderTimeout    = 30 * time.Second
	connectTimeout   = 90 * time.Second
	agentStopTimeout = 30 * time.Second
)

// Options shape a cluster. Zero values mean the defaults.
type Options struct {
	// Name is the cluster's name (default "inproc").
	Name string
	// Dir holds the cluster's files. Default: a temporary folder that
	// Close removes.
	Dir string
	// Nodes is the number of coordinators (default 3).
	Nodes int
	// Agents is the fleet Start enrolls; Partition ("iid", "pathological",
	// "dirichlet"; default "iid") and Shards (default Agents) cut MNIST
	// among them, agent i holding shard i.
	Agents    int
	Partition string
	Shards    int
	// MNIST is the folder of the MNIST files (default mnist.Dir's, looked
	// up only when an agent needs it).
	MNIST string
	// Canaries is how many agents get the label tier=canary (others
	// tier=prod).
	Canaries int
	// Heartbeat is the agents' report interval (default 300 ms).
	Heartbeat time.Duration
	// Raft are the coordinators' Raft timings (zero:
	// coordinator.LoopbackRaftTimings).
	Raft coordinator.RaftTimings
	// Trainer, if set, makes agent i an external-trainer agent: it gets
	// Trainer(i) (command, environment naming its own data) instead of
	// an MNIST shard, and trains external models only.
	Trainer func(i int) agent.TrainerConfig
	// Proxied puts a UDP proxy in front of every coordinator: peers and
	// agents reach node i only through Proxies[i] (its advertised
	// address), so the node can vanish from the network without a close,
	// as with SIGKILL or SIGSTOP of its process (KillNode).
	Proxied bool
	// Metrics serves each coordinator's /metrics, /healthz and /readyz on
	// a free loopback TCP port (Node.MetricsAddr).
	Metrics bool
	// Logger receives the coordinators' logs, AgentLogger the agents'
	// (each line tagged agent=i). Default: discarded.
	Logger, AgentLogger *slog.Logger
	// Node and Agent, if set, adjust node i's or agent i's configuration
	// before it starts.
	Node  func(i int, cfg *coordinator.Config)
	Agent func(i int, cfg *agent.Config)
}

// Cluster is a running in-process cluster. Its fields are for reading.
type Cluster struct {
	Dir   string
	Peers []coordinator.Peer
	Nodes []*coordinator.Node // nil while stopped
	Admin *api.Client
	Fleet []*Agent
	MNIST string
	// Proxies front the nodes when Options.Proxied is set.
	Proxies []*netutil.UDPProxy

	listen  []string // the nodes' bound addresses (their Peers address unless proxied)
	opts    Options
	tempDir bool // Close removes Dir
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

// Start initialises a cluster (CA, node and admin certificates), starts
// its coordinators, waits for a leader and the bootstrap, then enrolls and
// starts the agents and waits until each has a session with the leader.
// On an error everything started is stopped again.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Name == "" {
		o.Name = "inproc"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Partition == "" {
		o.Partition = agent.PartitionIID
	}
	if o.Shards == 0 {
		o.Shards = o.Agents
	}
	if o.Raft == (coordinator.RaftTimings{}) {
		o.Raft = coordinator.LoopbackRaftTimings
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 300 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AgentLogger == nil {
		o.AgentLogger = slog.New(slog.DiscardHandler)
	}
	if o.MNIST == "" && o.Trainer == nil && o.Agents > 0 {
		if o.MNIST, err = mnist.Dir(ctx); err != nil {
			return nil, fmt.Errorf("inproc.Start: %w", err)
		}
	}
	c := &Cluster{Dir: o.Dir, MNIST: o.MNIST, opts: o}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "fedge-inproc-"); err != nil {
			return nil, fmt.Errorf("inproc.Start: %w", err)
		}
		c.tempDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
			err = fmt.Errorf("inproc.Start: %w", err)
		}
	}()
	addrs, err := netutil.FreeLoopbackAddrs("udp", o.Nodes)
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		c.Peers = append(c.Peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	c.listen = addrs
	if o.Proxied {
		if c.listen, err = netutil.FreeLoopbackAddrs("udp", o.Nodes); err != nil {
			return nil, err
		}
		for i, a := range addrs {
			p, err := netutil.NewUDPProxy(a, c.listen[i])
			if err != nil {
				return nil, err
			}
			c.Proxies = append(c.Proxies, p)
		}
	}
	if err := coordinator.InitCluster(rand.Reader, o.Name, c.Peers, c.Dir, time.Now()); err != nil {
		return nil, err
	}
	c.Nodes = make([]*coordinator.Node, o.Nodes)
	for i := range c.Peers {
		if err := c.StartNode(i); err != nil {
			return nil, err
		}
	}
	if c.Admin, err = api.Load(filepath.Join(c.Dir, "admin"), addrs); err != nil {
		return nil, err
	}
	err = wait.Until(ctx, bootstrapTimeout, func() bool {
		var st api.ClusterStatus
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.Admin.Read(cctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) == nil && st.Cluster == o.Name && st.LeaderID != ""
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the bootstrap: %w", err)
	}
	for i := 0; i < o.Agents; i++ {
		if _, err := c.AddAgent(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := c.WaitConnected(ctx, o.Agents); err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops every agent and node, and removes Dir if Start made it. It
// reports the agents' errors. Calling it again does nothing.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range c.Fleet {
		if err := a.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("agent %d: %w", a.Index, err))
		}
	}
	if c.Admin != nil {
		c.Admin.Close()
	}
	for i := range c.Nodes {
		c.StopNode(i)
	}
	for _, p := range c.Proxies {
		p.Close()
	}
	c.Proxies = nil
	if c.tempDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
		c.tempDir = false
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inproc.Close: %w", err)
	}
	return nil
}

// StartNode starts (or restarts from its data dir) coordinator i.
func (c *Cluster) StartNode(i int) error {
	p := c.Peers[i]
	if len(c.Proxies) > 0 {
		c.Proxies[i].Drop(false)
	}
	metrics := ""
	if c.opts.Metrics {
		metrics = "127.0.0.1:0"
	}
	cfg := coordinator.Config{
		NodeID: p.ID, DataDir: filepath.Join(c.Dir, p.ID), Listen: c.listen[i], Advertise: p.Addr, Peers: c.Peers,
		HeartbeatInterval: c.opts.Heartbeat, Raft: c.opts.Raft, Logger: c.opts.Logger,
		Engine:        coordinator.EngineConfig{Idle: 100 * time.Millisecond, InviteTimeout: 5 * time.Second},
		MetricsListen: metrics,
	}
	if c.opts.Node != nil {
		c.opts.Node(i, &cfg)
	}
	n, err := coordinator.NewNode(cfg)
	if err != nil {
		return fmt.Errorf("inproc.StartNode %s: %w", p.ID, err)
	}
	c.Nodes[i] = n
	return nil
}

// StopNode stops coordinator i (as if its process died).
func (c *Cluster) StopNode(i int) {
	if c.Nodes[i] != nil {
		c.Nodes[i].Close()
		c.Nodes[i] = nil
	}
}

// ErrNotProxied is returned by KillNode on a cluster started without
// Options.Proxied.
var ErrNotProxied = errors.New("inproc: KillNode needs Options.Proxied")

// KillNode makes coordinator i vanish as if its process got SIGKILL: its
// proxy drops every packet first, so no peer or agent hears it close.
func (c *Cluster) KillNode(i int) error {
	if len(c.Proxies) == 0 {
		return ErrNotProxied
	}
	c.Proxies[i].Drop(true)
	c.StopNode(i)
	return nil
}

// LeaderNow returns the node that leads now and its index, or -1 and nil.
func (c *Cluster) LeaderNow() (int, *coordinator.Node) {
	for i, n := range c.Nodes {
		if n != nil && n.IsLeader() {
			return i, n
		}
	}
	return -1, nil
}

// Leader waits for and returns the leading node and its index.
func (c *Cluster) Leader(ctx context.Context) (int, *coordinator.Node, error) {
	var idx int
	var leader *coordinator.Node
	err := wait.Until(ctx, leaderTimeout, func() bool {
		idx, leader = c.LeaderNow()
		return leader != nil
	})
	if err != nil {
		return -1, nil, fmt.Errorf("inproc.Leader: %w", err)
	}
	return idx, leader, nil
}

// AddAgent enrolls agent i with a fresh token and starts it.
func (c *Cluster) AddAgent(ctx context.Context, i int) (*Agent, error) {
	cfg, err := c.AgentConfig(ctx, i)
	if err != nil {
		return nil, err
	}
	a := &Agent{Index: i, Config: cfg}
	if err := a.Start(c.opts.AgentLogger); err != nil {
		return nil, err
	}
	c.Fleet = append(c.Fleet, a)
	return a, nil
}

// AgentConfig returns the configuration of agent i with a fresh join
// token: its MNIST shard (or its external trainer), its own data dir, an
// inference port of its own, adjusted by Options.Agent.
func (c *Cluster) AgentConfig(ctx context.Context, i int) (agent.Config, error) {
	labels := map[string]string{"tier": "prod"}
	if i < c.opts.Canaries {
		labels["tier"] = "canary"
	}
	tok, err := c.Admin.Tokens().Create(ctx, api.TokenRequest{Labels: labels})
	if err != nil {
		return agent.Config{}, fmt.Errorf("inproc.AgentConfig %d: %w", i, err)
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
	if c.opts.Agent != nil {
		c.opts.Agent(i, &cfg)
	}
	return cfg, nil
}

// Start runs the agent daemon in a goroutine, logging to log.
func (a *Agent) Start(log *slog.Logger) error {
	ag, err := agent.New(a.Config, log.With("agent", a.Index))
	if err != nil {
		return fmt.Errorf("inproc: agent %d: %w", a.Index, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	a.mu.Lock()
	a.a, a.cancel, a.done = ag, cancel, done
	a.mu.Unlock()
	go func() { done <- ag.Run(ctx) }()
	return nil
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
	case <-time.After(agentStopTimeout):
		err = fmt.Errorf("inproc: agent did not stop within %v", agentStopTimeout)
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
func (c *Cluster) WaitConnected(ctx context.Context, n int) error {
	err := wait.Until(ctx, connectTimeout, func() bool {
		_, l := c.LeaderNow()
		return l != nil && len(l.ConnectedAgents()) >= n
	})
	if err != nil {
		return fmt.Errorf("inproc.WaitConnected: %d agents: %w", n, err)
	}
	return nil
}

// StartJob starts a training job and returns its ID.
func (c *Cluster) StartJob(ctx context.Context, spec api.JobSpec) (string, error) {
	job, err := c.Admin.Jobs().Start(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("inproc.StartJob: %w", err)
	}
	return job.ID, nil
}

// Rounds lists a job's rounds as the leader knows them, with their
// participants' IDs (an in-process cluster's jobs are small).
func (c *Cluster) Rounds(ctx context.Context, job string) ([]api.Round, error) {
	rounds, err := c.Admin.Rounds().List(ctx, api.RoundsRequest{Job: job, Participants: true}, api.QueryOptions{Consistent: true})
	if err != nil {
		return nil, fmt.Errorf("inproc.Rounds: %w", err)
	}
	return rounds, nil
}

// WaitCommitted waits up to timeout until job has n committed training
// rounds and returns its training rounds (a statistics round, if any, is
// left out).
func (c *Cluster) WaitCommitted(ctx context.Context, job string, n int, timeout time.Duration) ([]api.Round, error) {
	var rounds []api.Round
	err := wait.Until(ctx, timeout, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		all, err := c.Rounds(cctx, job)
		if err != nil {
			c.opts.Logger.Warn("inproc: rounds.list", "err", err)
			return false
		}
		rounds = rounds[:0]
		k := 0
		for _, r := range all {
			if r.Kind != api.RoundTrain {
				continue
			}
			rounds = append(rounds, r)
			if r.State == api.RoundCommitted {
				k++
			}
		}
		return k >= n
	})
	if err != nil {
		return rounds, fmt.Errorf("inproc.WaitCommitted: %d committed rounds of %s: %w", n, job, err)
	}
	return rounds, nil
}
