package coordinator

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
)

// The admin handlers of adminRoutes (node_admin.go) that are not about
// credentials (node_access.go). Each reads or writes the replicated state
// and answers with api types (admin_convert.go).

func (n *Node) apiClusterStatus(adminCall, none) (*api.ClusterStatus, error) {
	st := &api.ClusterStatus{Node: n.cfg.NodeID, Term: n.rep.raft.CurrentTerm(), LastIndex: n.rep.raft.LastIndex(), AppliedIndex: n.rep.raft.AppliedIndex()}
	st.LeaderID, st.LeaderAddr = n.rep.leader()
	f := n.rep.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	for _, s := range f.Configuration().Servers {
		st.Servers = append(st.Servers, api.ServerInfo{ID: string(s.ID), Addr: string(s.Address), Suffrage: s.Suffrage.String(), Leader: string(s.ID) == st.LeaderID})
	}
	n.fsm.Read(func(s *State) {
		st.Cluster, st.Stable = s.ClusterName, s.Stable
		for _, line := range s.lineNames() {
			if st.Lines == nil {
				st.Lines = map[string]uint64{}
			}
			st.Lines[line] = s.LineStable(line)
		}
		st.RoundsInProgress = s.roundsInProgress()
	})
	st.ConnectedAgents = len(n.ConnectedAgents())
	return st, nil
}

func (n *Node) apiClusterJoin(_ adminCall, r api.JoinRequest) (*none, error) {
	if r.ID == "" || r.Addr == "" {
		return nil, errors.New("cluster.join: id and addr are required")
	}
	return nil, n.rep.raft.AddVoter(raft.ServerID(r.ID), raft.ServerAddress(r.Addr), 0, 30*time.Second).Error()
}

func (n *Node) apiClusterRemove(_ adminCall, r api.IDRequest) (*none, error) {
	if r.ID == "" {
		return nil, errors.New("cluster.remove: id is required")
	}
	return nil, n.rep.raft.RemoveServer(raft.ServerID(r.ID), 0, 30*time.Second).Error()
}

func (n *Node) apiTokensRevoke(c adminCall, r api.IDRequest) (*none, error) {
	_, err := n.rep.apply(c.ctx, cmdTokenRevoke, tokenRevokeCmd{ID: r.ID, At: c.now, By: c.who}, nil)
	return nil, err
}

// agentList lists enrolled agents (only one, if only is set) with what this
// node knows of their sessions.
func (n *Node) agentList(only string) []api.Agent {
	served := n.servedVersions()
	reports := n.agentReports()
	var out []api.Agent
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Agents) {
			if only != "" && id != only {
				continue
			}
			v, connected := served[id]
			out = append(out, apiAgent(s.Agents[id], connected, v, s.TargetVersion(id)))
		}
	})
	for i := range out {
		is, ok := n.eng.lastIssue(out[i].ID)
		out[i] = withIssue(out[i], is, ok)
		if r, ok := reports[out[i].ID]; ok {
			out[i].Status = apiAgentStatus(r.status, r.at)
		}
	}
	return out
}

func (n *Node) apiAgentsList(adminCall, none) ([]api.Agent, error) { return n.agentList(""), nil }

func (n *Node) apiAgentsShow(_ adminCall, r api.IDRequest) (*api.Agent, error) {
	infos := n.agentList(r.ID)
	if len(infos) == 0 {
		return nil, fmt.Errorf("%w: agent %s", ErrNotFound, r.ID)
	}
	return &infos[0], nil
}

func (n *Node) apiAgentsRevoke(c adminCall, r api.IDRequest) (*none, error) {
	if _, err := n.rep.apply(c.ctx, cmdAgentRevoke, revokeCmd{ID: r.ID, At: c.now, By: c.who}, nil); err != nil {
		return nil, err
	}
	n.agentsMu.Lock()
	a, ok := n.agents[r.ID]
	n.agentsMu.Unlock()
	if ok {
		a.sess.Close() // the revoked agent is cut off now, not at its next handshake
	}
	return nil, nil
}

