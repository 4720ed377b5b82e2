package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/inproc"
	"github.com/fedge/fedge/internal/testutil"
)

// Options shape a cluster: inproc.Options, whose zero values mean the
// defaults; New names the cluster "testcluster", keeps its files in a
// test temporary folder and logs through Logger unless told otherwise.
type Options = inproc.Options

// Agent is one in-process agent daemon.
type Agent = inproc.Agent

// Cluster is a running test cluster: an inproc.Cluster whose methods
// fail the test instead of returning errors.
type Cluster struct {
	*inproc.Cluster
	T testing.TB
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
// Without MNIST files a cluster with MNIST agents skips the test (fails
// under CI); a cluster without agents needs no data.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Name == "" {
		o.Name = "testcluster"
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = Logger()
	}
	if o.AgentLogger == nil {
		o.AgentLogger = o.Logger
	}
	if o.MNIST == "" && o.Trainer == nil && o.Agents > 0 {
		o.MNIST = testutil.MNISTDir(t)
	}
	ic, err := inproc.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		within("stopping the cluster", func() {
			if err := ic.Close(); err != nil {
				t.Logf("testcluster: %v", err)
			}
		})
	})
	return &Cluster{Cluster: ic, T: t}
}

// StartNode starts (or restarts from its data dir) coordinator i.
func (c *Cluster) StartNode(i int) {
	c.T.Helper()
	if err := c.Cluster.StartNode(i); err != nil {
		c.T.Fatal(err)
	}
}

// StopNode stops coordinator i (as if its process died).
func (c *Cluster) StopNode(i int) {
	within(fmt.Sprintf("stopping node %d", i), func() { c.Cluster.StopNode(i) })
}

// KillNode makes coordinator i vanish as if its process got SIGKILL: its
// proxy drops every packet first, so no peer or agent hears it close.
// The cluster must be Proxied.
func (c *Cluster) KillNode(i int) {
	c.T.Helper()
	var err error
	within(fmt.Sprintf("killing node %d", i), func() { err = c.Cluster.KillNode(i) })
	if err != nil {
		c.T.Fatal(err)
	}
}

// Leader waits for and returns the leading node and its index.
func (c *Cluster) Leader() (int, *coordinator.Node) {
	c.T.Helper()
	i, n, err := c.Cluster.Leader(context.Background())
	if err != nil {
		c.T.Fatal(err)
	}
	return i, n
}

// AddAgent enrolls agent i with a fresh token and starts it.
func (c *Cluster) AddAgent(i int) *Agent {
	c.T.Helper()
	a, err := c.Cluster.AddAgent(context.Background(), i)
	if err != nil {
		c.T.Fatal(err)
	}
	return a
}

// AgentConfig returns the configuration of agent i with a fresh join
// token: its MNIST shard (or its external trainer), its own data dir, an
// inference port of its own.
func (c *Cluster) AgentConfig(i int) agent.Config {
	c.T.Helper()
	cfg, err := c.Cluster.AgentConfig(context.Background(), i)
	if err != nil {
		c.T.Fatal(err)
	}
	return cfg
}

// WaitConnected waits until n agents have a session with the leader.
func (c *Cluster) WaitConnected(n int) {
	c.T.Helper()
	if err := c.Cluster.WaitConnected(context.Background(), n); err != nil {
		c.T.Fatal(err)
	}
}

// StartJob starts a training job and returns its ID.
func (c *Cluster) StartJob(spec api.JobSpec) string {
	c.T.Helper()
	id, err := c.Cluster.StartJob(context.Background(), spec)
	if err != nil {
		c.T.Fatal(err)
	}
	return id
}

// Rounds lists a job's rounds as the leader knows them.
func (c *Cluster) Rounds(job string) []api.Round {
	c.T.Helper()
	rounds, err := c.Cluster.Rounds(context.Background(), job)
	if err != nil {
		c.T.Fatal(err)
	}
	return rounds
}

// WaitCommitted waits until job has n committed training rounds and
// returns its training rounds (a statistics round, if any, is left out).
func (c *Cluster) WaitCommitted(job string, n int, timeout time.Duration) []api.Round {
	c.T.Helper()
	rounds, err := c.Cluster.WaitCommitted(context.Background(), job, n, timeout)
	if err != nil {
		c.T.Fatal(err)
	}
	return rounds
}
