package protocol

import (
	"fmt"
)

// Capability versions, negotiated in the Hello / HelloAck exchange: each
// side announces the range it speaks and the session runs at the highest
// version both know. A message type is only sent on a session whose
// version is at least the type's Since.
//
// History (append a line with every new version; never reuse a number):
//
//	1  initial catalogue: session (Hello, HelloAck, Error, Ack, Redirect,
//	   Heartbeat, Cancel), enrollment, rounds and the five SecAgg+ stages
//	   with their relays, masked update and eval uploads, model
//	   announce/request, chunked blob transfer with resume, admin.
//	2  statistics rounds: RoundKind RoundStats and StatsRequest (federated
//	   preprocessing statistics summed under secure aggregation).
//	3  agent status: a Heartbeat may end with an AgentStatus trailer (data
//	   schema, rounded split sizes, trainer health, recent warnings and
//	   errors), sent only on sessions at version 3 or later.
//	4  data preparation rounds: RoundKind RoundPrep and PrepRequest (a
//	   job's column rules; profiles, histograms and cleaning reports
//	   summed under secure aggregation); explanation rounds: RoundKind
//	   RoundExplain and ExplainRequest (the mean absolute attribution of
//	   each feature over the agents' held-out data, summed the same way).
//	5  content-addressed blobs between coordinators: BlobGet and BlobPut
//	   on fedge-peer/1 (model versions' bytes beside the Raft log).
//	   Model lines: a Heartbeat's AgentStatus trailer may be followed by
//	   the agent's served lines (ServedLine: name, version, declined), and
//	   a ModelAnnounce may end with the line's Name; both sent only on
//	   sessions at version 5 or later.
//	6  sharded rounds: GroupStart and GroupResult on fedge-peer/1 (a
//	   coordinator aggregates one group of a round's agents under SecAgg+
//	   and returns the group's sum to the leader); a RoundPlan may end
//	   with the group coordinator's node ID and address, and a Hello
//	   with the round a session to a non-leader carries (Hello.Round);
//	   both sent only to peers at version 6. A Heartbeat may end, after
//	   its lines, with how many rounds of different jobs the agent runs
//	   at once (Heartbeat.Concurrent), sent only on sessions at version
//	   6 or later. An agent at version 6 applies a model delta a chunk at
//	   a time from its download file, so a node sends it deltas of models
//	   of any size (below 6: model files up to 256 MiB); the delta's
//	   format is unchanged.
const (
	// MinVersion is the oldest capability version this build still speaks.
	MinVersion uint32 = 1
	// CurrentVersion is the newest capability version this build speaks.
	CurrentVersion uint32 = 6
)

// MsgType is the first byte of every frame. The list is append-only: a
// number, once given, keeps its meaning forever. Types with the Optional bit
// (0x80) set may be skipped by a peer that does not know them; an unknown
// type without it is a protocol error.
type MsgType uint8

// Optional marks message types an older peer may ignore.
const Optional MsgType = 0x80

// The message catalogue. Append only; never renumber. Version 1 added every
// type below unless the catalogue entry says otherwise.
const (
	TypeHello                 MsgType = 0x01
	TypeHelloAck              MsgType = 0x02
	TypeError                 MsgType = 0x03
	TypeAck                   MsgType = 0x04
	TypeRedirect              MsgType = 0x05
	TypeHeartbeat             MsgType = 0x06
	TypeEnrollRequest         MsgType = 0x07
	TypeEnrollResponse        MsgType = 0x08
	TypeRoundInvite           MsgType = 0x09
	TypeRoundJoin             MsgType = 0x0A
	TypeRoundPlan             MsgType = 0x0B
	TypeRoundAbort            MsgType = 0x0C
	TypeAdvertiseKeys         MsgType = 0x0D
	TypeAdvertiseKeysRelay    MsgType = 0x0E
	TypeShareKeys             MsgType = 0x0F
	TypeShareKeysRelay        MsgType = 0x10
	TypeMaskedInput           MsgType = 0x11
	TypeMaskedInputRelay      MsgType = 0x12
	TypeConsistencyCheck      MsgType = 0x13
	TypeConsistencyCheckRelay MsgType = 0x14
	TypeUnmask                MsgType = 0x15
	TypeUnmaskRelay           MsgType = 0x16
	TypeMaskedUpdate          MsgType = 0x17
	TypeEvalRequest           MsgType = 0x18
	TypeEvalResult            MsgType = 0x19
	TypeModelAnnounce         MsgType = 0x1A
	TypeModelRequest          MsgType = 0x1B
	TypeBlobInfo              MsgType = 0x1C
	TypeBlobChunk             MsgType = 0x1D
	TypeBlobResume            MsgType = 0x1E
	TypeAdminRequest          MsgType = 0x1F
	TypeAdminResponse         MsgType = 0x20
	TypeStatsRequest          MsgType = 0x21 // version 2
	TypePrepRequest           MsgType = 0x22 // version 4
	TypeExplainRequest        MsgType = 0x23 // version 4
	TypeBlobGet               MsgType = 0x24 // version 5
	TypeBlobPut               MsgType = 0x25 // version 5
	TypeGroupStart            MsgType = 0x26 // version 6
	TypeGroupResult           MsgType = 0x27 // version 6

	// TypeCancel tells the peer that the sender gave up waiting for one of
	// its requests. It is optional: a peer that ignores it just finishes
	// the work and its response is dropped.
	TypeCancel MsgType = Optional | 0x01
)

