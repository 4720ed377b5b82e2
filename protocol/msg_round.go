package protocol

import (
	"math"
	"time"
)

// Stage names one step of a round, for deadlines.
type Stage uint8

// Round stages in the order they run.
const (
	StageTrain            Stage = 1 // local training (or evaluation)
	StageAdvertiseKeys    Stage = 2
	StageShareKeys        Stage = 3
	StageMaskedInput      Stage = 4
	StageConsistencyCheck Stage = 5
	StageUnmask           Stage = 6
)

// StageDeadline is the time by which a stage's message must reach the
// coordinator.
type StageDeadline struct {
	Stage Stage
	At    time.Time
}

// RoundKind tells training rounds from evaluation rounds.
type RoundKind uint8

// Round kinds.
const (
	RoundTrain   RoundKind = 0 // followed by a RoundPlan
	RoundEval    RoundKind = 1 // followed by an EvalRequest (rollout canary)
	RoundStats   RoundKind = 2 // followed by a StatsRequest (version 2)
	RoundPrep    RoundKind = 3 // followed by a PrepRequest (version 4)
	RoundExplain RoundKind = 4 // followed by an ExplainRequest (version 4)
)

// RoundInvite is pushed by the coordinator to each selected agent; the
// agent answers with RoundJoin.
type RoundInvite struct {
	RoundID uint64
	// Job names the training job (the model family) the round belongs to.
	Job  string
	Kind RoundKind
	// Deadlines lists the stages in ascending order, each at most once.
	Deadlines []StageDeadline
}

// Type implements Message.
func (*RoundInvite) Type() MsgType { return TypeRoundInvite }

func (m *RoundInvite) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.str("Job", m.Job)
	e.u8(uint8(m.Kind))
	if !e.listLen("Deadlines", len(m.Deadlines)) {
		return
	}
	for _, sd := range m.Deadlines {
		e.u8(uint8(sd.Stage))
		e.time(sd.At)
	}
}

func (m *RoundInvite) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Job = d.str("Job")
	m.Kind = RoundKind(d.u8("Kind"))
	if m.Kind > RoundExplain {
		d.malformed("Kind", "unknown round kind")
		return
	}
	n := d.listLen("Deadlines", 2)
	if d.err != nil || n == 0 {
		return
	}
	m.Deadlines = make([]StageDeadline, n)
	for i := range m.Deadlines {
		m.Deadlines[i] = StageDeadline{Stage: Stage(d.u8("Stage")), At: d.time("At")}
		if i > 0 && m.Deadlines[i].Stage <= m.Deadlines[i-1].Stage {
			d.malformed("Deadlines", "stages not strictly ascending")
		}
	}
	if d.err != nil {
		m.Deadlines = nil
	}
}

// Deadline returns the deadline of stage s and whether the invite has one.
func (m *RoundInvite) Deadline(s Stage) (time.Time, bool) {
	for _, sd := range m.Deadlines {
		if sd.Stage == s {
			return sd.At, true
		}
	}
	return time.Time{}, false
}

// RoundJoin answers a RoundInvite.
type RoundJoin struct {
	RoundID uint64
	Accept  bool
	// Reason says why the agent declined (busy, no data, CPU limit).
	Reason string
}

// Type implements Message.
func (*RoundJoin) Type() MsgType { return TypeRoundJoin }

func (m *RoundJoin) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.boolean(m.Accept)
	e.str("Reason", m.Reason)
}

func (m *RoundJoin) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Accept = d.boolean("Accept")
	m.Reason = d.str("Reason")
}

