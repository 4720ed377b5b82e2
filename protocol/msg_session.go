package protocol

import (
	"fmt"
	"time"
)

// Hello opens every session: the dialer sends it as the first request on
// the control stream. Dial fills MinVersion and Version from its Config.
type Hello struct {
	// MinVersion and Version are the lowest and highest capability
	// versions the sender speaks.
	MinVersion uint32
	Version    uint32
	// AgentID is the sender's identity as the coordinator knows it (empty
	// before enrollment, or for admin clients).
	AgentID string
	// Software is the sender's build ("fedge v0.3.1"), for operators.
	Software string
	// ModelVersion and ModelHash identify the global model the agent
	// currently serves; zero when it holds none.
	ModelVersion uint64
	ModelHash    Hash
	// Round, when not zero, is the sharded round whose stage messages
	// the session carries (version 6): a coordinator that is not the
	// leader accepts such an agent session for that round's work only. A
	// trailer after the version 1 fields, written only when not zero; an
	// agent sets it only for a coordinator a version 6 RoundPlan named.
	Round uint64
}

// Type implements Message.
func (*Hello) Type() MsgType { return TypeHello }

func (m *Hello) encode(e *encoder) {
	e.uvarint(uint64(m.MinVersion))
	e.uvarint(uint64(m.Version))
	e.str("AgentID", m.AgentID)
	e.str("Software", m.Software)
	e.uvarint(m.ModelVersion)
	e.hash(m.ModelHash)
	if m.Round != 0 {
		e.uvarint(m.Round)
	}
}

func (m *Hello) decode(d *decoder) {
	m.MinVersion = d.u32("MinVersion")
	m.Version = d.u32("Version")
	m.AgentID = d.str("AgentID")
	m.Software = d.str("Software")
	m.ModelVersion = d.uvarint("ModelVersion")
	m.ModelHash = d.hash("ModelHash")
	if d.err == nil && len(d.b) > 0 {
		m.Round = d.uvarint("Round")
		if d.err == nil && m.Round == 0 {
			d.malformed("Round", "a written round is not zero")
		}
	}
}

// HelloAck accepts a session.
type HelloAck struct {
	// Version is the negotiated capability version.
	Version uint32
	// NodeID names the coordinator that answered.
	NodeID string
	// LeaderHint is the address of the current Raft leader, empty if
	// unknown or if the answering node is the leader.
	LeaderHint string
	// HeartbeatInterval is how often the server wants Heartbeat messages;
	// zero means the agent's default.
	HeartbeatInterval time.Duration
}

// Type implements Message.
func (*HelloAck) Type() MsgType { return TypeHelloAck }

func (m *HelloAck) encode(e *encoder) {
	e.uvarint(uint64(m.Version))
	e.str("NodeID", m.NodeID)
	e.str("LeaderHint", m.LeaderHint)
	e.duration("HeartbeatInterval", m.HeartbeatInterval)
}

func (m *HelloAck) decode(d *decoder) {
	m.Version = d.u32("Version")
	m.NodeID = d.str("NodeID")
	m.LeaderHint = d.str("LeaderHint")
	m.HeartbeatInterval = d.duration("HeartbeatInterval")
}

// ErrorCode classifies an Error. Codes are append-only; a code this build
// does not know is kept as a number and treated like CodeInternal.
type ErrorCode uint32

// Error codes.
const (
	CodeInternal        ErrorCode = 0  // a bug or unexpected failure on the peer
	CodeBadRequest      ErrorCode = 1  // the message was well formed but not acceptable
	CodeUnauthorized    ErrorCode = 2  // the peer's identity may not do this
	CodeNotLeader       ErrorCode = 3  // retry on the leader (see Redirect)
	CodeNotFound        ErrorCode = 4  // no such round, model, blob or agent
	CodeBusy            ErrorCode = 5  // overloaded or already working; retry later
	CodeVersionMismatch ErrorCode = 6  // no common capability version
	CodeTimeout         ErrorCode = 7  // a deadline passed
	CodeRoundClosed     ErrorCode = 8  // the round already moved past this stage
	CodeTooLarge        ErrorCode = 9  // a length exceeded the receiver's limits
	CodeUnsupported     ErrorCode = 10 // unknown message type or verb
	CodeHashMismatch    ErrorCode = 11 // a chunk or blob failed its hash check
	CodeInvalidToken    ErrorCode = 12 // join token unknown, used or expired
	CodeRevoked         ErrorCode = 13 // the certificate was revoked
	CodeStarting        ErrorCode = 14 // the node is starting and serves nothing yet; retry shortly
)

