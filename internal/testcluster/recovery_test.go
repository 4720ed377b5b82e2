package testcluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
)

// recoveryBound is what these tests require of a recovery: well above the
// goal of 10 s, which `make chaos` measures (docs/BENCHMARKS.md), so a
// loaded CI machine does not fail them, and well below what the faults cost
// before their fixes (49 s for the leader, 210 s for the agents), so they
// still fail without them.
const recoveryBound = 30 * time.Second

const childConfigEnv = "FEDGE_TESTCLUSTER_AGENT_CONFIG"

// TestAgentProcessChild is the agent process the crash tests kill with
// SIGKILL: it runs an agent from the JSON configuration the environment
// names, prints its inference address and runs until killed.
func TestAgentProcessChild(t *testing.T) {
	path := os.Getenv(childConfigEnv)
	if path == "" {
		t.Skip("child process of TestAgentsKilledMidRound")
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	a, err := agent.New(cfg, testcluster.Logger())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("listening", a.InferenceAddr())
	err = a.Run(context.Background())
	fmt.Println("error", err)
	os.Exit(3)
}

// agentProcess is an agent running in a child process.
type agentProcess struct {
	cmd  *exec.Cmd
	http string // inference address
}

// startAgentProcess enrolls agent i of c and runs it in a child process.
func startAgentProcess(t *testing.T, c *testcluster.Cluster, i int) *agentProcess {
	t.Helper()
	cfg := c.AgentConfig(i)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Dir, fmt.Sprintf("agent%02d.json", i))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, line := testutil.StartChild(t, "TestAgentProcessChild", childConfigEnv+"="+path)
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		t.Fatalf("agent process said %q", line)
	}
	return &agentProcess{cmd: cmd, http: addr}
}

// roundsJoined reads the agent's fedge_agent_rounds_joined_total.
func (p *agentProcess) roundsJoined() int {
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "fedge_agent_rounds_joined_total "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// runningRound returns the ID of the round the leader runs, or 0.
func runningRound(leader *coordinator.Node) uint64 {
	var id uint64
	leader.FSM().Read(func(s *coordinator.State) {
		for rid, r := range s.Rounds {
			if r.State == api.RoundRunning {
				id = rid
			}
		}
	})
	return id
}

// TestAgentsKilledMidRound kills two of five agents with SIGKILL after
// they joined a SecAgg+ round: the coordinator sees their sessions go
// within the agents' session timeout and drops them from the round, which
// commits with the three survivors well before its stage deadlines. The
// agents list then shows them disconnected, and the survivors serving the
// version they report.
func TestAgentsKilledMidRound(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 100})
	procs := []*agentProcess{startAgentProcess(t, c, 3), startAgentProcess(t, c, 4)}
	c.WaitConnected(5)
	spec := fedAvgJob(4)
	// Deadlines far beyond the recovery bound: only dropping the dead
	// agents at once can commit the round in time.
	spec.Deadline = api.Deadlines{Download: api.Duration(20 * time.Second), Train: api.Duration(60 * time.Second), Stage: api.Duration(30 * time.Second)}
	job := c.StartJob(spec)
	c.WaitCommitted(job, 1, 120*time.Second)
	_, leader := c.Leader()
	joined := []int{procs[0].roundsJoined(), procs[1].roundsJoined()}
	var inFlight uint64
	testutil.WaitFor(c.T, 60*time.Second, "both agent processes in a new round", func() bool {
		inFlight = runningRound(leader)
		return inFlight != 0 && procs[0].roundsJoined() > joined[0] && procs[1].roundsJoined() > joined[1]
	})
	killed := time.Now()
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	var rec coordinator.RoundRecord
	testutil.WaitFor(c.T, 60*time.Second, fmt.Sprintf("round %d to end", inFlight), func() bool {
		ended := false
		leader.FSM().Read(func(s *coordinator.State) {
			if r, ok := s.Rounds[inFlight]; ok && r.State != api.RoundRunning {
				rec, ended = *r, true
			}
		})
		return ended
	})
	took := rec.EndedAt.Sub(killed)
	t.Logf("round %d %s %v after two agents were killed (survivors %v)", rec.ID, rec.State, took.Round(time.Millisecond), rec.Metrics["survivors"])
	if rec.State != api.RoundCommitted || rec.Metrics["survivors"] != 3 {
		t.Fatalf("round %d ended %s (%s) with %v survivors, want committed with 3", rec.ID, rec.State, rec.Error, rec.Metrics["survivors"])
	}
	if took > recoveryBound {
		t.Fatalf("round committed %v after the kill, want within %v", took, recoveryBound)
	}

	// The agents list: the killed agents are gone, the others serve (and
	// say they serve) the models they hold.
	testutil.WaitFor(c.T, 2*agent.DefaultSessionTimeout, "the killed agents shown disconnected", func() bool {
		var infos []api.Agent
		if err := c.Admin.Call(context.Background(), api.VerbAgentsList, api.QueryOptions{}, nil, &infos); err != nil {
			return false
		}
		connected := 0
		for _, a := range infos {
			if a.Connected {
				connected++
			}
		}
		return connected == 3
	})
	testutil.WaitFor(c.T, 30*time.Second, "agents list SERVES = the version each agent serves", func() bool {
		var infos []api.Agent
		if err := c.Admin.Call(context.Background(), api.VerbAgentsList, api.QueryOptions{}, nil, &infos); err != nil {
			return false
		}
		serves := map[string]uint64{}
		for _, a := range infos {
			serves[a.ID] = a.Served
		}
		for _, a := range c.Fleet {
			d := a.Daemon()
			if v := d.ModelVersion(); v == 0 || serves[d.ID()] != v {
				return false
			}
		}
		return true
	})
}

