package api

import (
	"fmt"
	"time"
)

// ClusterStatus answers Cluster().Status: the answering node's view.
type ClusterStatus struct {
	Cluster    string       `json:"cluster"`
	Node       string       `json:"node"` // the coordinator that answered
	LeaderID   string       `json:"leader_id"`
	LeaderAddr string       `json:"leader_addr"`
	Servers    []ServerInfo `json:"servers"`
	Term       uint64       `json:"term"`
	// LastIndex and AppliedIndex are the answering node's Raft log.
	LastIndex    uint64 `json:"last_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// ConnectedAgents counts the agents connected to the answering node.
	ConnectedAgents int    `json:"connected_agents"`
	Stable          uint64 `json:"stable_model"` // model version agents outside a rollout serve
	// Lines maps each model line (a model name; every job's model is
	// one) to its stable version; Stable is the default line's.
	Lines map[string]uint64 `json:"lines,omitempty"`
	// RoundsInProgress are the rounds running in the replicated state, by
	// ID: at most one per job, rollout and the explanation queue, up to
	// the leader's max_concurrent_rounds at once.
	RoundsInProgress []RoundInProgress `json:"rounds_in_progress,omitempty"`
}

// RoundInProgress is a running round as ClusterStatus lists it.
type RoundInProgress struct {
	ID uint64 `json:"id"`
	// Job is the round's job, Rollout its rollout (evaluation rounds of a
	// rollout); both are empty for an explanation round.
	Job     string `json:"job,omitempty"`
	Rollout string `json:"rollout,omitempty"`
	Kind    string `json:"kind"`
	// Number is the job's round number (training and evaluation rounds).
	Number    int       `json:"number,omitempty"`
	Leader    string    `json:"leader"`
	StartedAt time.Time `json:"started_at"`
}

// ServerInfo is one Raft server of the cluster.
type ServerInfo struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// JoinRequest adds a voter to the cluster.
type JoinRequest struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// IDRequest names one object (agent, job, token, node).
type IDRequest struct {
	ID string `json:"id"`
}

// VersionRequest names one model version (or round ID); Pinned is the
// wanted pin state for Models().Pin.
type VersionRequest struct {
	Version uint64 `json:"version"`
	Pinned  bool   `json:"pinned,omitempty"`
}

// Token states in Token.State.
const (
	TokenValid   = "valid"
	TokenUsed    = "used"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// TokenRequest asks for a join token. A TTL above the cluster's maximum
// (max_token_ttl, 7 days by default) is refused; zero means the default
// (24 h, or the maximum if shorter).
type TokenRequest struct {
	TTL    Duration          `json:"ttl,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// TokenResponse carries a new join token: shown once, never stored.
type TokenResponse struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// Token is a join token as Tokens().List shows it: never the token or its
// secret, only its ID and the first bytes of the stored hash.
type Token struct {
	ID         string            `json:"id"`
	HashPrefix string            `json:"hash_prefix"` // first 4 bytes of the secret's SHA-256, hex
	Labels     map[string]string `json:"labels,omitempty"`
	State      string            `json:"state"` // valid, used, expired or revoked
	CreatedAt  time.Time         `json:"created_at"`
	CreatedBy  string            `json:"created_by,omitempty"`
	Expires    time.Time         `json:"expires"`
	Used       bool              `json:"used"`
	UsedBy     string            `json:"used_by,omitempty"`
	Revoked    bool              `json:"revoked"`
	RevokedAt  time.Time         `json:"revoked_at,omitempty"`
	RevokedBy  string            `json:"revoked_by,omitempty"`
}

// Admin is an operator certificate as Admins().List shows it.
type Admin struct {
	Serial     string    `json:"serial"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Expires    time.Time `json:"expires,omitempty"`
	Unrecorded bool      `json:"unrecorded,omitempty"` // revoked by serial, never issued through the cluster
	Revoked    bool      `json:"revoked"`
	RevokedAt  time.Time `json:"revoked_at,omitempty"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
}

// AdminRevokeRequest revokes one certificate by Serial (recorded or not)
// or every recorded certificate of Name; exactly one is set.
type AdminRevokeRequest struct {
	Name   string `json:"name,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// AdminRevokeResponse lists the serials revoked by the call (empty when
// they all were already).
type AdminRevokeResponse struct {
	Revoked []string `json:"revoked"`
}

// AdminCertRequest asks the cluster CA for an operator certificate.
type AdminCertRequest struct {
	Name      string `json:"name"`
	PublicKey []byte `json:"public_key"` // Ed25519, 32 bytes
}

// AdminCertResponse carries the issued certificate (DER) and the CA's.
type AdminCertResponse struct {
	Cert   []byte `json:"cert"`
	CACert []byte `json:"ca_cert"`
}

// AuditRequest filters Audit().List.
type AuditRequest struct {
	Limit int `json:"limit,omitempty"` // the last Limit records; 0 means all kept
}

// AuditEntry is one credential or operator action: who did what to which
// token, admin certificate, job, agent or rollout, and when. Actions
// (Action) are token.create, token.revoke, admin.create, admin.revoke,
// job.start, job.stop, agent.revoke and rollout.<pause|resume|promote|rollback>.
type AuditEntry struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail,omitempty"`
}

// Agent is an enrolled agent as the operator sees it: identity, labels,
// connection, and the model versions it should serve and serves. Nothing
// it trained on, and no per-agent metric.
type Agent struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels,omitempty"`
	CertSerial string            `json:"cert_serial"`
	EnrolledAt time.Time         `json:"enrolled_at"`
	RenewedAt  time.Time         `json:"renewed_at,omitempty"`
	LastSeen   time.Time         `json:"last_seen,omitempty"`
	Revoked    bool              `json:"revoked,omitempty"`
	RevokedAt  time.Time         `json:"revoked_at,omitempty"`
	Connected  bool              `json:"connected"`
	// Served is the model version the agent reported serving on its
	// current session (0 when disconnected or serving none).
	Served uint64 `json:"served,omitempty"`
	// Serving is the version the cluster wants the agent to serve (the
	// stable model, or a rollout's candidate in its cohort).
	Serving uint64 `json:"serving_target"`
	// LastError is the last reason the agent gave for declining or
	// leaving a round ("trainer exited 1: <its last stderr line>"), with
	// when and in which round; the leader keeps it in memory since it
	// last took office, so Agents().Show asks the leader.
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitempty"`
	LastErrorRound uint64    `json:"last_error_round,omitempty"`
	// Status is the agent's own report on its current session (nil when
	// disconnected, or for an agent older than protocol version 3). The
	// leader keeps the latest one in memory.
	Status *AgentStatus `json:"status,omitempty"`
}