// ErrStarting is the refusal of a node that is not ready yet (its Raft
// replica is still opening). Clients retry with a short backoff; test for
// it with errors.Is(err, ErrStarting).
var ErrStarting error = &Error{Code: CodeStarting, Message: "starting, retry"}

var codeNames = [...]string{
	CodeInternal: "internal", CodeBadRequest: "bad request", CodeUnauthorized: "unauthorized",
	CodeNotLeader: "not leader", CodeNotFound: "not found", CodeBusy: "busy",
	CodeVersionMismatch: "version mismatch", CodeTimeout: "timeout",
	CodeRoundClosed: "round closed", CodeTooLarge: "too large", CodeUnsupported: "unsupported",
	CodeHashMismatch: "hash mismatch", CodeInvalidToken: "invalid token", CodeRevoked: "revoked",
	CodeStarting: "starting",
}

// String returns the code's name.
func (c ErrorCode) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint32(c))
}

// Error is the failure response to a request. *Error implements error, so
// Session.Request returns it as is; test the code with errors.Is against a
// bare &Error{Code: ...} or with errors.As.
type Error struct {
	Code    ErrorCode
	Message string
}

// Type implements Message.
func (*Error) Type() MsgType { return TypeError }

// Error implements error.
func (m *Error) Error() string {
	if m.Message == "" {
		return "protocol: remote error: " + m.Code.String()
	}
	return "protocol: remote error: " + m.Code.String() + ": " + m.Message
}

// Is reports whether target is an *Error with the same code, so
// errors.Is(err, &protocol.Error{Code: protocol.CodeNotLeader}) works.
func (m *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == m.Code
}

func (m *Error) encode(e *encoder) {
	e.uvarint(uint64(m.Code))
	e.str("Message", m.Message)
}

func (m *Error) decode(d *decoder) {
	m.Code = ErrorCode(d.u32("Code"))
	m.Message = d.str("Message")
}

// Ack is the empty success response.
type Ack struct{}

// Type implements Message.
func (*Ack) Type() MsgType { return TypeAck }

func (*Ack) encode(*encoder) {}
func (*Ack) decode(*decoder) {}

// Redirect tells the peer to reconnect to the leader. It is sent in place
// of a HelloAck or a response; *Redirect implements error so Dial and
// Session.Request return it and callers find it with errors.As.
type Redirect struct {
	// Addr is the leader's host:port, empty if no leader is known yet.
	Addr string
	// NodeID names the leader.
	NodeID string
}

// Type implements Message.
func (*Redirect) Type() MsgType { return TypeRedirect }

// Error implements error.
func (m *Redirect) Error() string {
	if m.Addr == "" {
		return "protocol: redirected: no leader known"
	}
	return "protocol: redirected to leader " + m.NodeID + " at " + m.Addr
}

func (m *Redirect) encode(e *encoder) {
	e.str("Addr", m.Addr)
	e.str("NodeID", m.NodeID)
}

func (m *Redirect) decode(d *decoder) {
	m.Addr = d.str("Addr")
	m.NodeID = d.str("NodeID")
}

// Heartbeat is an agent's periodic status; QUIC keep-alives already prove
// liveness, this carries what the coordinator shows operators.
type Heartbeat struct {
	Seq  uint64
	Sent time.Time
	// ModelVersion is the model the agent serves now.
	ModelVersion uint64
	// Busy is true while the agent trains or evaluates.
	Busy bool
	// Status is the agent's report (version 3): a trailer after the
	// version 1 fields, written only when non-nil. A peer before version
	// 3 rejects trailing bytes, so senders set it only on sessions whose
	// negotiated version is at least 3; a heartbeat without it decodes
	// with Status nil.
	Status *AgentStatus
	// Lines are the model lines the agent serves (version 5), each with
	// its served version, and the lines its configuration declines: a
	// trailer after Status, so a sender with lines always writes a
	// Status. Senders set it only on sessions at version 5 or later; a
	// heartbeat without it decodes with Lines nil.
	Lines []ServedLine
	// Concurrent is how many rounds of different jobs the agent runs at
	// once (its jobs.concurrent; version 6): a trailer after Lines,
	// written only when not zero, so a sender with it always writes a
	// Status and a Lines count (0 when it serves no line). Senders set it
	// only on sessions at version 6 or later; a heartbeat without it
	// decodes with Concurrent 0, which the coordinator reads as 1.
	Concurrent uint32
}

