package coordinator

import (
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// The border between stored records and admin answers: the FSM's records
// carry what is replicated (including blobs and secrets the API never
// shows); the api types carry what an operator sees, plus what only the
// answering node knows (connections, why something waits).

func apiAgent(a *AgentRecord, connected bool, served, target uint64) api.Agent {
	return api.Agent{
		ID: a.ID, Labels: a.Labels, CertSerial: a.CertSerial, EnrolledAt: a.EnrolledAt, RenewedAt: a.RenewedAt,
		LastSeen: a.LastSeen, Revoked: a.Revoked, RevokedAt: a.RevokedAt,
		Connected: connected, Served: served, Serving: target,
	}
}

// apiAgentStatus converts an agent's report received at.
func apiAgentStatus(st *protocol.AgentStatus, at time.Time) *api.AgentStatus {
	if st == nil {
		return nil
	}
	out := &api.AgentStatus{
		ReportedAt: at, DataKind: st.DataKind, Features: int(st.Features), Classes: int(st.Classes),
		TrainExamples: st.TrainExamples, HeldOutExamples: st.HeldOutExamples,
		Trainer: st.Trainer, TrainerFailure: st.TrainerFailure, TrainerFailureAt: st.TrainerFailureAt,
	}
	for _, e := range st.Events {
		out.Events = append(out.Events, api.AgentEvent{At: e.At, Level: e.Level, Message: e.Message})
	}
	return out
}

// withIssue adds the leader's memory of the agent's last error to a.
func withIssue(a api.Agent, is agentIssue, ok bool) api.Agent {
	if ok {
		a.LastError, a.LastErrorAt, a.LastErrorRound = is.reason, is.at, is.round
	}
	return a
}

func apiJob(j *JobRecord) api.Job {
	out := api.Job{
		ID: j.ID, Spec: j.Spec, State: j.State, Error: j.Error, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		RoundsDone: j.RoundsDone, Model: j.Model,
	}
	if p := j.Privacy; p != nil {
		out.Privacy = &api.Privacy{Epsilon: p.Epsilon, Delta: p.Delta, Rounds: p.Rounds, ClipNorm: p.ClipNorm}
	}
	if ev := j.Eval; ev != nil {
		e := api.JobEval(*ev)
		out.Eval = &e
	}
	if d := j.Data; d != nil {
		q := api.DataQuality(*d)
		out.Data = &q
	}
	return out
}

func apiRound(r *RoundRecord) api.Round {
	out := api.Round{
		ID: r.ID, Job: r.Job, Rollout: r.Rollout, Kind: r.Kind, Number: r.Number, State: r.State, Error: r.Error,
		Leader: r.Leader, Term: r.Term, StartedAt: r.StartedAt, EndedAt: r.EndedAt,
		Participants: append([]string(nil), r.Participants...), ParticipantCount: len(r.Participants),
		BytesIn: r.BytesIn, BytesOut: r.BytesOut, ModelIn: r.ModelIn, ModelOut: r.ModelOut, Metrics: r.Metrics,
	}
	for _, s := range r.Stages {
		out.Stages = append(out.Stages, api.Stage(s))
	}
	for _, g := range r.Groups {
		out.Groups = append(out.Groups, api.RoundGroup(g))
	}
	return out
}

func apiModel(m *ModelRecord) api.Model {
	return api.Model{
		Version: m.Version, Parent: m.Parent, Hash: m.Hash, Job: m.Job, Round: m.Round, CreatedAt: m.CreatedAt,
		Metrics: m.Metrics, Pinned: m.Pinned, Size: m.Size, StateSize: m.StateSize, PushSize: m.PushSize,
		Name: m.Name, External: m.External, ImportedBy: m.ImportedBy,
		Quantize: m.Quantize, QuantizedFrom: m.QuantizedFrom, Calibration: m.Calibration,
	}
}

func apiRollout(r *RolloutRecord) api.Rollout {
	out := api.Rollout{
		ID: r.ID, Model: r.Model, Baseline: r.Baseline, Cohorts: r.Cohorts, Gate: r.Gate, Stage: r.Stage,
		State: r.State, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		Quantize: r.Quantize, Line: r.Line,
	}
	for _, d := range r.Decisions {
		out.Decisions = append(out.Decisions, api.Decision(d))
	}
	return out
}