// IsOptional reports whether a peer that does not know t may skip it.
func (t MsgType) IsOptional() bool { return t&Optional != 0 }

// typeInfo is one catalogue entry.
type typeInfo struct {
	name  string
	since uint32
	new   func() Message
}

// catalogue maps every known type to its entry. It is read-only after
// package initialisation (a composite literal, not mutable state).
var catalogue = map[MsgType]typeInfo{
	TypeHello:                 {"Hello", 1, func() Message { return new(Hello) }},
	TypeHelloAck:              {"HelloAck", 1, func() Message { return new(HelloAck) }},
	TypeError:                 {"Error", 1, func() Message { return new(Error) }},
	TypeAck:                   {"Ack", 1, func() Message { return new(Ack) }},
	TypeRedirect:              {"Redirect", 1, func() Message { return new(Redirect) }},
	TypeHeartbeat:             {"Heartbeat", 1, func() Message { return new(Heartbeat) }},
	TypeEnrollRequest:         {"EnrollRequest", 1, func() Message { return new(EnrollRequest) }},
	TypeEnrollResponse:        {"EnrollResponse", 1, func() Message { return new(EnrollResponse) }},
	TypeRoundInvite:           {"RoundInvite", 1, func() Message { return new(RoundInvite) }},
	TypeRoundJoin:             {"RoundJoin", 1, func() Message { return new(RoundJoin) }},
	TypeRoundPlan:             {"RoundPlan", 1, func() Message { return new(RoundPlan) }},
	TypeRoundAbort:            {"RoundAbort", 1, func() Message { return new(RoundAbort) }},
	TypeAdvertiseKeys:         {"AdvertiseKeys", 1, func() Message { return new(AdvertiseKeys) }},
	TypeAdvertiseKeysRelay:    {"AdvertiseKeysRelay", 1, func() Message { return new(AdvertiseKeysRelay) }},
	TypeShareKeys:             {"ShareKeys", 1, func() Message { return new(ShareKeys) }},
	TypeShareKeysRelay:        {"ShareKeysRelay", 1, func() Message { return new(ShareKeysRelay) }},
	TypeMaskedInput:           {"MaskedInput", 1, func() Message { return new(MaskedInput) }},
	TypeMaskedInputRelay:      {"MaskedInputRelay", 1, func() Message { return new(MaskedInputRelay) }},
	TypeConsistencyCheck:      {"ConsistencyCheck", 1, func() Message { return new(ConsistencyCheck) }},
	TypeConsistencyCheckRelay: {"ConsistencyCheckRelay", 1, func() Message { return new(ConsistencyCheckRelay) }},
	TypeUnmask:                {"Unmask", 1, func() Message { return new(Unmask) }},
	TypeUnmaskRelay:           {"UnmaskRelay", 1, func() Message { return new(UnmaskRelay) }},
	TypeMaskedUpdate:          {"MaskedUpdate", 1, func() Message { return new(MaskedUpdate) }},
	TypeEvalRequest:           {"EvalRequest", 1, func() Message { return new(EvalRequest) }},
	TypeEvalResult:            {"EvalResult", 1, func() Message { return new(EvalResult) }},
	TypeModelAnnounce:         {"ModelAnnounce", 1, func() Message { return new(ModelAnnounce) }},
	TypeModelRequest:          {"ModelRequest", 1, func() Message { return new(ModelRequest) }},
	TypeBlobInfo:              {"BlobInfo", 1, func() Message { return new(BlobInfo) }},
	TypeBlobChunk:             {"BlobChunk", 1, func() Message { return new(BlobChunk) }},
	TypeBlobResume:            {"BlobResume", 1, func() Message { return new(BlobResume) }},
	TypeAdminRequest:          {"AdminRequest", 1, func() Message { return new(AdminRequest) }},
	TypeAdminResponse:         {"AdminResponse", 1, func() Message { return new(AdminResponse) }},
	TypeStatsRequest:          {"StatsRequest", 2, func() Message { return new(StatsRequest) }},
	TypePrepRequest:           {"PrepRequest", 4, func() Message { return new(PrepRequest) }},
	TypeExplainRequest:        {"ExplainRequest", 4, func() Message { return new(ExplainRequest) }},
	TypeBlobGet:               {"BlobGet", 5, func() Message { return new(BlobGet) }},
	TypeBlobPut:               {"BlobPut", 5, func() Message { return new(BlobPut) }},
	TypeGroupStart:            {"GroupStart", 6, func() Message { return new(GroupStart) }},
	TypeGroupResult:           {"GroupResult", 6, func() Message { return new(GroupResult) }},
	TypeCancel:                {"Cancel", 1, func() Message { return new(Cancel) }},
}