// MaxServedLines bounds Heartbeat.Lines.
const MaxServedLines = 64

// ServedLine is one model line an agent reports in its heartbeat.
type ServedLine struct {
	// Name is the line's model name.
	Name string
	// Version is the version the agent serves on the line (0: none yet).
	Version uint64
	// Declined is set for a line the agent's configuration does not
	// accept: the coordinator stops announcing its versions to it.
	Declined bool
}

// MaxStatusEvents bounds AgentStatus.Events.
const MaxStatusEvents = 8

// AgentStatus is what an agent tells operators about itself: the shape of
// its local data, its trainer's health and its recent problems. It holds
// no data values and no metric of a model on the agent's data (those go
// only through secure aggregation).
type AgentStatus struct {
	// DataKind is the configured dataset kind ("mnist", "csv", "graph";
	// empty for an agent whose external trainer reads its own data).
	DataKind string
	// Features and Classes are the width of one input example and the
	// number of classes of the local data (0 when the agent has none).
	Features uint32
	Classes  uint32
	// TrainExamples and HeldOutExamples are the sizes of the local
	// training and held-out splits, rounded by the agent to two
	// significant digits.
	TrainExamples   uint64
	HeldOutExamples uint64
	// Trainer is "engine" or "external" (an external trainer is
	// configured); TrainerFailure is that trainer's last failure since
	// start, at TrainerFailureAt ("" if none).
	Trainer          string
	TrainerFailure   string
	TrainerFailureAt time.Time
	// Events are the agent's last warnings and errors, oldest first, at
	// most MaxStatusEvents.
	Events []StatusEvent
}

// StatusEvent is one warning or error an agent reports.
type StatusEvent struct {
	At time.Time
	// Level is "warn" or "error".
	Level   string
	Message string
}

// Type implements Message.
func (*Heartbeat) Type() MsgType { return TypeHeartbeat }

func (m *Heartbeat) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.time(m.Sent)
	e.uvarint(m.ModelVersion)
	e.boolean(m.Busy)
	st := m.Status
	if st == nil && (len(m.Lines) > 0 || m.Concurrent != 0) {
		st = &AgentStatus{}
	}
	if st == nil {
		return
	}
	st.encode(e)
	if len(m.Lines) == 0 && m.Concurrent == 0 {
		return
	}
	if len(m.Lines) > MaxServedLines {
		e.fail(fmt.Errorf("%w: Lines has %d entries, limit %d", ErrTooLarge, len(m.Lines), MaxServedLines))
		return
	}
	if !e.listLen("Lines", len(m.Lines)) {
		return
	}
	for _, l := range m.Lines {
		e.str("Line name", l.Name)
		e.uvarint(l.Version)
		e.boolean(l.Declined)
	}
	if m.Concurrent != 0 {
		e.uvarint(uint64(m.Concurrent))
	}
}

