package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/netutil"
	"github.com/fedge/fedge/internal/wait"
)

// Proc is one coordinator or agent process of a Cluster. A killed Proc can
// be started again with the same arguments (Cluster.Restart).
type Proc struct {
	// Name is "c1".."cN" for coordinators, "agentNN" for agents.
	Name string
	// LogPath is the file its stdout and stderr go to (appended to across
	// restarts).
	LogPath string
	// HTTP is an agent's inference address ("" for coordinators).
	HTTP string

	args     []string
	cmd      *exec.Cmd
	expected bool // an exit the cluster asked for (stop, kill)
	exited   chan struct{}
}

// Pid returns the process ID of the running process.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// fleet tracks the processes a Cluster started so it can stop every one,
// and reports (through died) each that exits when nobody asked it to.
type fleet struct {
	bin      string
	mu       sync.Mutex
	procs    []*Proc
	stopping bool
	// died is called once per process that exits on its own, with an
	// error naming it and quoting the end of its log.
	died func(error)
}

// tailLines is how much of a dead process's log a failure quotes.
const tailLines = 15

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// run starts p's process (again, for a restart).
func (f *fleet) run(p *Proc) error {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(f.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s %s: %w", f.bin, strings.Join(p.args, " "), err)
	}
	exited := make(chan struct{})
	f.mu.Lock()
	p.cmd, p.expected, p.exited = cmd, false, exited
	f.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		f.mu.Lock()
		unasked := !f.stopping && !p.expected
		f.mu.Unlock()
		close(exited)
		if unasked && f.died != nil {
			f.died(fmt.Errorf("demo: `%s %s` exited (%v); the last lines of %s:\n%s",
				filepath.Base(f.bin), strings.Join(p.args, " "), err, p.LogPath, logTail(p.LogPath, tailLines)))
		}
	}()
	return nil
}

func (f *fleet) start(name, logPath string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, LogPath: logPath, args: args}
	if err := f.run(p); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	return p, nil
}

// signal sends sig to p's process group; SIGKILL and SIGTERM mark the exit
// as asked for.
func (f *fleet) signal(p *Proc, sig syscall.Signal) error {
	f.mu.Lock()
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		p.expected = true
	}
	cmd := p.cmd
	f.mu.Unlock()
	return syscall.Kill(-cmd.Process.Pid, sig)
}

// stop sends SIGTERM to every process, waits up to grace, then SIGKILLs
// whatever is left.
func (f *fleet) stop(grace time.Duration) {
	f.mu.Lock()
	procs := f.procs
	f.procs = nil
	f.stopping = true
	f.mu.Unlock()
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT) // a paused one must hear SIGTERM
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-deadline:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// ClusterOptions configure StartCluster. Zero values mean the defaults.
type ClusterOptions struct {
	// Binary is the fedge executable (default the running executable).
	Binary string
	// Dir holds every process's files (required).
	Dir string
	// Name is the cluster's name (default "demo"); Nodes the number of
	// coordinators (default 3).
	Name  string
	Nodes int
	// Died, if set, is called when a process exits that nobody stopped.
	Died func(error)
}

// Cluster is a fedge cluster of real processes on loopback, started from
// the fedge binary as an operator would: `fedge coordinator` per node and
// `fedge agent` per host, each logging into its own folder under Dir. The
// demo and the fault suite (internal/chaos) drive it.
type Cluster struct {
	Dir   string
	Name  string
	Peers []coordinator.Peer
	// Addrs are the coordinators' QUIC addresses, in Peers' order.
	Addrs []string
	// Admin is an operator client of the cluster.
	Admin  *api.Client
	Nodes  []*Proc
	Agents []*Proc
	procs  *fleet
}

// StartCluster initialises a cluster in o.Dir, starts its coordinators and
// waits (up to a minute) until they elect a leader.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Binary = exe
	}
	if o.Dir == "" {
		return nil, errors.New("demo.StartCluster: Dir is required")
	}
	if o.Name == "" {
		o.Name = "demo"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	udp, err := netutil.FreeLoopbackAddrs("udp", o.Nodes)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: o.Dir, Name: o.Name, procs: &fleet{bin: o.Binary, died: o.Died}}
	for i, a := range udp {
		c.Peers = append(c.Peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
		c.Addrs = append(c.Addrs, a)
	}
	if err := coordinator.InitCluster(rand.Reader, o.Name, c.Peers, o.Dir, time.Now()); err != nil {
		return nil, err
	}
	for _, p := range c.Peers {
		cfgPath := filepath.Join(o.Dir, p.ID, "coordinator.json")
		if err := writeJSON(cfgPath, coordinator.Config{NodeID: p.ID, DataDir: filepath.Join(o.Dir, p.ID), Listen: p.Addr, Peers: c.Peers}); err != nil {
			c.Close()
			return nil, err
		}
		proc, err := c.procs.start(p.ID, filepath.Join(o.Dir, p.ID, "log"), "coordinator", "-config", cfgPath)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, proc)
	}
	if c.Admin, err = api.Load(filepath.Join(o.Dir, "admin"), c.Addrs); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.WaitLeader(ctx, time.Minute); err != nil {
		c.Close()
		return nil, fmt.Errorf("demo: the cluster did not come up (logs in %s): %w", o.Dir, err)
	}
	return c, nil
}

