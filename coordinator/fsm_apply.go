package coordinator

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

type bootstrapCmd struct {
	ClusterName string `json:"cluster_name"`
	CA          []byte `json:"ca"`
	KeepModels  int    `json:"keep_models,omitempty"`
	// Admins are the operator credentials fedge init issued, recorded so
	// they can be listed and revoked like those issued later.
	Admins []AdminRecord `json:"admins,omitempty"`
}

func applyBootstrap(s *State, hdr []byte) any {
	var c bootstrapCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	if len(s.CA) != 0 {
		return fmt.Errorf("%w: cluster %q already bootstrapped", ErrExists, s.ClusterName)
	}
	if c.ClusterName == "" || len(c.CA) == 0 {
		return fmt.Errorf("%w: bootstrap needs a name and a CA", ErrBadEntry)
	}
	for _, a := range c.Admins {
		if !validSerial(a.Serial) || s.Admins[a.Serial] != nil {
			return fmt.Errorf("%w: bootstrap admin serial %q", ErrBadEntry, a.Serial)
		}
	}
	s.ClusterName, s.CA = c.ClusterName, c.CA
	if c.KeepModels > 0 {
		s.KeepModels = c.KeepModels
	}
	for _, a := range c.Admins {
		rec := AdminRecord{Serial: a.Serial, Name: a.Name, CreatedAt: a.CreatedAt, CreatedBy: a.CreatedBy, Expires: a.Expires}
		s.Admins[a.Serial] = &rec
		s.audit(AuditRecord{At: a.CreatedAt, By: a.CreatedBy, Action: AuditAdminCreate, Target: a.Serial, Detail: "name " + a.Name})
	}
	return nil
}

func applyTokenCreate(s *State, hdr []byte) any {
	var t TokenRecord
	if err := decodeHdr(hdr, &t); err != nil {
		return err
	}
	if t.ID == "" || len(t.Record) == 0 {
		return fmt.Errorf("%w: token without id or record", ErrBadEntry)
	}
	if _, ok := s.Tokens[t.ID]; ok {
		return fmt.Errorf("%w: token %s", ErrExists, t.ID)
	}
	t.Used, t.UsedBy = false, ""
	t.Revoked, t.RevokedAt, t.RevokedBy = false, time.Time{}, ""
	s.Tokens[t.ID] = &t
	s.audit(AuditRecord{At: t.CreatedAt, By: t.CreatedBy, Action: AuditTokenCreate, Target: t.ID, Detail: "expires " + t.Expiry.UTC().Format(time.RFC3339)})
	return nil
}

type enrollCmd struct {
	TokenID string      `json:"token_id"`
	Agent   AgentRecord `json:"agent"`
}

func applyAgentEnroll(s *State, hdr []byte) any {
	var c enrollCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	tok, ok := s.Tokens[c.TokenID]
	if !ok {
		return fmt.Errorf("%w: token %s", ErrNotFound, c.TokenID)
	}
	if tok.Used {
		return ErrTokenUsed
	}
	if tok.Revoked {
		return ErrTokenRevoked
	}
	if !c.Agent.EnrolledAt.Before(tok.Expiry) {
		return ErrTokenExpired
	}
	if c.Agent.ID == "" {
		return fmt.Errorf("%w: agent without id", ErrBadEntry)
	}
	if _, ok := s.Agents[c.Agent.ID]; ok {
		return fmt.Errorf("%w: agent %s", ErrExists, c.Agent.ID)
	}
	tok.Used, tok.UsedBy = true, c.Agent.ID
	a := c.Agent
	labels := maps.Clone(tok.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, a.Labels) // the agent's own labels win over the token's
	a.Labels = labels
	a.Revoked = false
	s.Agents[a.ID] = &a
	return nil
}

type renewCmd struct {
	ID     string    `json:"id"`
	Serial string    `json:"serial"`
	At     time.Time `json:"at"`
}

func applyAgentRenew(s *State, hdr []byte) any {
	var c renewCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	a, ok := s.Agents[c.ID]
	if !ok {
		return fmt.Errorf("%w: agent %s", ErrNotFound, c.ID)
	}
	if a.Revoked {
		return fmt.Errorf("%w: agent %s is revoked", ErrConflict, c.ID)
	}
	a.CertSerial, a.RenewedAt = c.Serial, c.At
	return nil
}