// String returns the type's catalogue name, or "type(0xNN)" if unknown.
func (t MsgType) String() string {
	if ti, ok := catalogue[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Known reports whether t is in this build's catalogue.
func (t MsgType) Known() bool {
	_, ok := catalogue[t]
	return ok
}

// Since returns the capability version that added t, or 0 if t is unknown.
func (t MsgType) Since() uint32 { return catalogue[t].since }

// Types returns every known message type in ascending order.
func Types() []MsgType {
	out := make([]MsgType, 0, len(catalogue))
	for t := 0; t < 256; t++ {
		if MsgType(t).Known() {
			out = append(out, MsgType(t))
		}
	}
	return out
}

// Message is one wire message: a plain struct with exported fields and a
// hand-written layout. The interface is sealed: only this package's types
// implement it.
type Message interface {
	// Type returns the message's catalogue entry.
	Type() MsgType
	encode(e *encoder)
	decode(d *decoder)
}

// New returns a zero message of type t, or nil if t is unknown.
func New(t MsgType) Message {
	ti, ok := catalogue[t]
	if !ok {
		return nil
	}
	return ti.new()
}

// Marshal appends m's body (without frame header) to dst, checking every
// field against lim.
func Marshal(dst []byte, m Message, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	e := encoder{buf: dst, lim: &lim}
	m.encode(&e)
	if e.err != nil {
		return dst, fmt.Errorf("protocol.Marshal %v: %w", m.Type(), e.err)
	}
	if len(e.buf)-len(dst) > lim.MaxFrame {
		return dst, fmt.Errorf("protocol.Marshal %v: %w: body is %d bytes, frame limit %d", m.Type(), ErrTooLarge, len(e.buf)-len(dst), lim.MaxFrame)
	}
	return e.buf, nil
}

// Unmarshal decodes a body of type t. For an unknown optional type it
// returns (nil, nil): the caller skips the frame. For an unknown mandatory
// type it returns ErrUnknownType. The returned message never aliases body.
func Unmarshal(t MsgType, body []byte, lim Limits) (Message, error) {
	m := New(t)
	if m == nil {
		if t.IsOptional() {
			return nil, nil
		}
		return nil, fmt.Errorf("protocol.Unmarshal: %w: %v", ErrUnknownType, t)
	}
	lim = lim.withDefaults()
	if len(body) > lim.MaxFrame {
		return nil, fmt.Errorf("protocol.Unmarshal %v: %w: body is %d bytes", t, ErrTooLarge, len(body))
	}
	d := decoder{b: body, lim: &lim}
	m.decode(&d)
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("protocol.Unmarshal %v: %w", t, err)
	}
	return m, nil
}