// DPParams are the differential-privacy settings an agent applies to its
// update before masking. A zero ClipNorm means DP is off for the round.
type DPParams struct {
	// ClipNorm is the L2 bound of one agent's update (this round's bound
	// when Adaptive).
	ClipNorm float64
	// NoiseStdDev is the standard deviation of the Gaussian noise THIS
	// agent adds per coordinate, so that the sum carries the target noise.
	NoiseStdDev float64
	// Adaptive asks for adaptive clipping (Andrew et al. 2021): the agent
	// inserts one coordinate after its clipped delta, BitScale·(b − ½) with
	// b = [||delta|| ≤ ClipNorm] measured before clipping, and noises it
	// like the delta; the coordinator moves ClipNorm towards the target
	// quantile of the update norms from the noisy sum. (This f64 was named
	// TargetQuantile before agents used it; the layout is unchanged.)
	Adaptive bool
	BitScale float64
}

// RoundPlan tells an agent that joined a training round how to train and
// how to aggregate.
type RoundPlan struct {
	RoundID uint64
	// ModelVersion and ModelHash identify the global model to start from.
	ModelVersion uint64
	ModelHash    Hash
	Epochs       uint32
	BatchSize    uint32
	LR           float64
	// Mu is FedProx's proximal coefficient (0 = plain FedAvg).
	Mu          float64
	Optimizer   string
	Momentum    float64
	WeightDecay float64
	// SecAgg is the secure-aggregation configuration, opaque here
	// (crypto/secagg's MarshalBinary).
	SecAgg []byte
	DP     DPParams
	// GroupNode and GroupAddr name the coordinator that aggregates the
	// agent's group of a sharded round (version 6): the agent sends its
	// stage messages and uploads on a session with it, whose Hello names
	// the round. A trailer written only when GroupAddr is set, so only
	// on sessions at version 6; empty, the stages run on the session the
	// plan came on.
	GroupNode string
	GroupAddr string
}

// Type implements Message.
func (*RoundPlan) Type() MsgType { return TypeRoundPlan }

func (m *RoundPlan) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(m.ModelVersion)
	e.hash(m.ModelHash)
	e.uvarint(uint64(m.Epochs))
	e.uvarint(uint64(m.BatchSize))
	e.f64(m.LR)
	e.f64(m.Mu)
	e.str("Optimizer", m.Optimizer)
	e.f64(m.Momentum)
	e.f64(m.WeightDecay)
	e.bytes("SecAgg", m.SecAgg, e.lim.MaxFrame)
	e.f64(m.DP.ClipNorm)
	e.f64(m.DP.NoiseStdDev)
	e.boolean(m.DP.Adaptive)
	e.f64(m.DP.BitScale)
	if m.GroupAddr != "" {
		e.str("GroupNode", m.GroupNode)
		e.str("GroupAddr", m.GroupAddr)
	}
}

func (m *RoundPlan) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.ModelVersion = d.uvarint("ModelVersion")
	m.ModelHash = d.hash("ModelHash")
	m.Epochs = d.u32("Epochs")
	m.BatchSize = d.u32("BatchSize")
	m.LR = d.f64("LR")
	m.Mu = d.f64("Mu")
	m.Optimizer = d.str("Optimizer")
	m.Momentum = d.f64("Momentum")
	m.WeightDecay = d.f64("WeightDecay")
	m.SecAgg = d.bytes("SecAgg", d.lim.MaxFrame)
	m.DP.ClipNorm = d.f64("DP.ClipNorm")
	m.DP.NoiseStdDev = d.f64("DP.NoiseStdDev")
	m.DP.Adaptive = d.boolean("DP.Adaptive")
	m.DP.BitScale = d.f64("DP.BitScale")
	if d.err == nil && len(d.b) > 0 {
		m.GroupNode = d.str("GroupNode")
		m.GroupAddr = d.str("GroupAddr")
		if d.err == nil && m.GroupAddr == "" {
			d.malformed("GroupAddr", "a written group names an address")
		}
	}
}

// RoundAbort tells agents to drop a round (e.g. the leader changed
// mid-round); they discard its state and wait for the next invite.
type RoundAbort struct {
	RoundID uint64
	Reason  string
}

// Type implements Message.
func (*RoundAbort) Type() MsgType { return TypeRoundAbort }

func (m *RoundAbort) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.str("Reason", m.Reason)
}

