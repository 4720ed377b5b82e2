package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// smallSpec is a 12-feature, 3-class softmax regression: fast to train.
func smallModel(t testing.TB, seed uint64) (*tensor.Model, []byte) {
	t.Helper()
	spec := tensor.Spec{Name: "small", Input: []int{12}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 3}}}
	m, err := tensor.NewModel(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m, modelBlob(t, m)
}

// modelBlob returns m's file bytes.
func modelBlob(t testing.TB, m *tensor.Model) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func invite(id uint64, kind protocol.RoundKind, d time.Duration) *protocol.RoundInvite {
	now := time.Now()
	inv := &protocol.RoundInvite{RoundID: id, Job: "test", Kind: kind}
	for s := protocol.StageTrain; s <= protocol.StageUnmask; s++ {
		inv.Deadlines = append(inv.Deadlines, protocol.StageDeadline{Stage: s, At: now.Add(d * time.Duration(s))})
	}
	return inv
}

// update records what one agent's round produced before it was masked.
type update struct {
	vec []float32
	x   []uint32
}

// runTrainRound runs one training round of agents against h and returns
// the twins and each agent's unmasked update.
func runTrainRound(t *testing.T, h *hub, agents []*Agent, plan *protocol.RoundPlan) ([]*twin, []update) {
	t.Helper()
	twins := make([]*twin, len(agents))
	ups := make([]update, len(agents))
	var mu sync.Mutex
	for i, a := range agents {
		twins[i] = &twin{agent: a.ID(), hub: h}
		a.observeUpdate = func(vec []float32, x []uint32) {
			mu.Lock()
			ups[i] = update{append([]float32(nil), vec...), append([]uint32(nil), x...)}
			mu.Unlock()
		}
		join, err := a.serve(twins[i], invite(plan.RoundID, protocol.RoundTrain, 20*time.Second))
		if err != nil || !join.(*protocol.RoundJoin).Accept {
			t.Fatalf("agent %d did not join: %+v %v", i, join, err)
		}
	}
	for i, a := range agents {
		p := *plan
		if _, err := a.serve(twins[i], &p); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, agents...)
	return twins, ups
}

func TestTrainRoundSecureSumIsExact(t *testing.T) {
	start, blob := smallModel(t, 1)
	h := newHub(map[uint64][]byte{7: blob})
	var agents []*Agent
	for k := range 4 {
		agents = append(agents, roundAgent(t, synthData(40+10*k, 12, 3, uint64(k)), 0.25))
	}
	dim := start.NumParams() + protocol.UpdateMetrics
	q := &secagg.Quantizer{Clip: 2, Bits: 20, MaxWeight: 35}
	cfg := h.start(t, agents, q.EncodedLen(dim), q)
	plan := &protocol.RoundPlan{RoundID: 11, ModelVersion: 7, ModelHash: start.Hash(), Epochs: 3, BatchSize: 8, LR: 0.1,
		Momentum: 0.5, Mu: 0.01, Optimizer: "sgd", SecAgg: cfg}
	twins, ups := runTrainRound(t, h, agents, plan)

	h.wait(t)
	if h.err != nil || h.result == nil {
		t.Fatalf("round failed: %v", h.err)
	}
	if len(h.result.Survivors) != 4 {
		t.Fatalf("survivors %v", h.result.Survivors)
	}
	// The secure sum is exactly the sum of the agents' encodings.
	want := make([]uint32, q.EncodedLen(dim))
	var weights uint32
	for i, u := range ups {
		if len(u.x) != len(want) {
			t.Fatalf("agent %d encoded %d values", i, len(u.x))
		}
		for j, v := range u.x {
			want[j] += v
		}
		weights += uint32(min(agents[i].data.train.Len(), 35))
	}
	for j := range want {
		if h.result.Sum[j] != want[j] {
			t.Fatalf("sum[%d] = %d, want %d", j, h.result.Sum[j], want[j])
		}
	}
	if got := h.result.Sum[len(want)-1]; got != weights {
		t.Fatalf("summed weight %d, want %d (example counts capped at MaxWeight)", got, weights)
	}
	// Decoded, it is the weighted mean of the updates, within quantization.
	mean := make([]float32, dim)
	if _, err := q.DecodeMean(mean, h.result.Sum); err != nil {
		t.Fatal(err)
	}
	step := float64(q.Clip) / float64(int(1)<<(q.Bits-1)-1)
	for j := range mean {
		var s float64
		for i, u := range ups {
			s += float64(min(agents[i].data.train.Len(), 35)) * float64(u.vec[j])
		}
		if d := math.Abs(float64(mean[j]) - s/float64(weights)); d > 2*step {
			t.Fatalf("mean[%d] off by %g (step %g)", j, d, step)
		}
	}
	delta, loss, acc := protocol.SplitUpdateMetrics(mean, float64(q.Clip))
	if len(delta) != start.NumParams() || !(loss > 0 && loss < 5) || !(acc > 0.3 && acc <= 1.01) {
		t.Fatalf("metrics loss %v accuracy %v", loss, acc)
	}
	for _, a := range agents {
		if a.m.roundsCompleted.Load() != 1 || a.m.roundsJoined.Load() != 1 || a.m.bytesSent.Load() == 0 {
			t.Fatalf("metrics: joined %d completed %d bytes %d", a.m.roundsJoined.Load(), a.m.roundsCompleted.Load(), a.m.bytesSent.Load())
		}
		if _, inRound, c, _ := a.st.roundState(); inRound || c.completed != 1 {
			t.Fatalf("store: inRound %v counters %+v", inRound, c)
		}
		if d, ok, _ := a.st.base(7); !ok || !bytes.Equal(readModelData(t, a.st, d), blob) {
			t.Fatal("training base not cached")
		}
	}

	// Nothing but masked vectors and protocol material left the agents:
	// neither raw training rows nor the unmasked update appear in any
	// frame they sent.
	for i, tw := range twins {
		frames := tw.frames()
		if len(frames) != 6 { // model request + five stages
			t.Fatalf("agent %d sent %d frames", i, len(frames))
		}
		all := bytes.Join(frames, nil)
		train := agents[i].data.train
		for r := 0; r < train.Len(); r += 5 {
			if p := floatWindow(train.Row(r), 0, 6); bytes.Contains(all, p) {
				t.Fatalf("agent %d sent training row %d", i, r)
			}
		}
		for off := 0; off+6 <= start.NumParams(); off += 6 {
			if bytes.Contains(all, floatWindow(ups[i].vec, off, 6)) {
				t.Fatalf("agent %d sent its plain update at %d", i, off)
			}
			if bytes.Contains(all, uintWindow(ups[i].x, off, 6)) {
				t.Fatalf("agent %d sent its unmasked encoding at %d", i, off)
			}
		}
	}
}

