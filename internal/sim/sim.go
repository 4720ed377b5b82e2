package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/inproc"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/internal/workpool"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// Errors of Run's options.
var (
	// ErrOptions is an option Run cannot work with.
	ErrOptions = errors.New("sim: bad options")
)

// Partitions of the dataset among the agents.
const (
	PartitionIID          = "iid"
	PartitionPathological = "pathological"
	PartitionDirichlet    = "dirichlet"
)

// Options describe a simulation. Zero values mean the documented defaults.
type Options struct {
	// Agents is the number of virtual agents (default 10).
	Agents int
	// Jobs are the training jobs the agents run, one after the other on
	// the same fleet (at least one unless ConnectOnly). A job's Seed, if
	// zero, is Seed.
	Jobs []api.JobSpec
	// ConnectOnly connects and enrolls the fleet, holds it for Hold, and
	// starts no job: a load test of sessions.
	ConnectOnly bool
	Hold        time.Duration
	// Dataset is read once for every agent (agent.LoadDataset; its shard
	// settings are ignored). Kind mnist uses the MNIST test set as the
	// test set; other kinds hold out TestFraction of the examples.
	Dataset      agent.DatasetConfig
	TestFraction float64 // default 0.1
	// Partition cuts the dataset among the agents: "iid" (default),
	// "pathological" (2 shards of sorted labels each) or "dirichlet"
	// (concentration Alpha, default 0.5).
	Partition string
	Alpha     float64
	// Seed makes a run repeatable (default 1): partition, training,
	// rounding, noise and the job's initial model.
	Seed uint64
	// Workers bounds the agents training or masking at once (default
	// GOMAXPROCS).
	Workers int
	// PerSocket is how many agents share one UDP socket (default 500).
	PerSocket int
	// Handshakes bounds the fleet's QUIC handshakes and enrollments in
	// flight (default 8): a coordinator admits at most 16 unverified
	// connections per source address (protocol.Admission), and every
	// virtual agent dials from this host's address.
	Handshakes int
	// Labels are every agent's labels.
	Labels map[string]string
	// Coordinators and Admin name a running cluster: the agents dial
	// Coordinators, and Admin (an operator's client) mints their join
	// tokens and starts the job. If Admin is nil, Run starts an in-process
	// cluster of LocalNodes coordinators (default 3) for the run.
	Coordinators []string
	Admin        *api.Client
	LocalNodes   int
	// LocalHeartbeat is the in-process cluster's heartbeat interval
	// (default 5 s). LocalRaft are its Raft timings (default
	// coordinator.LoadedHostRaftTimings: the cluster shares its process
	// with the whole fleet).
	LocalHeartbeat time.Duration
	LocalRaft      coordinator.RaftTimings
	// ConnectTimeout bounds the wait for every agent's session (default
	// 10 minutes), RoundTimeout the wait for each round's commit (default
	// 10 minutes).
	ConnectTimeout, RoundTimeout time.Duration
	// Progress receives one line per round (nil: none); Logger the logs.
	Progress io.Writer
	Logger   *slog.Logger
}