func (m *RoundAbort) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Reason = d.str("Reason")
}

// MaskedUpdate announces an agent's masked model update; it is the first
// frame of a bulk stream and the vector follows as blob chunks (see
// Session.PushBlob).
type MaskedUpdate struct {
	RoundID uint64
	// Elements is the vector length in ring elements.
	Elements uint64
	// Blob describes the bytes that follow.
	Blob BlobInfo
}

// Type implements Message.
func (*MaskedUpdate) Type() MsgType { return TypeMaskedUpdate }

func (m *MaskedUpdate) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(m.Elements)
	m.Blob.encode(e)
}

func (m *MaskedUpdate) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Elements = d.uvarint("Elements")
	m.Blob.decode(d)
}

// EvalRequest asks a canary agent to evaluate a candidate model on its
// held-out data; the result goes through secure aggregation.
type EvalRequest struct {
	RoundID      uint64
	ModelVersion uint64
	ModelHash    Hash
	// BaselineVersion and BaselineHash name the model the candidate is
	// compared with; the agent evaluates both on the same held-out data.
	BaselineVersion uint64
	BaselineHash    Hash
	// SecAgg is the secure-aggregation configuration (opaque).
	SecAgg []byte
}

// Type implements Message.
func (*EvalRequest) Type() MsgType { return TypeEvalRequest }

func (m *EvalRequest) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(m.ModelVersion)
	e.hash(m.ModelHash)
	e.uvarint(m.BaselineVersion)
	e.hash(m.BaselineHash)
	e.bytes("SecAgg", m.SecAgg, e.lim.MaxFrame)
}

func (m *EvalRequest) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.ModelVersion = d.uvarint("ModelVersion")
	m.ModelHash = d.hash("ModelHash")
	m.BaselineVersion = d.uvarint("BaselineVersion")
	m.BaselineHash = d.hash("BaselineHash")
	m.SecAgg = d.bytes("SecAgg", d.lim.MaxFrame)
}

// StatsRequest asks an agent for the per-feature statistics of its
// training data (count, sum and sum of squares of each feature), which go
// through secure aggregation as exact fixed-point sums (EncodeFixed): the
// coordinator learns only the federation's totals, from which it builds
// the standardization every agent then trains and predicts with.
type StatsRequest struct {
	RoundID uint64
	// Features is the number of input features the job's model takes; an
	// agent whose data has another width declines.
	Features uint32
	// SecAgg is the secure-aggregation configuration (opaque).
	SecAgg []byte
}

// Type implements Message.
func (*StatsRequest) Type() MsgType { return TypeStatsRequest }

func (m *StatsRequest) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(uint64(m.Features))
	e.bytes("SecAgg", m.SecAgg, e.lim.MaxFrame)
}

func (m *StatsRequest) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	f := d.uvarint("Features")
	if f > math.MaxUint32 {
		d.malformed("Features", "exceeds 32 bits")
		return
	}
	m.Features = uint32(f)
	m.SecAgg = d.bytes("SecAgg", d.lim.MaxFrame)
}

// EvalResult carries an agent's masked evaluation sums (correct, total,
// loss) as an opaque secure-aggregation payload.
type EvalResult struct {
	RoundID uint64
	Payload []byte
}

// Type implements Message.
func (*EvalResult) Type() MsgType { return TypeEvalResult }

func (m *EvalResult) encode(e *encoder) { encodeStage(e, m.RoundID, m.Payload) }
func (m *EvalResult) decode(d *decoder) { m.RoundID, m.Payload = decodeStage(d) }

// encodeStage writes the common layout of the SecAgg+ stage messages: the
// round ID and an opaque payload produced by crypto/secagg.
func encodeStage(e *encoder, round uint64, payload []byte) {
	e.uvarint(round)
	e.bytes("Payload", payload, e.lim.MaxFrame)
}

func decodeStage(d *decoder) (uint64, []byte) {
	round := d.uvarint("RoundID")
	return round, d.bytes("Payload", d.lim.MaxFrame)
}