type revokeCmd struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
	By string    `json:"by,omitempty"` // the operator, for the audit trail
}

func applyAgentRevoke(s *State, hdr []byte) any {
	var c revokeCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	a, ok := s.Agents[c.ID]
	if !ok {
		return fmt.Errorf("%w: agent %s", ErrNotFound, c.ID)
	}
	if !a.Revoked {
		a.Revoked, a.RevokedAt = true, c.At
	}
	if a.CertSerial != "" {
		s.Revoked[a.CertSerial] = c.At
	}
	if c.By != "" {
		s.audit(AuditRecord{At: c.At, By: c.By, Action: AuditAgentRevoke, Target: c.ID, Detail: "certificate " + a.CertSerial})
	}
	return nil
}

type labelCmd struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels"`
}

func applyAgentLabel(s *State, hdr []byte) any {
	var c labelCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	a, ok := s.Agents[c.ID]
	if !ok {
		return fmt.Errorf("%w: agent %s", ErrNotFound, c.ID)
	}
	a.Labels = maps.Clone(c.Labels)
	return nil
}

type seenCmd struct {
	Seen map[string]time.Time `json:"seen"`
}

func applyAgentSeen(s *State, hdr []byte) any {
	var c seenCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	for id, at := range c.Seen {
		if a, ok := s.Agents[id]; ok && at.After(a.LastSeen) {
			a.LastSeen = at
		}
	}
	return nil
}

func applyJobCreate(s *State, hdr []byte) any {
	var j JobRecord
	if err := decodeHdr(hdr, &j); err != nil {
		return err
	}
	if j.ID == "" {
		return fmt.Errorf("%w: job without id", ErrBadEntry)
	}
	if _, ok := s.Jobs[j.ID]; ok {
		return fmt.Errorf("%w: job %s", ErrExists, j.ID)
	}
	if j.Spec.InitModel != 0 {
		if _, ok := s.Models[j.Spec.InitModel]; !ok {
			return fmt.Errorf("%w: init model %d", ErrNotFound, j.Spec.InitModel)
		}
	}
	if j.State == "" {
		j.State = JobRunning
	}
	s.Jobs[j.ID] = &j
	if j.CreatedBy != "" {
		s.audit(AuditRecord{At: j.CreatedAt, By: j.CreatedBy, Action: AuditJobStart, Target: j.ID, Detail: fmt.Sprintf("model %s, %d rounds", j.Spec.Model, j.Spec.Rounds)})
	}
	return nil
}

