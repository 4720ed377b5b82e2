//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/demo"
	"github.com/fedge/fedge/internal/testutil"
)

// fedgeBin is the fedge binary the scenarios run, built once by TestMain.
var fedgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fedge-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fedgeBin = filepath.Join(dir, "fedge")
	build := exec.Command("go", "build", "-o", fedgeBin, "github.com/fedge/fedge/cmd/fedge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: building fedge:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one scenario's measured recovery, appended to the file named
// by $FEDGE_CHAOS_RESULTS (for docs/BENCHMARKS.md).
type result struct {
	Scenario string  `json:"scenario"`
	Measure  string  `json:"measure"`
	Seconds  float64 `json:"seconds,omitempty"`
	Value    float64 `json:"value,omitempty"`
	Goal     string  `json:"goal"`
}

func record(t *testing.T, r result) {
	t.Helper()
	t.Logf("RESULT %s: %s = %.2fs %.4g (goal %s)", r.Scenario, r.Measure, r.Seconds, r.Value, r.Goal)
	path := os.Getenv("FEDGE_CHAOS_RESULTS")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	b, _ := json.Marshal(r)
	f.Write(append(b, '\n'))
}

// env is a running cluster of processes with a job.
type env struct {
	t   *testing.T
	ctx context.Context
	c   *demo.Cluster
	job string
}

// newEnv starts 3 coordinators and agents processes with an IID shard of
// MNIST each; a process that dies on its own fails the test.
func newEnv(t *testing.T, agents int) *env {
	t.Helper()
	mnist := testutil.MNISTDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	c, err := demo.StartCluster(ctx, demo.ClusterOptions{Binary: fedgeBin, Dir: dir, Name: "chaos",
		Died: func(err error) { t.Errorf("a process died on its own: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, c: c}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, p := range append(append([]*demo.Proc(nil), c.Nodes...), c.Agents...) {
				b, _ := os.ReadFile(p.LogPath)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 20 {
					lines = lines[len(lines)-20:]
				}
				t.Logf("--- last lines of %s:\n%s", p.Name, strings.Join(lines, "\n"))
			}
		}
	})
	if err := c.AddAgents(ctx, demo.AgentOptions{N: agents, Shards: 100, MNIST: mnist, Partition: "iid"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// startJob starts a long SecAgg+ job of the 2nn (E=3, B=10, 600 examples
// per agent) with the default deadlines, so recovery is measured as a
// user's job would see it.
func (e *env) startJob(minClients int) {
	e.t.Helper()
	var job api.Job
	spec := api.JobSpec{Name: "chaos", Model: "2nn", Rounds: 10000, Fraction: 1, MinClients: minClients, Seed: 1,
		Plan: api.LocalPlan{Epochs: 3, BatchSize: 10, LR: 0.05}, SecAgg: api.SecAggSpec{Enabled: true}}
	if err := e.c.Admin.Call(e.ctx, api.VerbJobsStart, api.QueryOptions{}, spec, &job); err != nil {
		e.t.Fatal(err)
	}
	e.job = job.ID
}

// rounds lists the job's training rounds (nil if the call failed).
func (e *env) rounds() []api.Round {
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
	defer cancel()
	var rs []api.Round
	if err := e.c.Admin.Call(ctx, api.VerbRoundsList, api.QueryOptions{}, api.RoundsRequest{Job: e.job}, &rs); err != nil {
		return nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	return rs
}

func committed(rs []api.Round) int {
	n := 0
	for _, r := range rs {
		if r.State == api.RoundCommitted {
			n++
		}
	}
	return n
}

// waitCommitted waits until the job has at least n committed rounds.
func (e *env) waitCommitted(n int, timeout time.Duration) time.Duration {
	e.t.Helper()
	return testutil.WaitFor(e.t, timeout, fmt.Sprintf("%d committed rounds", n), func() bool { return committed(e.rounds()) >= n })
}

// midRound waits for a running round, then lets its agents get into
// their local training (the round record is replicated at its start and
// end only, so joining is not visible from outside), and returns it.
func (e *env) midRound(timeout time.Duration) api.Round {
	e.t.Helper()
	var got api.Round
	testutil.WaitFor(e.t, timeout, "a round in flight", func() bool {
		for _, r := range e.rounds() {
			if r.State == api.RoundRunning {
				got = r
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond) // into the round: invites, joins, training
	return got
}

// status asks one coordinator (only) for its view of the cluster.
func (e *env) status(addr string) (api.ClusterStatus, error) {
	adm, err := api.Load(filepath.Join(e.c.Dir, "admin"), []string{addr})
	if err != nil {
		return api.ClusterStatus{}, err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	var st api.ClusterStatus
	err = adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st)
	return st, err
}

// leader returns the leader's process.
func (e *env) leader() *demo.Proc {
	e.t.Helper()
	st, err := e.c.WaitLeader(e.ctx, 30*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.c.Node(st.LeaderID)
}

// checkVersions asserts the invariant of every scenario: each committed
// round made its own model version, and the registry holds every one of
// them, each version once, with the rounds' models chained by parent.
func (e *env) checkVersions() {
	e.t.Helper()
	rs := e.rounds()
	var models []api.Model
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.c.Admin.Call(ctx, api.VerbModelsList, api.QueryOptions{}, nil, &models); err != nil {
		e.t.Fatal(err)
	}
	held := map[uint64]api.Model{}
	for _, m := range models {
		if _, dup := held[m.Version]; dup {
			e.t.Errorf("version %d listed twice", m.Version)
		}
		held[m.Version] = m
	}
	outs := map[uint64]uint64{}
	for _, r := range rs {
		if r.State != api.RoundCommitted {
			continue
		}
		if prev, dup := outs[r.ModelOut]; dup {
			e.t.Errorf("rounds %d and %d both committed version %d", prev, r.ID, r.ModelOut)
		}
		outs[r.ModelOut] = r.ID
	}
	// The registry keeps the last versions (and pinned ones); every
	// committed version it no longer holds must be older than all it holds.
	var newest uint64
	for v := range held {
		newest = max(newest, v)
	}
	for v, id := range outs {
		m, ok := held[v]
		if !ok && v+5 > newest {
			e.t.Errorf("round %d committed version %d, which the registry lost", id, v)
		}
		if ok && m.Round != id {
			e.t.Errorf("version %d names round %d, committed by round %d", v, m.Round, id)
		}
	}
	e.t.Logf("%d committed rounds, %d distinct versions, registry holds %d", len(outs), len(outs), len(held))
}
