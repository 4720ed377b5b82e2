package agent

import (
	"math"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestExplainRoundSecureSum runs an explanation round of three agents
// through the real SecAgg+ server: the decoded sum is the attribution
// sums and example count of all their held-out data, as if pooled, and
// an agent caps the examples it explains at MaxExamples.
func TestExplainRoundSecureSum(t *testing.T) {
	m, blob := smallModel(t, 4)
	h := newHub(map[uint64][]byte{8: blob})
	var agents []*Agent
	for k := range 3 {
		agents = append(agents, roundAgent(t, synthData(40+10*k, 12, 3, uint64(30+k)), 0.5))
	}
	const maxExamples = 22 // the third agent holds 30 held-out examples
	cfg := h.start(t, agents, protocol.FixedLen(12+1), nil)
	req := &protocol.ExplainRequest{RoundID: 31, ModelVersion: 8, ModelHash: m.Hash(), Features: 12, Steps: 16, MaxExamples: maxExamples, SecAgg: cfg}
	for _, a := range agents {
		tw := &twin{agent: a.ID(), hub: h}
		if j, _ := a.serve(tw, invite(31, protocol.RoundExplain, 20*time.Second)); !j.(*protocol.RoundJoin).Accept {
			t.Fatalf("declined: %+v", j)
		}
		if _, err := a.serve(tw, req); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, agents...)
	h.wait(t) // the round's outcome is written by the hub's goroutine
	if h.err != nil || h.result == nil || len(h.result.Survivors) != 3 {
		t.Fatalf("round failed: %v", h.err)
	}
	got, err := protocol.DecodeFixed(h.result.Sum)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 13)
	for _, a := range agents {
		s, n, err := tensor.AttributionSums(m, a.data.heldOut, maxExamples, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range s {
			want[i] += v
		}
		want[12] += float64(n)
	}
	if want[12] != 20+22+22 {
		t.Fatalf("held-out examples %v: the test data changed", want[12])
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6*(1+want[i]) {
			t.Fatalf("value %d: %v, want %v", i, got[i], want[i])
		}
	}
	var nonzero int
	for _, v := range got[:12] {
		if v > 0 {
			nonzero++
		}
	}
	if nonzero < 6 {
		t.Errorf("only %d of 12 features have attributions", nonzero)
	}
}

// TestExplainRoundWrongWidth: an agent whose data has another width than
// the model withdraws.
func TestExplainRoundWrongWidth(t *testing.T) {
	m, blob := smallModel(t, 4)
	h := newHub(map[uint64][]byte{8: blob})
	var agents []*Agent
	for k := range 3 {
		agents = append(agents, roundAgent(t, synthData(40, 12, 3, uint64(3+k)), 0.5))
	}
	cfg := h.start(t, agents, protocol.FixedLen(9+1), nil)
	for _, a := range agents {
		tw := &twin{agent: a.ID(), hub: h}
		if j, _ := a.serve(tw, invite(32, protocol.RoundExplain, 20*time.Second)); !j.(*protocol.RoundJoin).Accept {
			t.Fatal("declined")
		}
		if _, err := a.serve(tw, &protocol.ExplainRequest{RoundID: 32, ModelVersion: 8, ModelHash: m.Hash(), Features: 9, Steps: 8, MaxExamples: 5, SecAgg: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, agents...)
	for _, a := range agents {
		if a.m.roundsFailed.Load() != 1 || a.m.roundsCompleted.Load() != 0 {
			t.Fatalf("rounds failed %d, completed %d: want the agent to leave", a.m.roundsFailed.Load(), a.m.roundsCompleted.Load())
		}
	}
}
