package agent

import (
	"math"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor/data"
)

// TestStatsRoundSecureSum runs a statistics round of four agents through
// the real SecAgg+ server and checks that the decoded sum is the
// federation's statistics, as if the data had been pooled.
func TestStatsRoundSecureSum(t *testing.T) {
	h := newHub(nil)
	var agents []*Agent
	pooled := data.NewStats(12)
	for k := range 4 {
		ds := synthData(30+7*k, 12, 3, uint64(k+5))
		for i := range ds.X {
			ds.X[i] = ds.X[i]*float32(100*(i%12+1)) - 40 // features of very different scales
		}
		a := roundAgent(t, ds, 0.2)
		agents = append(agents, a)
		if err := pooled.Add(data.ComputeStats(a.data.train)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := h.start(t, agents, protocol.FixedLen(3*12), nil)
	for i, a := range agents {
		tw := &twin{agent: a.ID(), hub: h}
		join, err := a.serve(tw, invite(21, protocol.RoundStats, 20*time.Second))
		if err != nil || !join.(*protocol.RoundJoin).Accept {
			t.Fatalf("agent %d did not join: %+v %v", i, join, err)
		}
		if _, err := a.serve(tw, &protocol.StatsRequest{RoundID: 21, Features: 12, SecAgg: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, agents...)
	h.wait(t)
	if h.err != nil || h.result == nil || len(h.result.Survivors) != 4 {
		t.Fatalf("round failed: %v", h.err)
	}
	v, err := protocol.DecodeFixed(h.result.Sum)
	if err != nil {
		t.Fatal(err)
	}
	got, err := data.StatsFromVector(v)
	if err != nil {
		t.Fatal(err)
	}
	for j := range 12 {
		if got.Count[j] != pooled.Count[j] {
			t.Fatalf("feature %d: count %v, want %v", j, got.Count[j], pooled.Count[j])
		}
		if d := math.Abs(got.Mean(j) - pooled.Mean(j)); d > 1e-6*(1+math.Abs(pooled.Mean(j))) {
			t.Fatalf("feature %d: mean %v, want %v", j, got.Mean(j), pooled.Mean(j))
		}
		if d := math.Abs(got.Var(j) - pooled.Var(j)); d > 1e-6*(1+pooled.Var(j)) {
			t.Fatalf("feature %d: variance %v, want %v", j, got.Var(j), pooled.Var(j))
		}
	}
	for _, a := range agents {
		if a.m.roundsCompleted.Load() != 1 {
			t.Fatalf("agent %s: %d rounds completed", a.ID(), a.m.roundsCompleted.Load())
		}
	}
}

// TestStatsRoundWrongWidth: an agent whose data has another number of
// features than the job's model withdraws instead of sending anything.
func TestStatsRoundWrongWidth(t *testing.T) {
	h := newHub(nil)
	var agents []*Agent
	for k := range 3 {
		agents = append(agents, roundAgent(t, synthData(20, 12, 3, uint64(k)), 0.2))
	}
	cfg := h.start(t, agents, protocol.FixedLen(3*10), nil)
	a := agents[0]
	tw := &twin{agent: a.ID(), hub: h}
	if join, err := a.serve(tw, invite(22, protocol.RoundStats, 20*time.Second)); err != nil || !join.(*protocol.RoundJoin).Accept {
		t.Fatalf("join: %+v %v", join, err)
	}
	sent := false
	a.observeUpdate = func([]float32, []uint32) { sent = true }
	if _, err := a.serve(tw, &protocol.StatsRequest{RoundID: 22, Features: 10, SecAgg: cfg}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, a)
	if sent || a.m.roundsFailed.Load() != 1 || a.m.roundsCompleted.Load() != 0 {
		t.Fatalf("sent %v, failed %d, completed %d", sent, a.m.roundsFailed.Load(), a.m.roundsCompleted.Load())
	}
}
