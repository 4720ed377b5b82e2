package protocol

import (
	"fmt"
	"time"
)

// Sharded rounds (version 6): the leader splits a round's agents into
// groups, each aggregated under SecAgg+ by one coordinator. GroupStart
// hands a group to its coordinator over fedge-peer/1; GroupResult brings
// the group's unmasked ring sum back to the leader, its header followed
// by the sum as blob chunks on a bulk stream (Session.PushBlob), or
// alone, as a request, when the group failed.

// MaxGroupAgents bounds the agents of one group (SecAgg+ participant IDs
// are 1..n with n at most 2^16).
const MaxGroupAgents = 1 << 16

// GroupAgent is one agent of a group and its SecAgg+ participant ID in
// the group's configuration.
type GroupAgent struct {
	AgentID string
	ID      uint32
}

// GroupStart asks a coordinator to aggregate one group of a round: to run
// the SecAgg+ server stages for the group's agents, whose stage messages
// arrive on their sessions with that coordinator. It answers with an Ack
// once the first stage accepts messages (the leader sends the agents
// their plans after that), or an Error (version 6).
type GroupStart struct {
	RoundID uint64
	// Group numbers the group within the round (0 is the leader's own).
	Group uint32
	// Owner is the job the round trains for.
	Owner string
	// SecAgg is the group's secure-aggregation configuration
	// (crypto/secagg's MarshalBinary), as its agents get it.
	SecAgg []byte
	// Agents lists the group's agents with their participant IDs.
	Agents []GroupAgent
	// TrainBy is the deadline of the first stage (advertise keys), which
	// includes the agents' training; StageTime bounds each later stage.
	TrainBy   time.Time
	StageTime time.Duration
	// Index is the leader's applied Raft log index: the group's
	// coordinator applies the log up to it before it checks the agents,
	// so it knows every agent the leader knows.
	Index uint64
}

// Type implements Message.
func (*GroupStart) Type() MsgType { return TypeGroupStart }

func (m *GroupStart) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(uint64(m.Group))
	e.str("Owner", m.Owner)
	e.bytes("SecAgg", m.SecAgg, e.lim.MaxFrame)
	if !e.listLen("Agents", len(m.Agents)) {
		return
	}
	for _, a := range m.Agents {
		e.str("AgentID", a.AgentID)
		e.uvarint(uint64(a.ID))
	}
	e.time(m.TrainBy)
	e.duration("StageTime", m.StageTime)
	e.uvarint(m.Index)
}

func (m *GroupStart) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Group = d.u32("Group")
	m.Owner = d.str("Owner")
	m.SecAgg = d.bytes("SecAgg", d.lim.MaxFrame)
	n := d.listLen("Agents", 2)
	if d.err != nil {
		return
	}
	if n > 0 {
		m.Agents = make([]GroupAgent, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		m.Agents[i] = GroupAgent{AgentID: d.str("AgentID"), ID: d.u32("ID")}
	}
	if d.err != nil {
		m.Agents = nil
		return
	}
	m.TrainBy = d.time("TrainBy")
	m.StageTime = d.duration("StageTime")
	m.Index = d.uvarint("Index")
}

// GroupStage summarizes one SecAgg+ stage of a group.
type GroupStage struct {
	Name     string
	Expected uint32
	Arrived  uint32
	Took     time.Duration
}

// GroupResult is a group coordinator's answer to a GroupStart, sent to
// the leader when the group's stages end. With Error empty it is the
// header of a bulk stream whose blob (Blob) is the group's unmasked sum,
// Elements ring elements as little-endian uint32; with Error set it goes
// alone, as a request (version 6).
type GroupResult struct {
	RoundID uint64
	Group   uint32
	// Error says why the group produced no sum ("" when it did).
	Error string
	// Survivors are the agents whose inputs are in the sum.
	Survivors []string
	// Stages are the group's SecAgg+ stages in order.
	Stages []GroupStage
	// Busy is the group coordinator's own work (not waiting for agents).
	Busy time.Duration
	// BytesIn and BytesOut count the group's stage traffic.
	BytesIn, BytesOut uint64
	// Elements is the sum's length in ring elements (0 with Error).
	Elements uint64
	// Blob describes the sum's bytes that follow the header; it is on
	// the wire only when Elements is not zero.
	Blob BlobInfo
}

// Type implements Message.
func (*GroupResult) Type() MsgType { return TypeGroupResult }

func (m *GroupResult) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(uint64(m.Group))
	e.str("Error", m.Error)
	if !e.listLen("Survivors", len(m.Survivors)) {
		return
	}
	for _, s := range m.Survivors {
		e.str("Survivor", s)
	}
	if !e.listLen("Stages", len(m.Stages)) {
		return
	}
	for _, s := range m.Stages {
		e.str("Stage name", s.Name)
		e.uvarint(uint64(s.Expected))
		e.uvarint(uint64(s.Arrived))
		e.duration("Stage took", s.Took)
	}
	e.duration("Busy", m.Busy)
	e.uvarint(m.BytesIn)
	e.uvarint(m.BytesOut)
	e.uvarint(m.Elements)
	if m.Elements > 0 {
		m.Blob.encode(e)
	}
}

func (m *GroupResult) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Group = d.u32("Group")
	m.Error = d.str("Error")
	n := d.listLen("Survivors", 1)
	if d.err != nil {
		return
	}
	if n > 0 {
		m.Survivors = make([]string, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		m.Survivors[i] = d.str("Survivor")
	}
	n = d.listLen("Stages", 4)
	if d.err != nil {
		m.Survivors = nil
		return
	}
	if n > 0 {
		m.Stages = make([]GroupStage, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		m.Stages[i] = GroupStage{Name: d.str("Stage name"), Expected: d.u32("Stage expected"), Arrived: d.u32("Stage arrived"), Took: d.duration("Stage took")}
	}
	if d.err != nil {
		m.Survivors, m.Stages = nil, nil
		return
	}
	m.Busy = d.duration("Busy")
	m.BytesIn = d.uvarint("BytesIn")
	m.BytesOut = d.uvarint("BytesOut")
	m.Elements = d.uvarint("Elements")
	if d.err != nil || m.Elements == 0 {
		return
	}
	m.Blob.decode(d)
	if d.err == nil && m.Blob.Size != 4*m.Elements {
		d.malformed("Blob", fmt.Sprintf("%d bytes for %d ring elements", m.Blob.Size, m.Elements))
	}
}