// AgentStatus is what a connected agent reports about itself with its
// heartbeats. It holds no data values and no per-agent model metric.
type AgentStatus struct {
	// ReportedAt is when the coordinator received the report.
	ReportedAt time.Time `json:"reported_at"`
	// DataKind, Features and Classes describe the agent's local data
	// (zero for an agent whose external trainer reads its own data).
	DataKind string `json:"data_kind,omitempty"`
	Features int    `json:"features,omitempty"`
	Classes  int    `json:"classes,omitempty"`
	// TrainExamples and HeldOutExamples are the sizes of the local
	// splits, rounded by the agent to two significant digits.
	TrainExamples   uint64 `json:"train_examples"`
	HeldOutExamples uint64 `json:"held_out_examples"`
	// Trainer is "engine" or "external"; TrainerFailure is the external
	// trainer's last failure since the agent started, at TrainerFailureAt.
	Trainer          string    `json:"trainer,omitempty"`
	TrainerFailure   string    `json:"trainer_failure,omitempty"`
	TrainerFailureAt time.Time `json:"trainer_failure_at,omitempty"`
	// Events are the agent's last warnings and errors, oldest first.
	Events []AgentEvent `json:"events,omitempty"`
}

// AgentEvent is one warning or error an agent logged.
type AgentEvent struct {
	At      time.Time `json:"at"`
	Level   string    `json:"level"` // "warn" or "error"
	Message string    `json:"message"`
}