func (o *Options) defaults() error {
	if o.Agents == 0 {
		o.Agents = 10
	}
	if o.Agents < 1 {
		return fmt.Errorf("%w: %d agents", ErrOptions, o.Agents)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	o.Jobs = append([]api.JobSpec(nil), o.Jobs...)
	for i := range o.Jobs {
		if o.Jobs[i].Seed == 0 {
			o.Jobs[i].Seed = o.Seed
		}
		if o.Jobs[i].Rounds <= 0 {
			return fmt.Errorf("%w: job %d has %d rounds", ErrOptions, i+1, o.Jobs[i].Rounds)
		}
	}
	if o.TestFraction == 0 {
		o.TestFraction = 0.1
	}
	if !(o.TestFraction > 0 && o.TestFraction < 1) {
		return fmt.Errorf("%w: test fraction %v outside (0, 1)", ErrOptions, o.TestFraction)
	}
	switch o.Partition {
	case "":
		o.Partition = PartitionIID
	case PartitionIID, PartitionPathological, PartitionDirichlet:
	default:
		return fmt.Errorf("%w: partition %q (want iid, pathological or dirichlet)", ErrOptions, o.Partition)
	}
	if o.Alpha == 0 {
		o.Alpha = 0.5
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.PerSocket <= 0 {
		o.PerSocket = 500
	}
	if o.Handshakes <= 0 {
		o.Handshakes = 8
	}
	if o.LocalNodes == 0 {
		o.LocalNodes = 3
	}
	if o.LocalHeartbeat == 0 {
		o.LocalHeartbeat = 5 * time.Second
	}
	if o.LocalRaft == (coordinator.RaftTimings{}) {
		o.LocalRaft = coordinator.LoadedHostRaftTimings
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Minute
	}
	if o.RoundTimeout == 0 {
		o.RoundTimeout = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Admin != nil && len(o.Coordinators) == 0 {
		return fmt.Errorf("%w: an admin client without coordinators", ErrOptions)
	}
	if !o.ConnectOnly && len(o.Jobs) == 0 {
		return fmt.Errorf("%w: no job", ErrOptions)
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	// Agents is the fleet's size, Connected how many had a session with
	// the leader at once.
	Agents, Connected int
	// Enroll and Connect are the times to mint tokens and enroll every
	// agent, and then to connect them all.
	Enroll, Connect time.Duration
	// Jobs are the jobs run, in order.
	Jobs []JobResult
	// Examples is the size of the training pool, Test of the test set.
	Examples, Test int
	// PeakUpdates is the most trained updates the virtual agents held in
	// memory at once, from training until the update (plain, or masked
	// under SecAgg+) is written to the agent's session: at most twice
	// Options.Workers.
	PeakUpdates int
}

// Run runs a simulation: it starts the in-process cluster if asked,
// reads and partitions the dataset, enrolls and connects the virtual
// agents, runs the job and measures each committed model on the test set,
// printing a line per round to Options.Progress. It stops everything it
// started before it returns.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	log := o.Logger
	pool, test, classes, err := loadData(&o)
	if err != nil {
		return nil, err
	}
	shards, err := partition(&o, pool)
	if err != nil {
		return nil, err
	}
	res := &Result{Agents: o.Agents, Examples: pool.Len(), Test: test.Len()}

	admin, coords := o.Admin, o.Coordinators
	if admin == nil {
		c, err := inproc.Start(ctx, inproc.Options{Name: "sim", Nodes: o.LocalNodes, Heartbeat: o.LocalHeartbeat, Raft: o.LocalRaft, Logger: log.With("part", "coordinator")})
		if err != nil {
			return nil, fmt.Errorf("sim.Run: %w", err)
		}
		defer c.Close()
		admin = c.Admin
		coords = nil
		for _, p := range c.Peers {
			coords = append(coords, p.Addr)
		}
	}

	fctx, stop := context.WithCancel(ctx)
	defer stop()
	f := &fleet{ctx: fctx, opts: &o, log: log, data: pool, classes: classes, models: newModelCache(),
		pool: make(chan struct{}, o.Workers), uploads: make(chan struct{}, 2*o.Workers)}
	bind := "127.0.0.1:0"
	if !allLoopback(coords) {
		bind = ":0"
	}
	for range (o.Agents + o.PerSocket - 1) / o.PerSocket {
		d, err := protocol.NewDialer(bind)
		if err != nil {
			return nil, fmt.Errorf("sim.Run: %w", err)
		}
		defer d.Close()
		f.dialers = append(f.dialers, d)
	}
	f.agents = make([]*vagent, o.Agents)
	for i := range f.agents {
		f.agents[i] = &vagent{f: f, index: i, shard: shards[i]}
	}

	began := time.Now()
	// One call first: api.Client's concurrent first calls each dial a
	// session and close the others' (the last dial wins).
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err = admin.Cluster().Status(sctx, api.QueryOptions{})
	cancel()
	if err != nil {
		return res, fmt.Errorf("sim.Run: %w", err)
	}
	if err := workpool.Parallel(ctx, o.Agents, o.Handshakes, func(_, i int) error {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		tok, err := mintToken(tctx, func(ctx context.Context) (string, error) {
			t, err := admin.Tokens().Create(ctx, api.TokenRequest{Labels: o.Labels})
			return t.Token, err
		})
		if err != nil {
			return fmt.Errorf("sim.Run: join token %d: %w", i, err)
		}
		return f.agents[i].enroll(ctx, tok, coords)
	}); err != nil {
		return res, err
	}
	res.Enroll = time.Since(began)
	fmt.Fprintf(o.Progress, "enrolled %d virtual agents in %v\n", o.Agents, res.Enroll.Round(time.Millisecond))

	// Connect: at most Handshakes at once, then each agent keeps its
	// session on its own goroutine.
	began = time.Now()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	dials := make(chan struct{}, o.Handshakes)
	f.dials = dials
	for _, a := range f.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(fctx, coords, dials)
		}()
	}
	next := time.Now().Add(10 * time.Second)
	err = wait.Until(ctx, o.ConnectTimeout, func() bool {
		n := f.connected.Load()
		if time.Now().After(next) && n < int64(o.Agents) {
			fmt.Fprintf(o.Progress, "  %d of %d connected after %v\n", n, o.Agents, time.Since(began).Round(time.Second))
			next = next.Add(10 * time.Second)
		}
		return n >= int64(o.Agents)
	})
	res.Connected = int(f.connected.Load())
	if err != nil {
		return res, fmt.Errorf("sim.Run: %d of %d agents connected: %w", res.Connected, o.Agents, err)
	}
	res.Connect = time.Since(began)
	fmt.Fprintf(o.Progress, "connected %d virtual agents over QUIC from %d UDP sockets in %v\n", o.Agents, len(f.dialers), res.Connect.Round(time.Millisecond))
	if o.ConnectOnly {
		if o.Hold > 0 {
			wait.Sleep(ctx, o.Hold)
		}
		res.Connected = int(f.connected.Load())
		return res, nil
	}
	defer func() { res.PeakUpdates = int(f.stats.peak.Load()) }()
	for _, spec := range o.Jobs {
		jr, err := runJob(ctx, f, admin, test, spec)
		res.Jobs = append(res.Jobs, jr)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func allLoopback(addrs []string) bool {
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return false
		}
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// loadData reads the pool and the test set.
func loadData(o *Options) (pool, test *tensor.Dataset, classes int, err error) {
	all, names, err := agent.LoadDataset(o.Dataset)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("sim.loadData: %w", err)
	}
	if o.Dataset.Kind == agent.DatasetMNIST {
		_, test, err = data.LoadMNIST(o.Dataset.Path)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("sim.loadData: %w", err)
		}
		pool = all
	} else {
		pool, test = data.HoldOut(all, o.TestFraction, o.Seed)
	}
	classes = len(names)
	for _, y := range all.Y {
		classes = max(classes, int(y)+1)
	}
	return pool, test, classes, nil
}

// partition cuts the pool's indices among the agents.
func partition(o *Options, pool *tensor.Dataset) ([][]int, error) {
	n := pool.Len()
	if o.Agents > n {
		return nil, fmt.Errorf("%w: %d agents for %d examples", ErrOptions, o.Agents, n)
	}
	labels := make([]int32, n)
	for i, y := range pool.Y {
		labels[i] = max(y, 0)
	}
	var parts [][]int
	var err error
	switch o.Partition {
	case PartitionIID:
		parts = data.PartitionIID(n, o.Agents, o.Seed)
	case PartitionPathological:
		parts, err = data.PartitionPathological(labels, o.Agents, 2, o.Seed)
	case PartitionDirichlet:
		parts, err = data.PartitionDirichlet(labels, o.Agents, o.Alpha, o.Seed, max(1, min(10, n/o.Agents/2)))
	}
	if err != nil {
		return nil, fmt.Errorf("sim.partition: %w", err)
	}
	return parts, nil
}

// mintToken runs create until it returns a token, the coordinators refuse
// it (a *protocol.Error: the operator's credential, say), or ctx ends. An
// admin client never repeats a write on its own, because the write may
// have run; a cluster that has just started elects its first leader while
// the fleet's first tokens are asked for, and those calls fail with a
// closed session or no leader. Repeating a token request is harmless: a
// token minted twice leaves one unused, and unused tokens expire.
func mintToken(ctx context.Context, create func(context.Context) (string, error)) (string, error) {
	pause := 100 * time.Millisecond
	for {
		tok, err := create(ctx)
		var pe *protocol.Error
		if err == nil || errors.As(err, &pe) || ctx.Err() != nil {
			return tok, err
		}
		if !wait.Sleep(ctx, pause) {
			return "", err
		}
		pause = min(2*pause, 2*time.Second)
	}
}