func (m *Heartbeat) decode(d *decoder) {
	m.Seq = d.uvarint("Seq")
	m.Sent = d.time("Sent")
	m.ModelVersion = d.uvarint("ModelVersion")
	m.Busy = d.boolean("Busy")
	if d.err == nil && len(d.b) > 0 {
		m.Status = new(AgentStatus)
		m.Status.decode(d)
	}
	if d.err != nil || len(d.b) == 0 {
		return
	}
	n := d.listLen("Lines", 3)
	if d.err != nil {
		return
	}
	if n > MaxServedLines {
		d.fail(fmt.Errorf("%w: Lines claims %d entries, limit %d", ErrTooLarge, n, MaxServedLines))
		return
	}
	if n > 0 {
		m.Lines = make([]ServedLine, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		m.Lines[i].Name = d.str("Line name")
		m.Lines[i].Version = d.uvarint("Line version")
		m.Lines[i].Declined = d.boolean("Line declined")
	}
	if d.err != nil {
		m.Lines = nil
		return
	}
	if len(d.b) > 0 {
		m.Concurrent = d.u32("Concurrent")
		if d.err == nil && m.Concurrent == 0 {
			d.malformed("Concurrent", "a written concurrency is not zero")
		}
	}
}

func (s *AgentStatus) encode(e *encoder) {
	e.str("DataKind", s.DataKind)
	e.uvarint(uint64(s.Features))
	e.uvarint(uint64(s.Classes))
	e.uvarint(s.TrainExamples)
	e.uvarint(s.HeldOutExamples)
	e.str("Trainer", s.Trainer)
	e.str("TrainerFailure", s.TrainerFailure)
	e.time(s.TrainerFailureAt)
	if len(s.Events) > MaxStatusEvents {
		e.fail(fmt.Errorf("%w: Events has %d entries, limit %d", ErrTooLarge, len(s.Events), MaxStatusEvents))
		return
	}
	if !e.listLen("Events", len(s.Events)) {
		return
	}
	for _, ev := range s.Events {
		e.time(ev.At)
		e.str("Event level", ev.Level)
		e.str("Event message", ev.Message)
	}
}

func (s *AgentStatus) decode(d *decoder) {
	s.DataKind = d.str("DataKind")
	s.Features = d.u32("Features")
	s.Classes = d.u32("Classes")
	s.TrainExamples = d.uvarint("TrainExamples")
	s.HeldOutExamples = d.uvarint("HeldOutExamples")
	s.Trainer = d.str("Trainer")
	s.TrainerFailure = d.str("TrainerFailure")
	s.TrainerFailureAt = d.time("TrainerFailureAt")
	n := d.listLen("Events", 3)
	if d.err != nil {
		return
	}
	if n > MaxStatusEvents {
		d.fail(fmt.Errorf("%w: Events claims %d entries, limit %d", ErrTooLarge, n, MaxStatusEvents))
		return
	}
	if n > 0 {
		s.Events = make([]StatusEvent, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		s.Events[i].At = d.time("Event at")
		s.Events[i].Level = d.str("Event level")
		s.Events[i].Message = d.str("Event message")
	}
}

// Cancel withdraws one of the sender's outstanding requests (optional type).
type Cancel struct {
	// ID is the request ID being withdrawn.
	ID uint64
}

// Type implements Message.
func (*Cancel) Type() MsgType { return TypeCancel }

func (m *Cancel) encode(e *encoder) { e.uvarint(m.ID) }
func (m *Cancel) decode(d *decoder) { m.ID = d.uvarint("ID") }

// EnrollRequest is the only request accepted on ALPNEnroll, where the agent
// has no certificate yet.
type EnrollRequest struct {
	// Token is the one-time join token.
	Token string
	// CSR is a DER PKCS#10 certificate request for the agent's key.
	CSR []byte
	// Labels describe the host (site, os, hardware) for round selection.
	Labels map[string]string
}

// Type implements Message.
func (*EnrollRequest) Type() MsgType { return TypeEnrollRequest }

func (m *EnrollRequest) encode(e *encoder) {
	e.str("Token", m.Token)
	e.bytes("CSR", m.CSR, e.lim.MaxCert)
	e.labels("Labels", m.Labels)
}

func (m *EnrollRequest) decode(d *decoder) {
	m.Token = d.str("Token")
	m.CSR = d.bytes("CSR", d.lim.MaxCert)
	m.Labels = d.labels("Labels")
}

// EnrollResponse returns the signed certificate.
type EnrollResponse struct {
	AgentID string
	// Cert is the agent's DER certificate, CACert the cluster CA's.
	Cert   []byte
	CACert []byte
}

// Type implements Message.
func (*EnrollResponse) Type() MsgType { return TypeEnrollResponse }

func (m *EnrollResponse) encode(e *encoder) {
	e.str("AgentID", m.AgentID)
	e.bytes("Cert", m.Cert, e.lim.MaxCert)
	e.bytes("CACert", m.CACert, e.lim.MaxCert)
}

func (m *EnrollResponse) decode(d *decoder) {
	m.AgentID = d.str("AgentID")
	m.Cert = d.bytes("Cert", d.lim.MaxCert)
	m.CACert = d.bytes("CACert", d.lim.MaxCert)
}