func floatWindow(v []float32, off, n int) []byte {
	b := make([]byte, 0, 4*n)
	for _, x := range v[off : off+n] {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func uintWindow(v []uint32, off, n int) []byte {
	b := make([]byte, 0, 4*n)
	for _, x := range v[off : off+n] {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

// TestPlainRoundSendsUpdate checks the leak detector above can see an
// update: without SecAgg (robust strategies) the update travels in the
// clear, and the detector finds it.
func TestPlainRoundSendsUpdate(t *testing.T) {
	start, blob := smallModel(t, 2)
	h := newHub(map[uint64][]byte{3: blob})
	agents := []*Agent{roundAgent(t, synthData(30, 12, 3, 9), 0.2)}
	plan := &protocol.RoundPlan{RoundID: 5, ModelVersion: 3, ModelHash: start.Hash(), Epochs: 1, BatchSize: 4, LR: 0.05}
	twins, ups := runTrainRound(t, h, agents, plan)
	payload := h.plain[agents[0].ID()]
	vec, w, err := protocol.DecodePlainUpdate(payload, start.NumParams()+protocol.UpdateMetrics)
	if err != nil || int(w) != agents[0].data.train.Len() || !equalFloats(vec, ups[0].vec) {
		t.Fatalf("plain update: w %d err %v", w, err)
	}
	if !bytes.Contains(bytes.Join(twins[0].frames(), nil), floatWindow(ups[0].vec, 0, 6)) {
		t.Fatal("leak detector does not see a plain update")
	}
	if agents[0].m.roundsCompleted.Load() != 1 {
		t.Fatal("round not completed")
	}
}

func TestTrainRoundDropoutAndDP(t *testing.T) {
	start, blob := smallModel(t, 3)
	h := newHub(map[uint64][]byte{2: blob})
	var agents []*Agent
	for k := range 4 {
		agents = append(agents, roundAgent(t, synthData(30, 12, 3, uint64(10+k)), 0.1))
	}
	dim := start.NumParams() + protocol.UpdateMetrics
	q := &secagg.Quantizer{Clip: 1, Bits: 16} // unweighted, as under DP
	cfg := h.start(t, agents, q.EncodedLen(dim), q)
	h.dropAt[agents[2].ID()] = protocol.TypeMaskedInput
	const clipNorm = 0.05
	plan := &protocol.RoundPlan{RoundID: 12, ModelVersion: 2, ModelHash: start.Hash(), Epochs: 2, BatchSize: 4, LR: 0.5,
		SecAgg: cfg, DP: protocol.DPParams{ClipNorm: clipNorm, NoiseStdDev: 0.001}}
	_, ups := runTrainRound(t, h, agents, plan)
	h.wait(t)
	if h.err != nil || h.result == nil || len(h.result.Survivors) != 3 {
		t.Fatalf("round: %v %+v", h.err, h.result)
	}
	want := make([]uint32, len(h.result.Sum))
	for i, u := range ups {
		if i == 2 {
			continue
		}
		if n := dp.L2Norm(u.vec[:start.NumParams()]); n > clipNorm {
			t.Fatalf("agent %d update norm %g above the clip %g", i, n, clipNorm)
		}
		for j, v := range u.x {
			want[j] += v
		}
	}
	for j := range want {
		if h.result.Sum[j] != want[j] {
			t.Fatalf("survivors' sum differs at %d", j)
		}
	}
	if w := h.result.Sum[len(want)-1]; w != 3 {
		t.Fatalf("unweighted count %d, want 3", w)
	}
	if agents[2].m.roundsFailed.Load() != 1 || agents[0].m.roundsCompleted.Load() != 1 {
		t.Fatal("dropped agent should count a failed round, the others a completed one")
	}
}

func TestEvalRoundSumsExactly(t *testing.T) {
	cand, cblob := smallModel(t, 4)
	base, bblob := smallModel(t, 5)
	h := newHub(map[uint64][]byte{8: cblob, 6: bblob})
	var agents []*Agent
	for k := range 3 {
		agents = append(agents, roundAgent(t, synthData(50, 12, 3, uint64(20+k)), 0.4))
	}
	cfg := h.start(t, agents, protocol.EvalDim, nil)
	req := &protocol.EvalRequest{RoundID: 21, ModelVersion: 8, ModelHash: cand.Hash(), BaselineVersion: 6, BaselineHash: base.Hash(), SecAgg: cfg}
	twins := make([]*twin, len(agents))
	for i, a := range agents {
		twins[i] = &twin{agent: a.ID(), hub: h}
		if j, _ := a.serve(twins[i], invite(21, protocol.RoundEval, 20*time.Second)); !j.(*protocol.RoundJoin).Accept {
			t.Fatal("declined")
		}
		if _, err := a.serve(twins[i], req); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, agents...)
	h.wait(t)
	if h.err != nil || h.result == nil {
		t.Fatalf("round failed: %v", h.err)
	}
	gotC, gotB, err := protocol.DecodeEval(h.result.Sum)
	if err != nil {
		t.Fatal(err)
	}
	var wantC, wantB tensor.Metrics
	for _, a := range agents {
		mc, _ := tensor.Evaluate(cand, a.data.heldOut)
		mb, _ := tensor.Evaluate(base, a.data.heldOut)
		wantC, wantB = wantC.Add(mc), wantB.Add(mb)
	}
	if int(gotC.Correct) != wantC.Correct || int(gotC.Total) != wantC.Total || int(gotB.Correct) != wantB.Correct || int(gotB.Total) != wantB.Total {
		t.Fatalf("sums %+v %+v, want %+v %+v", gotC, gotB, wantC, wantB)
	}
	if math.Abs(gotC.LossSum-wantC.LossSum) > 0.002*3 || math.Abs(gotB.LossSum-wantB.LossSum) > 0.002*3 {
		t.Fatalf("loss sums %v %v, want %v %v", gotC.LossSum, gotB.LossSum, wantC.LossSum, wantB.LossSum)
	}
	if wantC.Total != 3*20 {
		t.Fatalf("held-out total %d", wantC.Total)
	}
}

func TestInviteDecisions(t *testing.T) {
	_, blob := smallModel(t, 1)
	h := newHub(map[uint64][]byte{1: blob})
	a := roundAgent(t, synthData(20, 12, 3, 1), 0)
	tw := &twin{agent: a.ID(), hub: h}
	join := func(id uint64, kind protocol.RoundKind) *protocol.RoundJoin {
		m, err := a.serve(tw, invite(id, kind, 300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return m.(*protocol.RoundJoin)
	}
	if j := join(1, protocol.RoundEval); j.Accept || j.Reason != "no local held-out data" {
		t.Fatalf("eval without held-out data: %+v", j)
	}
	if j := join(2, protocol.RoundTrain); !j.Accept || j.RoundID != 2 {
		t.Fatalf("train: %+v", j)
	}
	if j := join(3, protocol.RoundTrain); j.Accept || j.Reason != "busy with round 2" {
		t.Fatalf("second round: %+v", j)
	}
	// An abort ends the waiting round at once.
	if _, err := a.serve(tw, &protocol.RoundAbort{RoundID: 2, Reason: "leader changed"}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, a)
	if a.m.roundsFailed.Load() != 1 {
		t.Fatal("aborted round not counted as failed")
	}
	// A plan for a round the agent is not in is ignored.
	if _, err := a.serve(tw, &protocol.RoundPlan{RoundID: 99}); err != nil {
		t.Fatal(err)
	}
	// Outside the training window.
	a.win, _ = parseWindow("03:00-03:01")
	a.cfg.TrainingWindow = "03:00-03:01"
	a.now = func() time.Time { return time.Date(2025, 1, 1, 12, 0, 0, 0, time.Local) }
	if j := join(4, protocol.RoundTrain); j.Accept || j.Reason != "outside the training window 03:00-03:01" {
		t.Fatalf("outside window: %+v", j)
	}
	a.win = window{-1, -1}
	// A round whose plan never comes is left at the training deadline.
	a.now = time.Now
	if j := join(5, protocol.RoundTrain); !j.Accept {
		t.Fatal("round 5 declined")
	}
	waitIdle(t, a)
	if a.m.roundsFailed.Load() != 2 {
		t.Fatalf("round without plan: failed = %d", a.m.roundsFailed.Load())
	}
	// A plan with a wrong model hash is refused before training.
	if j := join(6, protocol.RoundTrain); !j.Accept {
		t.Fatal("round 6 declined")
	}
	if _, err := a.serve(tw, &protocol.RoundPlan{RoundID: 6, ModelVersion: 1, ModelHash: protocol.Hash{1}, Epochs: 1}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, a)
	if a.m.roundsFailed.Load() != 3 || a.m.roundsCompleted.Load() != 0 {
		t.Fatal("round with a bad model hash not failed")
	}
}

// TestShutdownAbandonsTraining ends the agent's context in the middle of a
// long local training: the round must stop within moments, not finish.
func TestShutdownAbandonsTraining(t *testing.T) {
	start, blob := smallModel(t, 6)
	h := newHub(map[uint64][]byte{1: blob})
	a := roundAgent(t, synthData(200, 12, 3, 3), 0)
	ctx, cancel := context.WithCancel(context.Background())
	a.runCtx = ctx
	tw := &twin{agent: a.ID(), hub: h}
	if j, _ := a.serve(tw, invite(40, protocol.RoundTrain, time.Minute)); !j.(*protocol.RoundJoin).Accept {
		t.Fatal("declined")
	}
	if _, err := a.serve(tw, &protocol.RoundPlan{RoundID: 40, ModelVersion: 1, ModelHash: start.Hash(), Epochs: 1 << 20, BatchSize: 1, LR: 0.01}); err != nil {
		t.Fatal(err)
	}
	// Stop once training is under way (a few steps taken).
	testutil.WaitFor(t, 30*time.Second, "training under way", func() bool { return a.m.trainBatches.Load() >= 3 })
	stopped := time.Now()
	cancel()
	waitIdle(t, a)
	if d := time.Since(stopped); d > 2*time.Second {
		t.Fatalf("round took %v to stop", d)
	}
	if a.m.roundsFailed.Load() != 1 || a.m.roundsCompleted.Load() != 0 {
		t.Fatal("abandoned round not counted as failed")
	}
}

// TestRolloutChecksHash refuses an announced model whose parameters do not
// match the announced hash, keeps serving the old one, and does not retry
// at once.
func TestRolloutChecksHash(t *testing.T) {
	good, blob := smallModel(t, 7)
	h := newHub(map[uint64][]byte{1: blob, 2: blob})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	tw := &twin{agent: a.ID(), hub: h}
	if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: 1, Hash: good.Hash()}); err != nil || a.ModelVersion() != 1 {
		t.Fatalf("rollout of 1: %v, serving %d", err, a.ModelVersion())
	}
	a.startSync(context.Background(), tw, &protocol.ModelAnnounce{Version: 2, Hash: protocol.Hash{9}})
	waitIdle(t, a)
	if a.ModelVersion() != 1 {
		t.Fatalf("serving %d after a bad rollout", a.ModelVersion())
	}
	n := len(tw.frames())
	a.startSync(context.Background(), tw, &protocol.ModelAnnounce{Version: 2, Hash: protocol.Hash{9}})
	waitIdle(t, a)
	if len(tw.frames()) != n {
		t.Fatal("failed rollout retried at once")
	}
	if cur, _ := a.st.model(keyCurrent); cur == nil || cur.version != 1 {
		t.Fatal("store does not hold the served model")
	}
}