func (n *Node) apiAgentsLabel(c adminCall, r api.LabelRequest) (*none, error) {
	if err := identity.ValidateLabels(r.Labels); err != nil {
		return nil, err
	}
	_, err := n.rep.apply(c.ctx, cmdAgentLabel, labelCmd{ID: r.ID, Labels: r.Labels}, nil)
	return nil, err
}

func (n *Node) apiJobsStart(c adminCall, spec api.JobSpec) (*api.Job, error) {
	if err := spec.Normalize(); err != nil {
		return nil, err
	}
	if err := checkSharding(&spec); err != nil {
		return nil, err
	}
	if spec.InitModel == 0 {
		ts, err := jobTensorSpec(&spec)
		if err != nil {
			return nil, err
		}
		if ts.IsExternal() {
			return nil, errExternalInit(ts)
		}
		if err := checkColumns(&spec, ts); err != nil {
			return nil, err
		}
	}
	if !spec.Force {
		if err := n.checkJobFits(&spec); err != nil {
			return nil, err
		}
	}
	spec.Force = false
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := spec.Name
	if name == "" {
		name = "job"
	}
	rec := JobRecord{ID: fmt.Sprintf("%s-%x", name, b), Spec: spec, State: JobRunning, CreatedAt: c.now, UpdatedAt: c.now, Model: spec.InitModel, CreatedBy: c.who}
	if err := identity.ValidateID(rec.ID); err != nil {
		return nil, fmt.Errorf("%w: job name %q: %v", ErrInvalidJob, name, err)
	}
	if _, err := n.rep.apply(c.ctx, cmdJobCreate, rec, nil); err != nil {
		return nil, err
	}
	j := apiJob(&rec)
	return &j, nil
}

// listAll answers a list call: every record of the map pick returns, in
// key order, converted to its api type.
func listAll[K string | uint64, R, A any](n *Node, pick func(*State) map[K]*R, conv func(*R) A) []A {
	var out []A
	n.fsm.Read(func(s *State) {
		m := pick(s)
		for _, k := range sortedKeys(m) {
			out = append(out, conv(m[k]))
		}
	})
	return out
}

// showOne answers a show call: the record at key converted, or
// ErrNotFound naming what was asked for.
func showOne[K string | uint64, R, A any](n *Node, pick func(*State) map[K]*R, key K, what string, conv func(*R) A) (*A, error) {
	var out *A
	n.fsm.Read(func(s *State) {
		if rec, ok := pick(s)[key]; ok {
			a := conv(rec)
			out = &a
		}
	})
	if out == nil {
		return nil, fmt.Errorf("%w: %s %v", ErrNotFound, what, key)
	}
	return out, nil
}

func jobsOf(s *State) map[string]*JobRecord     { return s.Jobs }
func roundsOf(s *State) map[uint64]*RoundRecord { return s.Rounds }
func modelsOf(s *State) map[uint64]*ModelRecord { return s.Models }

func (n *Node) apiJobsList(adminCall, none) ([]api.Job, error) {
	return listAll(n, jobsOf, apiJob), nil
}

func (n *Node) apiJobsStatus(_ adminCall, r api.IDRequest) (*api.Job, error) {
	out, err := showOne(n, jobsOf, r.ID, "job", apiJob)
	if err != nil {
		return nil, err
	}
	if out.State == JobRunning {
		out.Waiting = n.eng.waiting("job/" + out.ID)
	}
	out.AgentErrors = n.eng.jobIssues(out.ID)
	return out, nil
}

func (n *Node) apiJobsStop(c adminCall, r api.IDRequest) (*none, error) {
	_, err := n.rep.apply(c.ctx, cmdJobUpdate, jobUpdateCmd{ID: r.ID, State: JobStopped, At: c.now, By: c.who}, nil)
	return nil, err
}

func (n *Node) apiRoundsList(_ adminCall, r api.RoundsRequest) ([]api.Round, error) {
	var out []api.Round
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rounds) {
			rr := s.Rounds[id]
			if (r.Job == "" || rr.Job == r.Job) && id > r.After {
				if r.Participants {
					out = append(out, apiRound(rr))
					continue
				}
				// Without the IDs: not copied only to be dropped.
				cp := *rr
				cp.Participants = nil
				a := apiRound(&cp)
				a.ParticipantCount = len(rr.Participants)
				out = append(out, a)
			}
		}
	})
	if r.Limit > 0 && len(out) > r.Limit {
		out = out[len(out)-r.Limit:]
	}
	return out, nil
}

