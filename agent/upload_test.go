package agent

import (
	"testing"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestLargeModelMaskedUpload trains a model whose masked input exceeds
// protocol.MaxInlinePayload: each agent sends it as a bulk MaskedUpdate
// blob, then an empty MaskedInput, and the secure sum is still exact.
func TestLargeModelMaskedUpload(t *testing.T) {
	spec := tensor.Spec{Name: "wide", Input: []int{12}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerDense, Units: 90_000}, {Type: tensor.LayerReLU}, {Type: tensor.LayerDense, Units: 3}}}
	start, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := start.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(map[uint64][]byte{4: blob})
	var agents []*Agent
	for k := range 3 {
		agents = append(agents, roundAgent(t, synthData(12, 12, 3, uint64(k)), 0.25))
	}
	dim := start.NumParams() + protocol.UpdateMetrics
	if 4*dim <= protocol.MaxInlinePayload {
		t.Fatalf("model of %d parameters fits a stage message", start.NumParams())
	}
	q := &secagg.Quantizer{Clip: 1, Bits: 16, MaxWeight: 16}
	cfg := h.start(t, agents, q.EncodedLen(dim), q)
	plan := &protocol.RoundPlan{RoundID: 12, ModelVersion: 4, ModelHash: start.Hash(), Epochs: 1, BatchSize: 8, LR: 0.01, SecAgg: cfg}
	twins, ups := runTrainRound(t, h, agents, plan)
	h.wait(t)
	if h.err != nil || h.result == nil || len(h.result.Survivors) != 3 {
		t.Fatalf("round failed: %v", h.err)
	}
	want := make([]uint32, q.EncodedLen(dim))
	for _, u := range ups {
		for j, v := range u.x {
			want[j] += v
		}
	}
	for j := range want {
		if h.result.Sum[j] != want[j] {
			t.Fatalf("sum[%d] = %d, want %d", j, h.result.Sum[j], want[j])
		}
	}
	for i, tw := range twins {
		uploads, largest := 0, 0
		for _, f := range tw.frames() {
			if len(f) > 0 && protocol.MsgType(f[0]) == protocol.TypeMaskedUpdate {
				uploads++
			}
			largest = max(largest, len(f))
		}
		if uploads != 1 || largest < 4*dim {
			t.Fatalf("agent %d: %d MaskedUpdate headers, largest thing sent %d bytes", i, uploads, largest)
		}
	}
}