// TestLeaderKilledRecovers makes the leader vanish mid-round as with
// SIGKILL (its proxy drops every packet, so nobody hears it close): the
// agents notice within their session timeout, find the new leader by
// asking every coordinator at once, and a round commits within
// recoveryBound of the kill.
func TestLeaderKilledRecovers(t *testing.T) {
	heavy(t)
	// 100 examples per agent: the test times the recovery, not training
	// (which the shared CPUs of a test machine stretch).
	c := testcluster.New(t, testcluster.Options{Agents: 5, Shards: 600, Proxied: true})
	job := c.StartJob(fedAvgJob(20))
	c.WaitCommitted(job, 1, 120*time.Second)
	li, leader := c.Leader()
	var inFlight uint64
	testutil.WaitFor(c.T, 60*time.Second, "a round in flight", func() bool {
		inFlight = runningRound(leader)
		return inFlight != 0
	})
	committed := func(n *coordinator.Node) int {
		k := 0
		n.FSM().Read(func(s *coordinator.State) {
			for _, r := range s.Rounds {
				if r.State == api.RoundCommitted {
					k++
				}
			}
		})
		return k
	}
	before := committed(leader)
	killed := time.Now()
	c.KillNode(li)
	var took time.Duration
	var next coordinator.RoundRecord
	testutil.WaitFor(c.T, 60*time.Second, "a round committed by the new leader", func() bool {
		for _, n := range c.Nodes {
			if n != nil && n.IsLeader() && committed(n) > before {
				took = time.Since(killed)
				n.FSM().Read(func(s *coordinator.State) {
					for _, r := range s.Rounds {
						if r.State == api.RoundCommitted && r.ID > next.ID {
							next = *r
						}
					}
				})
				return true
			}
		}
		return false
	})
	t.Logf("next round (%d) started %v and committed %v after the leader was killed (round %d was in flight)",
		next.ID, next.StartedAt.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond), inFlight)
	if took > recoveryBound {
		t.Fatalf("next round committed %v after the leader was killed, want within %v", took, recoveryBound)
	}
}

// closeBound is how long stopping a coordinator may take. Nothing in a
// stop waits on the network: the listener closes first, which fails every
// RPC, dial and stream in flight.
const closeBound = 5 * time.Second

// TestLeaderStopsPromptlyMidRound kills the leader at different points of
// a SecAgg+ round (each kill a little later after the round started, so
// the kills land in different stages) and requires each stop to return
// within closeBound: a stop that waits for a peer that vanished, or for a
// round that ignores its context, would hang a real process's shutdown.
// Each killed node restarts from its data dir and the job goes on.
func TestLeaderStopsPromptlyMidRound(t *testing.T) {
	heavy(t)
	c := testcluster.New(t, testcluster.Options{Agents: 4, Shards: 600, Proxied: true})
	job := c.StartJob(fedAvgJob(1000))
	c.WaitCommitted(job, 1, 120*time.Second)
	committed := 0
	for k := range 3 {
		li, leader := c.Leader()
		testutil.WaitFor(c.T, 60*time.Second, "a round in flight", func() bool { return runningRound(leader) != 0 })
		// Not synchronisation: it moves the kill point through the round.
		time.Sleep(time.Duration(k) * 300 * time.Millisecond)
		start := time.Now()
		c.KillNode(li)
		if took := time.Since(start); took > closeBound {
			t.Fatalf("kill %d: stopping the leader took %v, want within %v", k, took, closeBound)
		}
		committed = 0
		for _, r := range c.Rounds(job) {
			if r.State == api.RoundCommitted {
				committed++
			}
		}
		c.StartNode(li)
	}
	// The job goes on after the last kill.
	c.WaitCommitted(job, committed+1, 120*time.Second)
}