func (n *Node) apiRoundsShow(_ adminCall, r api.VersionRequest) (*api.Round, error) {
	return showOne(n, roundsOf, r.Version, "round", apiRound)
}

func (n *Node) apiModelsList(adminCall, none) ([]api.Model, error) {
	return listAll(n, modelsOf, apiModel), nil
}

func (n *Node) apiModelsShow(_ adminCall, r api.VersionRequest) (*api.Model, error) {
	return showOne(n, modelsOf, r.Version, "model", apiModel)
}

func (n *Node) apiModelsPin(c adminCall, r api.VersionRequest) (*none, error) {
	_, err := n.rep.apply(c.ctx, cmdModelPin, pinCmd{Version: r.Version, Pinned: r.Pinned}, nil)
	return nil, err
}

func (n *Node) apiRolloutStart(c adminCall, r api.RolloutRequest) (*api.Rollout, error) {
	if _, err := api.ParseGate(r.Gate); err != nil {
		return nil, err
	}
	if len(r.Cohorts) == 0 {
		return nil, errors.New("rollout.start: at least one cohort")
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	rec := RolloutRecord{ID: fmt.Sprintf("ro-%d-%x", r.Model, b), Model: r.Model, Cohorts: r.Cohorts, Gate: r.Gate, CreatedAt: c.now}
	if r.Calibration != "" && r.Quantize == "" {
		return nil, fmt.Errorf("rollout.start: %w: a calibration set is for a quantized rollout", errBadRequest)
	}
	if r.Quantize != "" {
		v, err := n.quantizedVersion(c, r.Model, r.Quantize, r.Calibration)
		if err != nil {
			return nil, err
		}
		rec.Model, rec.Quantize = v, r.Quantize
	}
	if _, err := n.rep.apply(c.ctx, cmdRolloutCreate, rec, nil); err != nil {
		return nil, err
	}
	var out api.Rollout
	n.fsm.Read(func(s *State) { out = apiRollout(s.Rollouts[rec.ID]) })
	return &out, nil
}

func (n *Node) apiRolloutStatus(adminCall, none) ([]api.Rollout, error) {
	var out []api.Rollout
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rollouts) {
			out = append(out, apiRollout(s.Rollouts[id]))
		}
	})
	for i := range out {
		if out[i].State == RolloutRunning {
			out[i].Waiting = n.eng.waiting("rollout/" + out[i].ID)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.Before(out[b].CreatedAt) })
	return out, nil
}

func (n *Node) apiRolloutAction(c adminCall, r api.RolloutActionRequest) (*none, error) {
	var ro *RolloutRecord
	var several []string
	n.fsm.Read(func(s *State) {
		if r.ID != "" {
			if x, ok := s.Rollouts[r.ID]; ok {
				cp := *x
				ro = &cp
			}
		} else if x := s.activeRollout(); x != nil {
			cp := *x
			ro = &cp
			for _, id := range sortedKeys(s.Rollouts) {
				if y := s.Rollouts[id]; y.State == RolloutRunning || y.State == RolloutPaused {
					several = append(several, id)
				}
			}
		}
	})
	if len(several) > 1 {
		return nil, fmt.Errorf("rollout: %w: %d rollouts are active (%s), one per model line; name one with its id", ErrConflict, len(several), strings.Join(several, ", "))
	}
	if ro == nil {
		return nil, fmt.Errorf("%w: no such rollout (or none active)", ErrNotFound)
	}
	switch r.Action {
	case api.ActionPause, api.ActionResume, api.ActionPromote, api.ActionRollback:
	default:
		return nil, fmt.Errorf("rollout: unknown action %q (pause, resume, promote, rollback)", r.Action)
	}
	d := Decision{At: c.now, Stage: ro.Stage, Action: r.Action, By: c.who, Reason: r.Reason}
	_, err := n.rep.apply(c.ctx, cmdRolloutDecide, decideCmd{ID: ro.ID, Decision: d}, nil)
	return nil, err
}
