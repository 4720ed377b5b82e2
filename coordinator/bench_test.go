package coordinator

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/tensor"
)

// benchRounds runs b.N training rounds of the 2nn with n synthetic agents
// (no training: random updates) under SecAgg+, through the engine with the
// in-memory transport, and reports the coordinator's own time per round
// (decoding, SecAgg+ server work, aggregation, the strategy; not waiting
// for agents) and the wall time per round. The simulated agents' client
// work shares one CPU semaphore: the fleet gets one core and the
// coordinator the other, as if the agents ran on their own hosts (without
// it, a thousand agents' crypto on the same two cores stretches the
// coordinator's wall time several-fold).
func benchRounds(b *testing.B, n int) {
	fsm, rep := benchState(b)
	cpu := make(chan struct{}, 1)
	agents := synthAgents(fsm, n, func(_ int, a *simAgent) *AgentRecord {
		a.cpu = cpu
		return &AgentRecord{ID: a.id}
	})
	links := make([]AgentLink, len(agents))
	for i, a := range agents {
		links[i] = a
	}
	eng := newEngine(discardLogger(), EngineConfig{Idle: 10 * time.Millisecond, InviteTimeout: time.Minute}, fsm, rep, func() []AgentLink { return links }, nil)
	for _, a := range agents {
		a.eng = eng
	}
	wall := timeJob(b, fsm, rep, eng, JobSpec{Model: "2nn", Rounds: b.N, Fraction: 1, MinClients: n, SecAgg: SecAggSpec{Enabled: true},
		Deadline: Deadlines{Train: Duration(10 * time.Minute), Stage: Duration(10 * time.Minute)}})
	_, coord := reportRounds(b, fsm, wall)
	b.ReportMetric(coord/float64(b.N), "coord-s/round")
}

// reportRounds fails b unless every round of the timed job committed,
// reports the wall time and survivors per round, and returns the rounds
// and the sum of their coordinator_seconds.
func reportRounds(b *testing.B, fsm *FSM, wall time.Duration) (rounds []RoundRecord, coord float64) {
	var survivors float64
	fsm.Read(func(s *State) {
		for _, r := range s.Rounds {
			if r.State != RoundCommitted {
				b.Fatalf("round %d %s: %s", r.ID, r.State, r.Error)
			}
			coord += r.Metrics["coordinator_seconds"]
			survivors += r.Metrics["survivors"]
			rounds = append(rounds, *r)
		}
	})
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s/round")
	b.ReportMetric(survivors/float64(b.N), "agents/round")
	return rounds, coord
}

// benchState is a bootstrapped in-memory replica for the engine
// benchmarks.
func benchState(b *testing.B) (*FSM, *memRep) {
	fsm := NewFSM(nil)
	rep := &memRep{f: fsm}
	if _, err := rep.apply(context.Background(), cmdBootstrap, bootstrapCmd{ClusterName: "bench", CA: []byte("ca")}, nil); err != nil {
		b.Fatal(err)
	}
	return fsm, rep
}

// synthAgents makes n synthetic agents (random updates, no training) on
// fsm and enrolls each with the record rec returns (rec may also set the
// agent's test fields).
func synthAgents(fsm *FSM, n int, rec func(i int, a *simAgent) *AgentRecord) []*simAgent {
	agents := make([]*simAgent, n)
	for i := range agents {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		a := &simAgent{id: fmt.Sprintf("ag-%04d", i), key: key, fsm: fsm, synthetic: true}
		fsm.state.Agents[a.id] = rec(i, a)
		agents[i] = a
	}
	return agents
}

// timeJob creates job "job" of spec, makes its initial model outside the
// timer, then runs eng until the job has ended and returns that wall
// time; the timer is stopped on return.
func timeJob(b *testing.B, fsm *FSM, rep *memRep, eng *Engine, spec JobSpec) time.Duration {
	ctx := context.Background()
	if err := spec.Normalize(); err != nil {
		b.Fatal(err)
	}
	if _, err := rep.apply(ctx, cmdJobCreate, JobRecord{ID: "job", Spec: spec, CreatedAt: time.Now()}, nil); err != nil {
		b.Fatal(err)
	}
	var j JobRecord
	fsm.Read(func(s *State) { j = *s.Jobs["job"] })
	if err := eng.initialModel(ctx, &j); err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() { eng.run(runCtx); close(done) }()
	if err := wait.Until(ctx, time.Hour, func() bool {
		var st string
		fsm.Read(func(s *State) { st = s.Jobs["job"].State })
		return st != JobRunning
	}); err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	return wall
}

func BenchmarkRoundCoordinator_N100_2NN(b *testing.B)  { benchRounds(b, 100) }
func BenchmarkRoundCoordinator_N1000_2NN(b *testing.B) { benchRounds(b, 1000) }

// BenchmarkCommitModelCNN_3Node measures the commit latency of a cnn-sized
// model (1,663,370 parameters, 6.65 MB) through a 3-node Raft cluster over
// QUIC on loopback, with bbolt stores and fsync, and reports the median.
func BenchmarkCommitModelCNN_3Node(b *testing.B) {
	dir := b.TempDir()
	addrs := testutil.FreeUDPAddrs(b, 3)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	if err := InitCluster(rand.Reader, "bench", peers, dir, time.Now()); err != nil {
		b.Fatal(err)
	}
	nodes := make([]*Node, 3)
	for i, p := range peers {
		n, err := NewNode(Config{NodeID: p.ID, DataDir: filepath.Join(dir, p.ID), Listen: p.Addr, Peers: peers, Raft: LoopbackRaftTimings})
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
		defer n.Close()
	}
	var leader *Node
	testutil.WaitFor(b, 30*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
			}
		}
		return leader != nil
	})
	spec, _ := tensor.NamedSpec("cnn")
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	blob, _ := m.MarshalBinary()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(blob)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		blob[len(blob)-5] = byte(i) // a different model every time
		t := time.Now()
		if _, err := leader.apply(ctx, cmdModelCommit, modelCommitCmd{Model: ModelRecord{Hash: fmt.Sprintf("h%d", i)}}, blob); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "ms-p90")
	// The followers hold the same bytes.
	for _, n := range nodes {
		testutil.WaitFor(b, 10*time.Second, "node "+n.ID()+" to hold the last model", func() bool {
			got, _ := n.FSM().ModelFile(uint64(b.N))
			return bytes.Equal(got, blob)
		})
	}
}