type jobUpdateCmd struct {
	ID    string    `json:"id"`
	State string    `json:"state"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
	By    string    `json:"by,omitempty"` // the operator who stopped it; "" for the engine
}

func applyJobUpdate(s *State, hdr []byte) any {
	var c jobUpdateCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	j, ok := s.Jobs[c.ID]
	if !ok {
		return fmt.Errorf("%w: job %s", ErrNotFound, c.ID)
	}
	switch c.State {
	case JobRunning, JobStopped, JobDone, JobFailed:
	default:
		return fmt.Errorf("%w: job state %q", ErrBadEntry, c.State)
	}
	if j.State != JobRunning && c.State == JobRunning {
		return fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.State)
	}
	j.State, j.Error, j.UpdatedAt = c.State, c.Error, c.At
	if c.By != "" {
		s.audit(AuditRecord{At: c.At, By: c.By, Action: AuditJobStop, Target: j.ID, Detail: fmt.Sprintf("after %d rounds", j.RoundsDone)})
	}
	return nil
}

// applyRoundStart assigns the next round ID and returns it.
func applyRoundStart(s *State, hdr []byte) any {
	var r RoundRecord
	if err := decodeHdr(hdr, &r); err != nil {
		return err
	}
	if r.Job != "" {
		j, ok := s.Jobs[r.Job]
		if !ok {
			return fmt.Errorf("%w: job %s", ErrNotFound, r.Job)
		}
		if j.State != JobRunning {
			return fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.State)
		}
		if r.Kind == RoundEval {
			if !j.evalDue() {
				return fmt.Errorf("%w: job %s owes no evaluation after round %d", ErrConflict, j.ID, j.RoundsDone)
			}
			if j.EvalTried != j.RoundsDone {
				j.EvalTried, j.EvalAttempts = j.RoundsDone, 0
			}
			j.EvalAttempts++
			r.Number = j.RoundsDone
		}
	}
	r.ID = s.NextRound
	s.NextRound++
	r.State = RoundRunning
	s.Rounds[r.ID] = &r
	s.trimRounds()
	return r.ID
}

func applyRoundEnd(s *State, hdr []byte) any {
	var r RoundRecord
	if err := decodeHdr(hdr, &r); err != nil {
		return err
	}
	return endRound(s, &r)
}

// endRound replaces a running round's record with its final form.
func endRound(s *State, r *RoundRecord) error {
	old, ok := s.Rounds[r.ID]
	if !ok {
		return fmt.Errorf("%w: round %d", ErrNotFound, r.ID)
	}
	if old.State != RoundRunning {
		return fmt.Errorf("%w: round %d is %s", ErrConflict, r.ID, old.State)
	}
	switch r.State {
	case RoundCommitted, RoundAborted, RoundFailed:
	default:
		return fmt.Errorf("%w: round end state %q", ErrBadEntry, r.State)
	}
	final := *r
	final.Job, final.Kind, final.Number, final.StartedAt = old.Job, old.Kind, old.Number, old.StartedAt
	final.Rollout = old.Rollout
	s.Rounds[r.ID] = &final
	j, ok := s.Jobs[final.Job]
	if !ok {
		return nil
	}
	switch {
	case final.Kind == RoundTrain && final.State == RoundCommitted:
		j.RoundsDone++
		j.UpdatedAt = final.EndedAt
	case final.Kind == RoundEval && final.State == RoundCommitted:
		m := final.Metrics
		j.Eval = &JobEvalRecord{
			AfterRound: final.Number, Round: final.ID, Model: old.ModelIn, At: final.EndedAt,
			Accuracy: m["eval_accuracy"], Loss: m["eval_loss"], Examples: int(m["eval_examples"]), Agents: int(m["survivors"]),
		}
		j.UpdatedAt = final.EndedAt
	case qualityFromRound(&final) != nil:
		j.Data, j.UpdatedAt = qualityFromRound(&final), final.EndedAt
	}
	finishJob(j)
	return nil
}

// finishJob marks a running job done once it has run all its rounds and
// owes no evaluation.
func finishJob(j *JobRecord) {
	if j.State == JobRunning && j.RoundsDone >= j.Spec.Rounds && !j.evalDue() {
		j.State = JobDone
	}
}

type modelCommitCmd struct {
	Model   ModelRecord    `json:"model"`
	Round   *RoundRecord   `json:"round,omitempty"`
	Privacy *PrivacyRecord `json:"privacy,omitempty"`
	// Stable makes the new version the one agents serve by default (jobs
	// without rollouts; the first model of a cluster).
	Stable bool `json:"stable,omitempty"`
}

// blobRef names a model version's blob: the hash and size a log entry's
// header carries, or those of the bytes an entry written before blobs
// carried inline (which the FSM stored on apply).
type blobRef struct {
	hash string
	size int64
}

// resolve returns the blob m names, preferring ref (an old entry's inline
// bytes) and checking the name and sizes.
func (ref blobRef) resolve(m *ModelRecord) error {
	if ref.hash != "" {
		m.BlobHash, m.BlobSize = ref.hash, ref.size
	}
	if !validBlobHash(m.BlobHash) || m.BlobSize <= 0 {
		return fmt.Errorf("%w: model without blob", ErrBadEntry)
	}
	if m.StateSize < 0 || m.PushSize < 0 || int64(m.StateSize)+int64(m.PushSize) >= m.BlobSize {
		return fmt.Errorf("%w: strategy state of %d and push of %d bytes in a %d-byte blob", ErrBadEntry, m.StateSize, m.PushSize, m.BlobSize)
	}
	m.Size = int(m.BlobSize - int64(m.StateSize) - int64(m.PushSize))
	return nil
}

// applyModelCommit adds a model version (assigning its number, returned),
// ends its round and advances its job, all in one entry. The header names
// the version's blob (BlobHash, BlobSize: FSM version 3); an entry of
// versions 1 and 2 carried the bytes as its payload, and ref names them.
func applyModelCommit(s *State, hdr []byte, ref blobRef) any {
	var c modelCommitCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	if c.Model.Hash == "" {
		return fmt.Errorf("%w: model without hash", ErrBadEntry)
	}
	if c.Model.Parent != 0 {
		if _, ok := s.Models[c.Model.Parent]; !ok {
			return fmt.Errorf("%w: parent model %d", ErrNotFound, c.Model.Parent)
		}
	}
	if c.Round != nil {
		r, ok := s.Rounds[c.Round.ID]
		if !ok {
			return fmt.Errorf("%w: round %d", ErrNotFound, c.Round.ID)
		}
		if r.State != RoundRunning {
			return fmt.Errorf("%w: round %d is %s", ErrConflict, r.ID, r.State)
		}
	}
	m := c.Model
	// The blob is the model file, then the push delta (PushSize bytes),
	// then the strategy state (StateSize bytes).
	if err := ref.resolve(&m); err != nil {
		return err
	}
	if m.PushSize > 0 && m.Parent == 0 {
		return fmt.Errorf("%w: a push delta without a parent", ErrBadEntry)
	}
	m.Version = s.NextModel
	s.NextModel++
	s.Models[m.Version] = &m
	if c.Round != nil {
		rr := *c.Round
		rr.ModelOut = m.Version
		if err := endRound(s, &rr); err != nil {
			return err // unreachable after the checks above, kept for safety
		}
	}
	if j, ok := s.Jobs[m.Job]; ok {
		j.Model = m.Version
		if c.Privacy != nil {
			p := *c.Privacy
			j.Privacy = &p
		}
	}
	if c.Stable || s.Stable == 0 || (m.Job != "" && s.LineStable(m.Name) == 0) {
		s.setStable(m.Version) // a job's first version of a line is its stable one
	}
	s.applyRetention()
	return m.Version
}

type modelImportCmd struct {
	Model ModelRecord `json:"model"`
}

// applyModelImport adds a model version an operator imported (assigning
// its number, returned): its blob is the model file alone. It does not
// change the stable version: an imported version reaches agents through a
// job that starts from it or a rollout.
func applyModelImport(s *State, hdr []byte, ref blobRef) any {
	var c modelImportCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	m := c.Model
	switch {
	case m.Hash == "":
		return fmt.Errorf("%w: imported model without hash", ErrBadEntry)
	case m.Parent != 0 || m.Job != "" || m.Round != 0 || m.StateSize != 0 || m.PushSize != 0:
		return fmt.Errorf("%w: an imported model has no parent, job, round, strategy state or push", ErrBadEntry)
	}
	if err := ref.resolve(&m); err != nil {
		return err
	}
	m.Version = s.NextModel
	s.NextModel++
	s.Models[m.Version] = &m
	s.applyRetention()
	return m.Version
}

type pinCmd struct {
	Version uint64 `json:"version"`
	Pinned  bool   `json:"pinned"`
}

func applyModelPin(s *State, hdr []byte) any {
	var c pinCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	m, ok := s.Models[c.Version]
	if !ok {
		return fmt.Errorf("%w: model %d", ErrNotFound, c.Version)
	}
	if c.Pinned && !m.held() {
		return fmt.Errorf("%w: model %d was dropped by retention", ErrConflict, c.Version)
	}
	m.Pinned = c.Pinned
	s.applyRetention()
	return nil
}

func applyRolloutCreate(s *State, hdr []byte) any {
	var r RolloutRecord
	if err := decodeHdr(hdr, &r); err != nil {
		return err
	}
	if r.ID == "" || len(r.Cohorts) == 0 {
		return fmt.Errorf("%w: rollout without id or cohorts", ErrBadEntry)
	}
	if _, ok := s.Rollouts[r.ID]; ok {
		return fmt.Errorf("%w: rollout %s", ErrExists, r.ID)
	}
	m, ok := s.Models[r.Model]
	if !ok || !m.held() {
		return fmt.Errorf("%w: model %d", ErrNotFound, r.Model)
	}
	r.Line = m.Name
	if other := s.activeRolloutOf(r.Line); other != nil {
		return fmt.Errorf("%w: rollout %s of model line %q is still %s", ErrConflict, other.ID, r.Line, other.State)
	}
	if r.Baseline == 0 {
		// The line's stable version; a line that has none yet (an
		// imported model) is compared with the default line's.
		if r.Baseline = s.LineStable(r.Line); r.Baseline == 0 {
			r.Baseline = s.Stable
		}
	}
	if r.Baseline == r.Model {
		return fmt.Errorf("%w: model %d is already the baseline; nothing to roll out", ErrConflict, r.Model)
	}
	r.Stage, r.State, r.UpdatedAt = 0, RolloutRunning, r.CreatedAt
	s.Rollouts[r.ID] = &r
	return nil
}

type decideCmd struct {
	ID       string   `json:"id"`
	Decision Decision `json:"decision"`
}

// applyRolloutDecide records a decision and moves the rollout: advance to
// the next cohort, promote (the candidate becomes stable), roll back (the
// baseline stays stable), pause or resume.
func applyRolloutDecide(s *State, hdr []byte) any {
	var c decideCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	r, ok := s.Rollouts[c.ID]
	if !ok {
		return fmt.Errorf("%w: rollout %s", ErrNotFound, c.ID)
	}
	if r.State == RolloutPromoted || r.State == RolloutRolledBack {
		return fmt.Errorf("%w: rollout %s is finished (%s)", ErrConflict, r.ID, r.State)
	}
	d := c.Decision
	if d.Stage != r.Stage {
		return fmt.Errorf("%w: decision for stage %d, rollout at %d", ErrConflict, d.Stage, r.Stage)
	}
	switch d.Action {
	case "advance":
		if r.State != RolloutRunning {
			return fmt.Errorf("%w: rollout %s is %s", ErrConflict, r.ID, r.State)
		}
		if r.Stage+1 >= len(r.Cohorts) {
			r.State = RolloutPromoted
			s.setStable(r.Model)
		} else {
			r.Stage++
		}
	case "promote":
		r.State = RolloutPromoted
		s.setStable(r.Model)
	case "rollback":
		r.State = RolloutRolledBack
		if s.lineOf(r.Baseline) == s.rolloutLine(r) {
			s.setStable(r.Baseline)
		}
	case "pause":
		r.State = RolloutPaused
	case "resume":
		r.State = RolloutRunning
	default:
		return fmt.Errorf("%w: rollout action %q", ErrBadEntry, d.Action)
	}
	r.UpdatedAt = d.At
	r.Decisions = append(r.Decisions, d)
	if strings.HasPrefix(d.By, "operator") {
		s.audit(AuditRecord{At: d.At, By: d.By, Action: AuditRolloutPrefix + d.Action, Target: r.ID, Detail: fmt.Sprintf("model %d at stage %d: %s", r.Model, d.Stage+1, d.Reason)})
	}
	s.applyRetention()
	return nil
}

type stableCmd struct {
	Version uint64 `json:"version"`
}

func applySetStable(s *State, hdr []byte) any {
	var c stableCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	m, ok := s.Models[c.Version]
	if !ok || !m.held() {
		return fmt.Errorf("%w: model %d", ErrNotFound, c.Version)
	}
	s.setStable(c.Version)
	return nil
}

type abortCmd struct {
	Leader string    `json:"leader"`
	Term   uint64    `json:"term"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// applyAbortRounds marks every running round started in an earlier term
// aborted; it returns how many it aborted.
func applyAbortRounds(s *State, hdr []byte) any {
	var c abortCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	n := 0
	for _, id := range sortedKeys(s.Rounds) {
		r := s.Rounds[id]
		if r.State == RoundRunning && r.Term < c.Term {
			r.State, r.Error, r.EndedAt = RoundAborted, c.Reason, c.At
			n++
			if j, ok := s.Jobs[r.Job]; ok {
				finishJob(j) // the last attempt of a final evaluation was aborted
			}
		}
	}
	return n
}

type tokenPruneCmd struct {
	Now time.Time `json:"now"`
}

func applyTokenPrune(s *State, hdr []byte) any {
	var c tokenPruneCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	n := 0
	for _, id := range sortedKeys(s.Tokens) {
		if t := s.Tokens[id]; t.Used || !c.Now.Before(t.Expiry) {
			delete(s.Tokens, id)
			n++
		}
	}
	return n
}