// WaitLeader polls the cluster's status until a leader is known.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	err := wait.Until(ctx, timeout, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return c.Admin.Read(cctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st) == nil && st.Cluster == c.Name && st.LeaderID != ""
	})
	return st, err
}

// Node returns the coordinator process with the given ID ("c2").
func (c *Cluster) Node(id string) *Proc {
	for _, p := range c.Nodes {
		if p.Name == id {
			return p
		}
	}
	return nil
}

// AgentOptions configure AddAgents.
type AgentOptions struct {
	// N agents, each holding shard i of Shards (default N) of the MNIST
	// files in MNIST, cut by Partition ("pathological", "dirichlet", "iid").
	N         int
	Shards    int
	MNIST     string
	Partition string
	// Canaries is how many of them are labelled tier=canary (the rest
	// tier=prod).
	Canaries int
	// Connect is how long to wait for all of them to connect (default 2 min).
	Connect time.Duration
}

// AddAgents enrolls and starts o.N agent processes and waits until every
// one is connected.
func (c *Cluster) AddAgents(ctx context.Context, o AgentOptions) error {
	if o.Shards == 0 {
		o.Shards = o.N
	}
	if o.Connect == 0 {
		o.Connect = 2 * time.Minute
	}
	http, err := netutil.FreeLoopbackAddrs("tcp", o.N)
	if err != nil {
		return err
	}
	first := len(c.Agents)
	for i := 0; i < o.N; i++ {
		labels := map[string]string{"tier": "prod"}
		if i < o.Canaries {
			labels["tier"] = "canary"
		}
		var tok api.TokenResponse
		if tok, err = c.Admin.Tokens().Create(ctx, api.TokenRequest{Labels: labels, TTL: api.Duration(time.Hour)}); err != nil {
			return err
		}
		name := fmt.Sprintf("agent%02d", first+i)
		dir := filepath.Join(c.Dir, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		cfg := map[string]any{
			"coordinators": c.Addrs, "join_token": tok.Token, "data_dir": filepath.Join(dir, "data"),
			"dataset": map[string]any{
				"kind": "mnist", "path": o.MNIST, "partition": o.Partition, "shard": i, "shards": o.Shards,
				"seed": 1, "alpha": 0.5, "held_out": 0.1,
			},
			"threads": 1, "inference_listen": http[i], "log_level": "info",
		}
		if err := writeJSON(filepath.Join(dir, "agent.json"), cfg); err != nil {
			return err
		}
		p, err := c.procs.start(name, filepath.Join(dir, "log"), "agent", "-config", filepath.Join(dir, "agent.json"))
		if err != nil {
			return err
		}
		p.HTTP = http[i]
		c.Agents = append(c.Agents, p)
	}
	connected := 0
	if err := wait.Until(ctx, o.Connect, func() bool {
		connected = c.Connected(ctx)
		return connected >= len(c.Agents)
	}); err != nil {
		return fmt.Errorf("demo: only %d of %d agents connected (logs in %s): %w", connected, len(c.Agents), c.Dir, err)
	}
	return nil
}

// Connected returns how many agents the cluster sees connected (0 when the
// question fails).
func (c *Cluster) Connected(ctx context.Context) int {
	agents, err := c.Admin.Agents().List(ctx, api.QueryOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for _, a := range agents {
		if a.Connected {
			n++
		}
	}
	return n
}

// Signal sends sig to p's process (SIGKILL for kill -9, SIGSTOP/SIGCONT
// to freeze and thaw). A process killed this way is not reported as died.
func (c *Cluster) Signal(p *Proc, sig syscall.Signal) error { return c.procs.signal(p, sig) }

// Wait waits until p's process has exited.
func (c *Cluster) Wait(ctx context.Context, p *Proc) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart starts p's process again with the same arguments; the old one
// must have exited.
func (c *Cluster) Restart(p *Proc) error {
	select {
	case <-p.exited:
	default:
		return fmt.Errorf("demo: %s is still running", p.Name)
	}
	return c.procs.run(p)
}

// Close stops every process (SIGTERM, then SIGKILL after 5 s) and the
// admin client.
func (c *Cluster) Close() {
	c.procs.stop(5 * time.Second)
	if c.Admin != nil {
		c.Admin.Close()
	}
}
