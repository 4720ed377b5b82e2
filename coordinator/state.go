package coordinator

import (
	"sort"
	"time"
)

// AgentRecord is what the cluster knows of one enrolled agent. It never holds
// anything the agent trained on or any per-agent metric.
type AgentRecord struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels,omitempty"`
	CertSerial string            `json:"cert_serial"`
	EnrolledAt time.Time         `json:"enrolled_at"`
	RenewedAt  time.Time         `json:"renewed_at,omitempty"`
	LastSeen   time.Time         `json:"last_seen,omitempty"`
	Revoked    bool              `json:"revoked,omitempty"`
	RevokedAt  time.Time         `json:"revoked_at,omitempty"`
}

// TokenRecord is a join token as the cluster stores it: only the hash of
// its secret, never the secret.
type TokenRecord struct {
	ID        string            `json:"id"`
	Record    []byte            `json:"record"` // identity.TokenRecord, binary
	Expiry    time.Time         `json:"expiry"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"` // "operator:<name>"
	Used      bool              `json:"used,omitempty"`
	UsedBy    string            `json:"used_by,omitempty"`
	// A revoked token cannot enroll an agent; it is forgotten like the
	// others once it expires.
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitempty"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

// AdminRecord is an operator certificate the cluster issued (or, with
// Unrecorded, one it revoked by serial without having issued it through
// Raft, such as the credential of a cluster initialised before admins
// were recorded). A revoked record's serial is also in State.Revoked, which
// the TLS handshake checks.
type AdminRecord struct {
	Serial     string    `json:"serial"` // certificate serial, lower-case hex
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"` // "operator:<name>" or "fedge init"
	Expires    time.Time `json:"expires,omitempty"`
	Unrecorded bool      `json:"unrecorded,omitempty"`
	Revoked    bool      `json:"revoked,omitempty"`
	RevokedAt  time.Time `json:"revoked_at,omitempty"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
}

// Audit actions.
const (
	AuditTokenCreate = "token.create"
	AuditTokenRevoke = "token.revoke"
	AuditAdminCreate = "admin.create"
	AuditAdminRevoke = "admin.revoke"
	// Operators' actions on the fleet (recorded when the command names
	// the operator: every admin call does, the engine's own never).
	AuditJobStart    = "job.start"
	AuditJobStop     = "job.stop"
	AuditAgentRevoke = "agent.revoke"
	// AuditRolloutPrefix, followed by the action (pause, resume,
	// promote, rollback), records an operator's rollout decision.
	AuditRolloutPrefix = "rollout."
)

// AuditRecord is one credential or operator action, committed through Raft with the
// action itself, so the trail and the state cannot disagree.
type AuditRecord struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"` // "operator:<name>", "fedge init"
	Action string    `json:"action"`       // one of the Audit* constants
	Target string    `json:"target"`       // token ID, admin certificate serial, job, agent or rollout ID
	Detail string    `json:"detail,omitempty"`
}

// Job states.
const (
	JobRunning = "running"
	JobStopped = "stopped"
	JobDone    = "done"
	JobFailed  = "failed"
)

// JobRecord is a training job and its progress.
type JobRecord struct {
	ID         string    `json:"id"`
	Spec       JobSpec   `json:"spec"`
	State      string    `json:"state"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	RoundsDone int       `json:"rounds_done"`
	Model      uint64    `json:"model"` // latest model version the job committed (or started from)
	// CreatedBy is the operator who started the job ("" in entries
	// written before it was recorded).
	CreatedBy string `json:"created_by,omitempty"`
	// Privacy is the job's differential-privacy account: the serialized
	// accountant and the epsilon spent so far.
	Privacy *PrivacyRecord `json:"privacy,omitempty"`
	// EvalTried is the RoundsDone after which the job's last federated
	// evaluation started, EvalAttempts how many started then (jobs with
	// eval_every): a due evaluation is tried up to maxEvalAttempts times.
	// Eval is the last one that committed.
	EvalTried    int            `json:"eval_tried,omitempty"`
	EvalAttempts int            `json:"eval_attempts,omitempty"`
	Eval         *JobEvalRecord `json:"eval,omitempty"`
	// Data is what the job's cleaning rules did to the federation's
	// data (jobs with data.columns), from its last apply-phase
	// preparation round.
	Data *DataQualityRecord `json:"data,omitempty"`
}

// maxEvalAttempts bounds the evaluation rounds started for one due
// evaluation: agents still busy with the training round just committed
// may decline the first, but a job whose agents cannot evaluate at all
// must go on training.
const maxEvalAttempts = 3

// JobEvalRecord is a committed federated evaluation of a job's model: the
// securely aggregated held-out sums, as the eval round's metrics hold them.
type JobEvalRecord struct {
	AfterRound int       `json:"after_round"`
	Round      uint64    `json:"round"`
	Model      uint64    `json:"model"`
	Accuracy   float64   `json:"accuracy"`
	Loss       float64   `json:"loss"`
	Examples   int       `json:"examples"`
	Agents     int       `json:"agents"`
	At         time.Time `json:"at"`
}

// evalDue reports whether the job owes a federated evaluation of its
// newest model: eval_every is set, the last committed training round is a
// multiple of it, no evaluation since has committed, and fewer than
// maxEvalAttempts have started.
func (j *JobRecord) evalDue() bool {
	n := j.Spec.EvalEvery
	if n <= 0 || j.RoundsDone == 0 || j.RoundsDone%n != 0 || (j.Eval != nil && j.Eval.AfterRound >= j.RoundsDone) {
		return false
	}
	return j.EvalTried < j.RoundsDone || j.EvalAttempts < maxEvalAttempts
}

// PrivacyRecord is the privacy budget a job has spent.
type PrivacyRecord struct {
	Accountant []byte  `json:"accountant,omitempty"`
	Epsilon    float64 `json:"epsilon"`
	Delta      float64 `json:"delta"`
	Rounds     int     `json:"rounds"`
	// ClipNorm is the L2 clip of the next round; Clip is the adaptive
	// clipping state (dp.AdaptiveClip) when the job clips adaptively.
	ClipNorm float64 `json:"clip_norm,omitempty"`
	Clip     []byte  `json:"clip,omitempty"`
}

// Round kinds and outcomes.
const (
	RoundTrain = "train"
	RoundEval  = "eval"
	RoundStats = "stats" // federated preprocessing statistics of a job
	// RoundExplain is a model version's global explanation (explain.go).
	RoundExplain = "explain"

	RoundRunning   = "running"
	RoundCommitted = "committed"
	RoundAborted   = "aborted"
	RoundFailed    = "failed"
)

// StageRecord is what happened in one stage of a round.
type StageRecord struct {
	Name      string        `json:"name"`
	Expected  int           `json:"expected"`
	Survivors int           `json:"survivors"`
	Dropped   int           `json:"dropped"`
	Duration  time.Duration `json:"duration"`
}

// RoundRecord is the record of one training or evaluation round.
type RoundRecord struct {
	ID           uint64             `json:"id"`
	Job          string             `json:"job,omitempty"`
	Rollout      string             `json:"rollout,omitempty"`
	Kind         string             `json:"kind"`
	Number       int                `json:"number"` // 1-based round number within the job
	State        string             `json:"state"`
	Error        string             `json:"error,omitempty"`
	Leader       string             `json:"leader"`
	Term         uint64             `json:"term"`
	StartedAt    time.Time          `json:"started_at"`
	EndedAt      time.Time          `json:"ended_at,omitempty"`
	Participants []string           `json:"participants,omitempty"`
	Stages       []StageRecord      `json:"stages,omitempty"`
	BytesIn      int64              `json:"bytes_in"`
	BytesOut     int64              `json:"bytes_out"` // stage replies and the round's model downloads served by this node
	ModelIn      uint64             `json:"model_in"`
	ModelOut     uint64             `json:"model_out,omitempty"`
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	// Groups are the groups of a sharded round (round_group*.go).
	Groups []GroupRecord `json:"groups,omitempty"`
}

// GroupRecord is one group of a sharded round: the coordinator that
// aggregated it, its agents, those whose inputs are in its sum, and the
// coordinator's own work on it. A lost group has no survivors and says
// why in Error.
type GroupRecord struct {
	Group       int     `json:"group"`
	Coordinator string  `json:"coordinator"`
	Agents      int     `json:"agents"`
	Survivors   int     `json:"survivors"`
	BusySeconds float64 `json:"busy_seconds"`
	Error       string  `json:"error,omitempty"`
}

// ModelRecord is one committed model version. Its bytes (the tensor
// model file, then the push delta, then the strategy state) are one
// content-addressed blob in each node's BlobStore, named by BlobHash; the
// record, the log entry and the snapshot carry only the name and sizes.
type ModelRecord struct {
	Version   uint64             `json:"version"`
	Parent    uint64             `json:"parent,omitempty"`
	Hash      string             `json:"hash"` // hex SHA-256 of the parameters (tensor.Model.Hash)
	Job       string             `json:"job,omitempty"`
	Round     uint64             `json:"round,omitempty"`
	CreatedAt time.Time          `json:"created_at"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
	Pinned    bool               `json:"pinned,omitempty"`
	// Size is the model file's size, the first part of the blob.
	Size int `json:"size"`
	// BlobHash names the version's blob (hex SHA-256 of model file ‖ push
	// ‖ strategy state), BlobSize its size. Retention clears BlobHash
	// when it drops the bytes; the metadata stays.
	BlobHash string `json:"blob_hash,omitempty"`
	BlobSize int64  `json:"blob_size,omitempty"`
	// StateSize is the size of the server optimizer's memory (momentum,
	// moments) after this version, the blob's last part, so a new leader
	// continues the job exactly.
	StateSize int `json:"state_size,omitempty"`
	// PushSize is the size of the compressed delta from the parent that
	// agents holding the parent download (protocol/encoding, e.g. int8 +
	// flate), when the job pushes lossily; it follows the model file in
	// the blob. The committed parameters are then exactly what decoding
	// the push against the parent gives, so every agent holds the
	// committed model bit for bit.
	PushSize int `json:"push_size,omitempty"`
	// Name and External describe the model (its spec's name; whether it
	// is an external model). ImportedBy is set on a version an operator
	// imported (cmdModelImport): it has no parent, job or round.
	Name       string `json:"name,omitempty"`
	External   bool   `json:"external,omitempty"`
	ImportedBy string `json:"imported_by,omitempty"`
	// Explanation is the version's global explanation, once an
	// explanation round computed it (cmdModelExplain).
	Explanation *ExplanationRecord `json:"explanation,omitempty"`
	// Quantize and QuantizedFrom are api.Model's: the spec's serving
	// directive, and the version a quantized rollout made this one from.
	Quantize      string `json:"quantize,omitempty"`
	QuantizedFrom uint64 `json:"quantized_from,omitempty"`
	// Calibration is the quantized version's declared calibration set
	// (its spec's Calibration); empty for the held-out data.
	Calibration string `json:"calibration,omitempty"`
}

// Rollout states.
const (
	RolloutRunning    = "running"
	RolloutPaused     = "paused"
	RolloutPromoted   = "promoted"
	RolloutRolledBack = "rolled_back"
)

// Decision is one Raft-committed step of a rollout with its evidence.
type Decision struct {
	At       time.Time `json:"at"`
	Stage    int       `json:"stage"`
	Action   string    `json:"action"` // "advance", "promote", "rollback", "pause", "resume"
	By       string    `json:"by"`     // "gate" or "operator:<name>"
	Reason   string    `json:"reason,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
}

// RolloutRecord moves a candidate model through cohorts.
type RolloutRecord struct {
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
	Quantize  string     `json:"quantize,omitempty"` // api.Rollout.Quantize

	// Line is the model line the rollout moves (its candidate's name).
	Line string `json:"line,omitempty"`
}

// State is the whole replicated state of a cluster. The FSM owns it; readers
// get deep copies.
type State struct {
	ClusterName string                    `json:"cluster_name"`
	CA          []byte                    `json:"ca,omitempty"` // sealed CA (identity.CA.Seal)
	Stable      uint64                    `json:"stable"`       // model version every agent outside a rollout serves
	Agents      map[string]*AgentRecord   `json:"agents"`
	Tokens      map[string]*TokenRecord   `json:"tokens"`
	Revoked     map[string]time.Time      `json:"revoked"` // certificate serials (hex) → when
	Jobs        map[string]*JobRecord     `json:"jobs"`
	Rounds      map[uint64]*RoundRecord   `json:"rounds"`
	Models      map[uint64]*ModelRecord   `json:"models"`
	Rollouts    map[string]*RolloutRecord `json:"rollouts"`
	NextRound   uint64                    `json:"next_round"`
	NextModel   uint64                    `json:"next_model"`
	KeepModels  int                       `json:"keep_models"` // retention: last N versions
	KeepRounds  int                       `json:"keep_rounds"` // retention: last N round records
	LastApplied uint64                    `json:"last_applied"`
	// AdminSerials (admin cert serial → name) is how snapshots before
	// admin records kept issued admins; readSnapshot moves it into Admins.
	AdminSerials map[string]string       `json:"admin_serials,omitempty"`
	Admins       map[string]*AdminRecord `json:"admins,omitempty"` // by certificate serial
	Audit        []AuditRecord           `json:"audit,omitempty"`  // oldest first, the last KeepAudit or so

	// Lines maps each model line (a model name, lines.go) to its stable
	// version; Stable is the default line's.
	Lines map[string]uint64 `json:"lines,omitempty"`
}

func newState() *State {
	return &State{
		Agents:       map[string]*AgentRecord{},
		Tokens:       map[string]*TokenRecord{},
		Revoked:      map[string]time.Time{},
		Jobs:         map[string]*JobRecord{},
		Rounds:       map[uint64]*RoundRecord{},
		Models:       map[uint64]*ModelRecord{},
		Rollouts:     map[string]*RolloutRecord{},
		NextRound:    1,
		NextModel:    1,
		KeepModels:   DefaultKeepModels,
		KeepRounds:   DefaultKeepRounds,
		AdminSerials: map[string]string{},
		Admins:       map[string]*AdminRecord{},
	}
}

// Retention defaults.
const (
	DefaultKeepModels = 10
	DefaultKeepRounds = 10000
	// KeepAudit is how many audit records the state keeps (the oldest go
	// first, in batches of a tenth).
	KeepAudit = 10000
)

// audit appends one record, dropping the oldest past KeepAudit.
func (s *State) audit(r AuditRecord) {
	s.Audit = append(s.Audit, r)
	if len(s.Audit) > KeepAudit+KeepAudit/10 {
		s.Audit = append([]AuditRecord(nil), s.Audit[len(s.Audit)-KeepAudit:]...)
	}
}

// sortedKeys returns a map's keys in order, for deterministic iteration.
func sortedKeys[K string | uint64, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// activeRolloutModels returns the versions an unfinished rollout refers to.
func (s *State) activeRolloutModels() map[uint64]bool {
	out := map[uint64]bool{}
	for _, r := range s.Rollouts {
		if r.State == RolloutRunning || r.State == RolloutPaused {
			out[r.Model] = true
			out[r.Baseline] = true
		}
	}
	return out
}

// held reports whether the version's bytes are kept (retention has not
// dropped them).
func (m *ModelRecord) held() bool { return m.BlobHash != "" }

// Parts of a model version's blob.
func (m *ModelRecord) filePart() (off, n int64) { return 0, int64(m.Size) }
func (m *ModelRecord) pushPart() (off, n int64) { return int64(m.Size), int64(m.PushSize) }
func (m *ModelRecord) statePart() (off, n int64) {
	return int64(m.Size) + int64(m.PushSize), int64(m.StateSize)
}

// blobRefs returns the hashes of the blobs the state names.
func (s *State) blobRefs() map[string]bool {
	out := make(map[string]bool, len(s.Models))
	for _, m := range s.Models {
		if m.held() {
			out[m.BlobHash] = true
		}
	}
	return out
}

// applyRetention drops the blobs of old model versions: it keeps the last
// KeepModels versions, every pinned version, the stable version, every
// job's current version and every version an unfinished rollout refers
// to. Metadata is kept. It returns the hashes it stopped naming (the FSM
// removes those no other version names from the store).
func (s *State) applyRetention() (dropped []string) {
	if s.KeepModels <= 0 {
		return nil
	}
	versions := sortedKeys(s.Models)
	keep := s.activeRolloutModels()
	keep[s.Stable] = true
	for _, v := range s.Lines {
		keep[v] = true
	}
	for _, j := range s.Jobs {
		keep[j.Model] = true
	}
	withBlob := 0
	for i := len(versions) - 1; i >= 0; i-- {
		m := s.Models[versions[i]]
		if !m.held() {
			continue
		}
		withBlob++
		if withBlob <= s.KeepModels || m.Pinned || keep[m.Version] {
			continue
		}
		dropped = append(dropped, m.BlobHash)
		m.BlobHash, m.BlobSize = "", 0
	}
	return dropped
}

// trimRounds keeps the last KeepRounds round records.
func (s *State) trimRounds() {
	if s.KeepRounds <= 0 || len(s.Rounds) <= s.KeepRounds {
		return
	}
	ids := sortedKeys(s.Rounds)
	for _, id := range ids[:len(ids)-s.KeepRounds] {
		delete(s.Rounds, id)
	}
}
