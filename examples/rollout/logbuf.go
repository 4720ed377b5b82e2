package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/netutil"
	"github.com/fedge/fedge/internal/wait"
)

// logBuffer collects the coordinators' log lines so they can be audited,
// and optionally copies them to another writer.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	copy io.Writer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.copy != nil {
		_, _ = b.copy.Write(p)
	}
	return b.buf.Write(p)
}

// Lines returns the lines logged so far.
func (b *logBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}

// cluster is 3 coordinator nodes (real Raft over loopback QUIC, bbolt in
// dir) and a fleet of in-process agents.
type cluster struct {
	dir      string
	peers    []coordinator.Peer
	nodes    []*coordinator.Node
	admin    *api.Client
	agents   []*fleetAgent
	logs     *logBuffer
	agentLog *slog.Logger
}

// fleetAgent is one running agent daemon.
type fleetAgent struct {
	a      *agent.Agent
	canary bool
	cancel context.CancelFunc
	done   chan error
}

// startCluster initializes a cluster in dir (CA, node and admin
// certificates), starts its 3 nodes and waits for a leader.
func startCluster(ctx context.Context, dir string, logs *logBuffer, agentLog *slog.Logger) (*cluster, error) {
	c := &cluster{dir: dir, logs: logs, agentLog: agentLog}
	addrs, err := netutil.FreeLoopbackAddrs("udp", 3)
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		c.peers = append(c.peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	if err := coordinator.InitCluster(rand.Reader, "rollout-example", c.peers, dir, time.Now()); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, p := range c.peers {
		n, err := coordinator.NewNode(coordinator.Config{
			NodeID: p.ID, DataDir: filepath.Join(dir, p.ID), Listen: p.Addr, Peers: c.peers,
			HeartbeatInterval: 300 * time.Millisecond, Raft: coordinator.LoopbackRaftTimings,
			Logger: log,
			Engine: coordinator.EngineConfig{Idle: 100 * time.Millisecond, InviteTimeout: 5 * time.Second},
		})
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if c.admin, err = api.Load(filepath.Join(dir, "admin"), addrs); err != nil {
		c.close()
		return nil, err
	}
	var st api.ClusterStatus
	err = wait.Until(ctx, 30*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.admin.Call(cctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) == nil && st.LeaderID != ""
	})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("no leader: %w", err)
	}
	return c, nil
}

// addAgent enrolls an agent with a one-time token carrying its tier label
// and starts it on shard i of MNIST.
func (c *cluster) addAgent(ctx context.Context, ds agent.DatasetConfig, canary bool) error {
	tier := "prod"
	if canary {
		tier = "canary"
	}
	var tok api.TokenResponse
	if err := c.admin.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{Labels: map[string]string{"tier": tier}, TTL: api.Duration(time.Hour)}, &tok); err != nil {
		return err
	}
	cfg := agent.DefaultConfig()
	for _, p := range c.peers {
		cfg.Coordinators = append(cfg.Coordinators, p.Addr)
	}
	cfg.JoinToken = tok.Token
	cfg.DataDir = filepath.Join(c.dir, fmt.Sprintf("agent%02d", ds.Shard))
	cfg.Dataset = ds
	cfg.InferenceListen = "" // this example does not serve predictions
	a, err := agent.New(cfg, c.agentLog.With("agent", ds.Shard))
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(context.Background())
	fa := &fleetAgent{a: a, canary: canary, cancel: cancel, done: make(chan error, 1)}
	go func() { fa.done <- a.Run(actx) }()
	c.agents = append(c.agents, fa)
	return nil
}

// leader returns the leading node, or nil.
func (c *cluster) leader() *coordinator.Node {
	for _, n := range c.nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

// waitConnected waits until every agent has a session with the leader.
func (c *cluster) waitConnected(ctx context.Context) error {
	return wait.Until(ctx, 90*time.Second, func() bool {
		l := c.leader()
		return l != nil && len(l.ConnectedAgents()) >= len(c.agents)
	})
}

// close stops the agents, then the nodes.
func (c *cluster) close() {
	for _, a := range c.agents {
		a.cancel()
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
		}
		_ = a.a.Close()
	}
	c.agents = nil
	if c.admin != nil {
		c.admin.Close()
	}
	for _, n := range c.nodes {
		_ = n.Close()
	}
	c.nodes = nil
}