// AgentError is why one agent declined or left a round: the reason it
// sent (an external trainer's failure reads "trainer exited 1: …").
type AgentError struct {
	Agent  string    `json:"agent"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Round  uint64    `json:"round"`
}

// LabelRequest replaces an agent's labels.
type LabelRequest struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels"`
}

// Job states.
const (
	JobRunning = "running"
	JobStopped = "stopped"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Job is a training job and its progress.
type Job struct {
	ID         string    `json:"id"`
	Spec       JobSpec   `json:"spec"`
	State      string    `json:"state"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	RoundsDone int       `json:"rounds_done"`
	Model      uint64    `json:"model"` // latest model version the job committed (or started from)
	// Privacy is the differential privacy the job has spent (DP jobs).
	Privacy *Privacy `json:"privacy,omitempty"`
	// Waiting says why no round runs (too few eligible agents connected);
	// the leader knows it, so Jobs().Status asks the leader.
	Waiting string `json:"waiting,omitempty"`
	// AgentErrors are, per agent, the reasons agents gave for declining
	// or leaving the job's rounds that a later committed round with them
	// has not cleared (a failing external trainer, missing data). Only
	// Jobs().Status fills them; the leader keeps them in memory.
	AgentErrors []AgentError `json:"agent_errors,omitempty"`
	// Eval is the job's last committed federated evaluation (jobs with
	// eval_every), nil before the first.
	Eval *JobEval `json:"eval,omitempty"`
	// Data is what the job's cleaning rules did to the federation's
	// training data (jobs with data.columns), nil before it is known.
	Data *DataQuality `json:"data,omitempty"`
}

// DataQuality is the federation's data quality under a job's cleaning
// rules: securely aggregated counts, no host's figure.
type DataQuality struct {
	Round   uint64 `json:"round"` // the preparation round that summed them
	Agents  int    `json:"agents"`
	Rows    int    `json:"rows"`    // training rows read
	Kept    int    `json:"kept"`    // rows kept
	Dropped int    `json:"dropped"` // rows dropped (missing label, or a drop column's missing cell)
	Filled  int    `json:"filled"`  // cells filled (mean, median, constant)
	Clipped int    `json:"clipped"` // cells clipped at the federated quantiles
	Unknown int    `json:"unknown"` // categorical cells in none of the categories
}

// JobEval is a federated evaluation of a job's model on the agents'
// held-out splits: securely aggregated sums, nothing per agent.
type JobEval struct {
	// AfterRound is the training round (1-based) the evaluated model
	// came out of; Round is the evaluation round's ID.
	AfterRound int    `json:"after_round"`
	Round      uint64 `json:"round"`
	Model      uint64 `json:"model"`
	// Accuracy is correct/examples in [0,1]; Loss the mean loss per example.
	Accuracy float64   `json:"accuracy"`
	Loss     float64   `json:"loss"`
	Examples int       `json:"examples"`
	Agents   int       `json:"agents"` // agents whose sums made it into the total
	At       time.Time `json:"at"`
}

// Privacy is the privacy budget a job has spent.
type Privacy struct {
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	Rounds  int     `json:"rounds"`
	// ClipNorm is the L2 clip of the job's next round.
	ClipNorm float64 `json:"clip_norm,omitempty"`
}

// Round kinds and outcomes.
const (
	RoundTrain = "train"
	RoundEval  = "eval"
	RoundStats = "stats" // federated preprocessing statistics of a job
	RoundPrep  = "prep"  // a phase of a job's federated data preparation (data.columns)
	// RoundExplain is a model version's global explanation.
	RoundExplain = "explain"

	RoundRunning   = "running"
	RoundCommitted = "committed"
	RoundAborted   = "aborted"
	RoundFailed    = "failed"
)

// RoundsRequest filters Rounds().List.
type RoundsRequest struct {
	Job   string `json:"job,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// After keeps the rounds whose ID is above it: a client following a
	// job asks only for the rounds it has not seen.
	After uint64 `json:"after,omitempty"`
	// Participants asks for each round's participant IDs. Without it a
	// listed round carries only their number (ParticipantCount), so that
	// a long job's rounds of a large fleet fit one answer; Rounds().Show
	// always carries them.
	Participants bool `json:"participants,omitempty"`
}

// EndedThrough returns the ID a client following a job passes as
// RoundsRequest.After next: the last of rounds (in ID order, as a list
// answers) before the first one still running, or after if there is
// none, so that a round still running is read again.
func EndedThrough(rounds []Round, after uint64) uint64 {
	for _, r := range rounds {
		if r.State == RoundRunning {
			break
		}
		after = r.ID
	}
	return after
}

// Stage is what happened in one stage of a round.
type Stage struct {
	Name      string        `json:"name"`
	Expected  int           `json:"expected"`
	Survivors int           `json:"survivors"`
	Dropped   int           `json:"dropped"`
	Duration  time.Duration `json:"duration"`
}

// Round is one training, evaluation or statistics round.
type Round struct {
	ID           uint64    `json:"id"`
	Job          string    `json:"job,omitempty"`
	Rollout      string    `json:"rollout,omitempty"`
	Kind         string    `json:"kind"`
	Number       int       `json:"number"` // 1-based round number within the job
	State        string    `json:"state"`
	Error        string    `json:"error,omitempty"`
	Leader       string    `json:"leader"`
	Term         uint64    `json:"term"`
	StartedAt    time.Time `json:"started_at"`
	EndedAt      time.Time `json:"ended_at,omitempty"`
	Participants []string  `json:"participants,omitempty"`
	// ParticipantCount is len(Participants) of the record, also when a
	// list leaves the IDs out (RoundsRequest.Participants).
	ParticipantCount int                `json:"participant_count,omitempty"`
	Stages           []Stage            `json:"stages,omitempty"`
	BytesIn          int64              `json:"bytes_in"`
	BytesOut         int64              `json:"bytes_out"` // stage replies and the round's model downloads served
	ModelIn          uint64             `json:"model_in"`
	ModelOut         uint64             `json:"model_out,omitempty"`
	Metrics          map[string]float64 `json:"metrics,omitempty"`
	// Groups are the groups of a sharded round, each aggregated by one
	// coordinator (none when the leader aggregated every agent).
	Groups []RoundGroup `json:"groups,omitempty"`
}

// RoundGroup is one group of a sharded round.
type RoundGroup struct {
	Group       int     `json:"group"`
	Coordinator string  `json:"coordinator"`
	Agents      int     `json:"agents"`
	Survivors   int     `json:"survivors"`
	BusySeconds float64 `json:"busy_seconds"`
	Error       string  `json:"error,omitempty"`
}

// Model is one committed model version in the registry.
type Model struct {
	Version   uint64             `json:"version"`
	Parent    uint64             `json:"parent,omitempty"`
	Hash      string             `json:"hash"` // hex SHA-256 of the parameters
	Job       string             `json:"job,omitempty"`
	Round     uint64             `json:"round,omitempty"`
	CreatedAt time.Time          `json:"created_at"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
	Pinned    bool               `json:"pinned,omitempty"`
	Size      int                `json:"size"`                 // model file bytes (0 once retention dropped it)
	StateSize int                `json:"state_size,omitempty"` // server optimizer state bytes
	PushSize  int                `json:"push_size,omitempty"`  // quantized delta agents holding the parent download
	// Name is the model's name (its spec's); External is set for a model
	// fedge's engine does not run: named tensors trained by an external
	// trainer (docs/TRAINER.md).
	Name     string `json:"name,omitempty"`
	External bool   `json:"external,omitempty"`
	// ImportedBy is the operator who imported the version (Models().Import);
	// an imported version has no parent, job or round.
	ImportedBy string `json:"imported_by,omitempty"`
	// Quantize is "int8" for a version agents serve quantized (its spec's
	// serving directive); QuantizedFrom is the float version it was made
	// from by a rollout with RolloutRequest.Quantize.
	Quantize      string `json:"quantize,omitempty"`
	QuantizedFrom uint64 `json:"quantized_from,omitempty"`
	// Calibration is the quantized version's declared calibration set
	// (RolloutRequest.Calibration); empty for the held-out data.
	Calibration string `json:"calibration,omitempty"`
}

// Rollout states.
const (
	RolloutRunning    = "running"
	RolloutPaused     = "paused"
	RolloutPromoted   = "promoted"
	RolloutRolledBack = "rolled_back"
)

// RolloutRequest starts a rollout of Model through Cohorts, gated by Gate
// (ParseGate's syntax).
type RolloutRequest struct {
	Model   uint64   `json:"model"`
	Cohorts []Cohort `json:"cohorts"`
	Gate    string   `json:"gate"`
	// Quantize, if "int8", rolls out Model quantized: the cluster
	// registers a new version with the int8 serving directive (Model's
	// weights rounded to int8 per output channel and stored so, about a
	// quarter of the float size; agents calibrate on their held-out data
	// or the declared Calibration set and serve it in int8) and the gate
	// compares it with the float baseline.
	Quantize string `json:"quantize,omitempty"`
	// Calibration, with Quantize, declares what agents calibrate the
	// quantized model's activation scales on: "held-out" (the default)
	// for their held-out data, or the path of a file on each agent of
	// little-endian float32 rows in the model's input layout (a relative
	// path is in the agent's data directory).
	Calibration string `json:"calibration,omitempty"`
}

// Rollout actions for RolloutActionRequest.
const (
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionPromote  = "promote"
	ActionRollback = "rollback"
)

// RolloutActionRequest is an operator's decision on a rollout.
type RolloutActionRequest struct {
	ID     string `json:"id,omitempty"` // default: the active rollout
	Action string `json:"action"`       // pause, resume, promote, rollback
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Decision is one Raft-committed step of a rollout with its evidence.
type Decision struct {
	At       time.Time `json:"at"`
	Stage    int       `json:"stage"`
	Action   string    `json:"action"` // "advance", "promote", "rollback", "pause", "resume"
	By       string    `json:"by"`     // "gate" or "operator:<name>"
	Reason   string    `json:"reason,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
}

// Rollout moves a candidate model through cohorts.
type Rollout struct {
	ID        string     `json:"id"`
	Model     uint64     `json:"model"`
	Baseline  uint64     `json:"baseline"`
	Cohorts   []Cohort   `json:"cohorts"`
	Gate      string     `json:"gate"`
	Stage     int        `json:"stage"` // index of the cohort currently serving the candidate
	State     string     `json:"state"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Decisions []Decision `json:"decisions,omitempty"`
	// Quantize is "int8" when the candidate is served quantized.
	Quantize string `json:"quantize,omitempty"`
	// Line is the model line the rollout moves (the candidate's model
	// name): each line has its own stable version and at most one
	// active rollout.
	Line string `json:"line,omitempty"`
	// Waiting says why no evaluation round runs (too few canaries
	// connected); the leader knows it, so Rollouts().Status asks it.
	Waiting string `json:"waiting,omitempty"`
}

// StageName names stage i of the rollout (an index from 0, as Stage and
// Decision.Stage hold it) the one way fedge shows stages to people: the
// cohort's name and its position, "canary (1/2)".
func (r Rollout) StageName(i int) string {
	if i < 0 || i >= len(r.Cohorts) {
		return fmt.Sprintf("stage %d/%d", i+1, len(r.Cohorts))
	}
	return fmt.Sprintf("%s (%d/%d)", r.Cohorts[i].Name, i+1, len(r.Cohorts))
}

// ImportRequest opens Models().Import: the model file (fedge's tensor
// model format) follows on the same bulk stream.
type ImportRequest struct {
	// Name, if set, renames the model (its spec's name) in the registry.
	Name string `json:"name,omitempty"`
}

// ConsoleLoginRequest asks the answering coordinator for a login link to
// its web console (Console().Login).
type ConsoleLoginRequest struct {
	// TTL is how long the link stays valid; zero means 2 minutes, and
	// more than 10 minutes is refused.
	TTL Duration `json:"ttl,omitempty"`
}

// ConsoleLoginResponse carries a one-time login link: opened once in a
// browser, it becomes a session of the operator who asked, and is
// spent. Shown once, never stored.
type ConsoleLoginResponse struct {
	URL     string    `json:"url"`
	Node    string    `json:"node"` // the coordinator whose console the link opens
	Expires time.Time `json:"expires"`
}
